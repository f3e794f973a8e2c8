-- A batch of lock operations from one process (group commit, see batch.rs), applied in order,
-- each answered on its own. ARGV[1]: the publish command (PUBLISH, or SPUBLISH on a cluster),
-- ARGV[2]: the fence counter's TTL in ms. Then one op after another: its code and arguments in
-- ARGV, its keys in KEYS (a lock's channel is its key with ':free' appended).
--   'a' acquire       KEYS lock, fence counter  ARGV owner, lease ms (0 = none), ended fence
--       -> {1, fence, hold count} acquired, {0, pttl, 0} held by another owner (now marked 'w')
--   'r' release       KEYS lock   ARGV owner, fence ('' = any), 'one' | 'all'
--       -> {0} freed, {n > 0} still held n times, {-1} not locked, {-2} not owner
--   'i' inspect       KEYS lock   ARGV owner -> {0} free, {1, mine, count, fence, pttl}
--   'e' extend        KEYS lock   ARGV owner, fence, lease ms (0 = none) -> {1} extended, {0} gone
-- An op that fails (a key of another type) is answered {'error', message}; the others stand. A
-- server that takes no writes fails the whole call (below).
--
-- A lock is the string '<owner>:<fence>:<hold count>', with ':w' appended once an acquire found
-- it held (someone may wait: the release then publishes). Owners contain no ':'.
local publish, fence_ttl = ARGV[1], ARGV[2]
-- The server clock in microseconds (and as a string), read once per batch by the first new
-- hold that needs it.
local now, now_text

local function parse(held)
  return string.match(held, '^(.-):(%d+):(%d+)(.*)$')
end

local function acquire(lock, counter, owner, lease, ended)
  lease = tonumber(lease)
  local held = redis.call('GET', lock)
  local waiting = ''
  if held then
    local holder, fence, count, w = parse(held)
    if holder == owner and tonumber(fence) > tonumber(ended) then
      count = tonumber(count) + 1
      redis.call('SET', lock, holder .. ':' .. fence .. ':' .. count .. w, 'KEEPTTL')
      -- Re-entering extends the lease if the new one ends later; it never shortens it.
      if lease == 0 then
        redis.call('PERSIST', lock)
      else
        local ttl = redis.call('PTTL', lock)
        if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', lock, lease) end
      end
      return {1, tonumber(fence), count}
    end
    if holder ~= owner then
      if w == '' then redis.call('SET', lock, held .. ':w', 'KEEPTTL') end
      return {0, redis.call('PTTL', lock), 0}
    end
    -- The owner's name with a fence no larger than one of a hold the owner ended: a hold Redis
    -- brought back (an older snapshot, a lagging replica). Replaced below.
    waiting = w
  end
  -- A new hold. Its fence is above the last one and never below the server clock in
  -- microseconds, so fences keep growing when the counter is lost (expired, evicted, flushed,
  -- restarted, failed over): see RedisConfig::fence_counter_ttl for the clock assumption.
  if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000000 + tonumber(time[2])
    now_text = string.format('%.0f', now)
  end
  local fence = now_text
  -- One call reads the last fence and writes the new one; only a counter at or above the
  -- clock (a hold of this key earlier in the batch, or a clock that went back) needs a second.
  local last = tonumber(redis.call('SET', counter, fence, 'PX', fence_ttl, 'GET'))
  if last and last >= now then
    fence = string.format('%.0f', last + 1)
    redis.call('SET', counter, fence, 'PX', fence_ttl)
  end
  local value = owner .. ':' .. fence .. ':1' .. waiting
  if lease > 0 then redis.call('SET', lock, value, 'PX', lease) else redis.call('SET', lock, value) end
  return {1, tonumber(fence), 1}
end

local function release(lock, owner, fence, scope)
  local held = redis.call('GET', lock)
  if not held then return {-1} end
  local holder, current, count, waiting = parse(held)
  if holder ~= owner or (fence ~= '' and current ~= fence) then return {-2} end
  count = tonumber(count)
  if scope == 'one' and count > 1 then
    count = count - 1
    redis.call('SET', lock, holder .. ':' .. current .. ':' .. count .. waiting, 'KEEPTTL')
    return {count}
  end
  redis.call('DEL', lock)
  if waiting ~= '' then redis.call(publish, lock .. ':free', 'free') end
  return {0}
end

local function inspect(lock, owner)
  local held = redis.call('GET', lock)
  if not held then return {0} end
  local holder, fence, count = parse(held)
  local mine = 0
  if holder == owner then mine = 1 end
  return {1, mine, tonumber(count), tonumber(fence), redis.call('PTTL', lock)}
end

local function extend(lock, owner, fence, lease)
  local held = redis.call('GET', lock)
  if not held then return {0} end
  local holder, current = parse(held)
  if holder ~= owner or current ~= fence then return {0} end
  -- The owner's re-entered holds share this key's lease: never shorten it, never give an
  -- expiry to a key without one.
  lease = tonumber(lease)
  if lease == 0 then redis.call('PERSIST', lock) return {1} end
  local ttl = redis.call('PTTL', lock)
  if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', lock, lease) end
  return {1}
end

local replies = {}
local k, a = 1, 3
while a <= #ARGV do
  local code = ARGV[a]
  local ok, reply
  if code == 'a' then
    ok, reply = pcall(acquire, KEYS[k], KEYS[k + 1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    k, a = k + 2, a + 4
  elseif code == 'r' then
    ok, reply = pcall(release, KEYS[k], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    k, a = k + 1, a + 4
  elseif code == 'i' then
    ok, reply = pcall(inspect, KEYS[k], ARGV[a + 1])
    k, a = k + 1, a + 2
  elseif code == 'e' then
    ok, reply = pcall(extend, KEYS[k], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    k, a = k + 1, a + 4
  else
    return redis.error_reply('lockwright batch: unknown operation ' .. tostring(code))
  end
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = tostring(reply)
    -- A server that takes no writes (a demoted master: READONLY; out of memory: OOM) refuses
    -- the batch's first write, so nothing is written yet: the whole call fails, and is sent
    -- again where it can be (the master found afresh).
    if string.find(reply, '^READONLY') or string.find(reply, '^OOM') then
      return redis.error_reply(reply)
    end
    reply = {'error', reply}
  end
  replies[#replies + 1] = reply
end
return replies
