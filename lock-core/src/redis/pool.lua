-- A batch of pool operations (keyed counting semaphores) from one process (group commit, see
-- batch.rs), applied in order, each answered on its own. ARGV[1]: the publish command (PUBLISH,
-- or SPUBLISH on a cluster), ARGV[2]: how long a pool's last slot token outlives its slots, in ms
-- (the fence counter's TTL). Then one op after another, its keys in KEYS (the pool, its meta):
--   'pa' acquire  ARGV owner, max size, lease ms (0 = none)
--        -> {1, slot token, live slots} taken, {0, ms left of the first slot to end (-1: none
--           ends)} full (the meta is marked: someone waits), {-3, max size of the live slots}
--   'pr' release  ARGV owner, slot token, channel -> {1} released, {0} not live
--   'pe' extend   ARGV owner, slot token, lease ms (0 = none) -> {1} extended, {0} not live
--   'ps' state    -> {live slots, their max size (0 when none)}
--   'pf' force    ARGV slot token ('' = every slot), channel -> {live slots freed}
-- An op that fails (a key of another type) is answered {'error', message}; READONLY and OOM fail
-- the whole call (as in batch.lua: a script's first write is refused before anything is written,
-- and once it has written Redis lets it finish).
--
-- Layout: the pool `<prefix>{<key>}:pool` is a sorted set of '<token>:<owner>' scored by the
-- slot's end in server milliseconds (+inf: never); it expires with its last slot. Its meta
-- `<prefix>{<key>}:pool-meta` is '<max size>:<last token>:<w>' (w = 1 once an acquire found the
-- pool full: the next release publishes), kept as long as the pool and at least the token TTL
-- after, so tokens keep growing (they are also never below the server clock in microseconds).
local publish, token_ttl = ARGV[1], tonumber(ARGV[2])
local now_us, now_ms

local function clock()
  if not now_us then
    local time = redis.call('TIME')
    now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
    now_ms = math.floor(now_us / 1000)
  end
end

local function meta_of(meta)
  local value = redis.call('GET', meta)
  if not value then return nil, 0, '0' end
  local max, last, w = string.match(value, '^(%d+):(%d+):(%d)$')
  return tonumber(max), tonumber(last), w
end

-- The pool lives until its last slot ends; the meta as long, and at least the token TTL.
local function keep(pool, meta, max, last, w)
  local value = string.format('%d:%.0f:%s', max or 0, last, w)
  local top = redis.call('ZRANGE', pool, -1, -1, 'WITHSCORES')
  if #top == 0 then
    redis.call('SET', meta, value, 'PX', token_ttl)
  elseif top[2] == 'inf' then
    redis.call('PERSIST', pool)
    redis.call('SET', meta, value)
  else
    local ends = tonumber(top[2]) + 1
    redis.call('PEXPIREAT', pool, string.format('%.0f', ends))
    redis.call('SET', meta, value, 'PXAT', string.format('%.0f', math.max(ends, now_ms + token_ttl)))
  end
end

-- The score of the owner's live slot, or nil.
local function live_score(pool, member)
  local score = redis.call('ZSCORE', pool, member)
  if not score then return nil end
  if score ~= 'inf' and tonumber(score) <= now_ms then return nil end
  return score
end

local function acquire(pool, meta, owner, max, lease)
  clock()
  max, lease = tonumber(max), tonumber(lease)
  -- Expired slots are reclaimed here, so they never count and never pile up.
  redis.call('ZREMRANGEBYSCORE', pool, '-inf', now_ms)
  local live = redis.call('ZCARD', pool)
  local stored, last, w = meta_of(meta)
  -- (A meta of size 0 lost its size: deleted by hand while slots lived.)
  if live > 0 and stored and stored > 0 and stored ~= max then return {-3, stored} end
  if live >= max then
    if w ~= '1' then keep(pool, meta, stored or max, last, '1') end
    local first = redis.call('ZRANGE', pool, 0, 0, 'WITHSCORES')
    if first[2] == 'inf' then return {0, -1} end
    return {0, tonumber(first[2]) - now_ms}
  end
  local token = now_us
  if last >= token then token = last + 1 end
  local token_text = string.format('%.0f', token)
  local ends = '+inf'
  if lease > 0 then ends = string.format('%.0f', now_ms + lease) end
  redis.call('ZADD', pool, ends, token_text .. ':' .. owner)
  keep(pool, meta, max, token, w)
  return {1, token, live + 1}
end

local function release(pool, meta, owner, token, channel)
  clock()
  local member = token .. ':' .. owner
  local score = redis.call('ZSCORE', pool, member)
  if not score then return {0} end
  redis.call('ZREM', pool, member)
  local max, last, w = meta_of(meta)
  if score ~= 'inf' and tonumber(score) <= now_ms then
    keep(pool, meta, max, last, w)
    return {0} -- its lease had run out: it was not the owner's any more
  end
  if w == '1' then
    redis.call(publish, channel, 'free')
    w = '0'
  end
  keep(pool, meta, max, last, w)
  return {1}
end

local function extend(pool, meta, owner, token, lease)
  clock()
  local member = token .. ':' .. owner
  local score = live_score(pool, member)
  if not score then return {0} end
  lease = tonumber(lease)
  -- Never shortened, never given an end it does not have.
  if lease == 0 then
    redis.call('ZADD', pool, 'XX', '+inf', member)
  elseif score ~= 'inf' and now_ms + lease > tonumber(score) then
    redis.call('ZADD', pool, 'XX', string.format('%.0f', now_ms + lease), member)
  end
  local max, last, w = meta_of(meta)
  keep(pool, meta, max, last, w)
  return {1}
end

local function state(pool, meta)
  clock()
  -- A read: expired slots are not counted, and not removed.
  local live = redis.call('ZCOUNT', pool, '(' .. now_ms, '+inf')
  if live == 0 then return {0, 0} end
  local max = meta_of(meta)
  return {live, max or 0}
end

local function force(pool, meta, token, channel)
  clock()
  local freed = 0
  local slots = redis.call('ZRANGE', pool, 0, -1, 'WITHSCORES')
  for i = 1, #slots, 2 do
    local member, score = slots[i], slots[i + 1]
    if token == '' or string.sub(member, 1, #token + 1) == token .. ':' then
      redis.call('ZREM', pool, member)
      if score == 'inf' or tonumber(score) > now_ms then freed = freed + 1 end
    end
  end
  local max, last, w = meta_of(meta)
  if freed > 0 then
    redis.call(publish, channel, 'free')
    w = '0'
  end
  if #slots > 0 then keep(pool, meta, max, last, w) end
  return {freed}
end

local replies = {}
local k, a = 1, 3
while a <= #ARGV do
  local code = ARGV[a]
  local ok, reply
  local pool, meta = KEYS[k], KEYS[k + 1]
  if code == 'pa' then
    ok, reply = pcall(acquire, pool, meta, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    a = a + 4
  elseif code == 'pr' then
    ok, reply = pcall(release, pool, meta, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    a = a + 4
  elseif code == 'pe' then
    ok, reply = pcall(extend, pool, meta, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    a = a + 4
  elseif code == 'ps' then
    ok, reply = pcall(state, pool, meta)
    a = a + 1
  elseif code == 'pf' then
    ok, reply = pcall(force, pool, meta, ARGV[a + 1], ARGV[a + 2])
    a = a + 3
  else
    return redis.error_reply('lockwright pool batch: unknown operation ' .. tostring(code))
  end
  k = k + 2
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = tostring(reply)
    if string.find(reply, '^READONLY') or string.find(reply, '^OOM') then
      return redis.error_reply(reply)
    end
    reply = {'error', reply}
  end
  replies[#replies + 1] = reply
end
return replies
