-- The batch of lock operations in py-cachify mode (see py_cachify.rs): the ops, arguments and
-- replies of batch.lua, on py-cachify's layout. ARGV[1]: the publish command, ARGV[2]: the fence
-- counter's TTL in ms. Then one op after another:
--   'a' acquire       KEYS lock, fence counter  ARGV owner, lease ms (0 = none), ended fence
--       -> {1, fence, hold count} acquired, {0, pttl, silent} held: silent is 1 when the holder
--          is not lockwright (py-cachify), which publishes nothing on release (waiters poll)
--   'r' release       KEYS lock   ARGV owner, fence ('' = any), 'one' | 'all', channel
--       -> {0} freed, {n > 0} still held n times, {-1} not locked, {-2} not owner
--   'i' inspect       KEYS lock   ARGV owner -> {0} free, {1, mine, count, fence, pttl}; fence
--          0 and count 1 for a py-cachify holder (it has neither)
--   'e' extend        KEYS lock   ARGV owner, fence, lease ms (0 = none) -> {1} extended, {0} gone
--
-- The lock key holds what py-cachify's is_locked loads with pickle and finds true: py-cachify
-- writes pickle.dumps(1); lockwright writes pickle.dumps('lockwright:<owner>:<fence>:<count>'),
-- with ':w' appended once an acquire by another lockwright owner found it held. Any value that
-- is not exactly such a pickle is a py-cachify holder: lockwright never changes or deletes it
-- (but force unlock).
local publish, fence_ttl = ARGV[1], ARGV[2]
local now, now_text

-- pickle.dumps(text) as CPython 3.8 to 3.13 write it for a str under 256 bytes (protocol 4):
-- PROTO 4, FRAME <8-byte length>, SHORT_BINUNICODE <1-byte length> text, MEMOIZE, STOP.
local function pickled(text)
  local n = #text
  return '\128\4\149' .. string.char(n + 4) .. '\0\0\0\0\0\0\0\140' .. string.char(n) .. text .. '\148.'
end

-- owner, fence, count, waiting of a lockwright value; nil for anything else.
local function parse(value)
  if string.sub(value, 1, 3) ~= '\128\4\149' or string.byte(value, 12) ~= 140 then return nil end
  local n = string.byte(value, 13)
  if #value ~= 15 + n or string.byte(value, 4) ~= n + 4 then return nil end
  return string.match(string.sub(value, 14, 13 + n), '^lockwright:(.-):(%d+):(%d+)(.*)$')
end

local function value_of(owner, fence, count, waiting)
  return pickled('lockwright:' .. owner .. ':' .. fence .. ':' .. count .. waiting)
end

local function acquire(lock, counter, owner, lease, ended)
  lease = tonumber(lease)
  local held = redis.call('GET', lock)
  local waiting = ''
  if held then
    local holder, fence, count, w = parse(held)
    if not holder then return {0, redis.call('PTTL', lock), 1} end
    if holder == owner and tonumber(fence) > tonumber(ended) then
      count = tonumber(count) + 1
      redis.call('SET', lock, value_of(holder, fence, count, w), 'KEEPTTL')
      if lease == 0 then
        redis.call('PERSIST', lock)
      else
        local ttl = redis.call('PTTL', lock)
        if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', lock, lease) end
      end
      return {1, tonumber(fence), count}
    end
    if holder ~= owner then
      if w == '' then redis.call('SET', lock, value_of(holder, fence, count, ':w'), 'KEEPTTL') end
      return {0, redis.call('PTTL', lock), 0}
    end
    -- A hold of the owner that it ended (brought back by Redis): replaced below, as in batch.lua.
    waiting = w
  end
  -- Fences as in batch.lua: above the counter, never below the server clock in microseconds.
  if not now then
    local time = redis.call('TIME')
    now = tonumber(time[1]) * 1000000 + tonumber(time[2])
    now_text = string.format('%.0f', now)
  end
  local fence = now_text
  local last = tonumber(redis.call('SET', counter, fence, 'PX', fence_ttl, 'GET'))
  if last and last >= now then
    fence = string.format('%.0f', last + 1)
    redis.call('SET', counter, fence, 'PX', fence_ttl)
  end
  local value = value_of(owner, fence, 1, waiting)
  if lease > 0 then redis.call('SET', lock, value, 'PX', lease) else redis.call('SET', lock, value) end
  return {1, tonumber(fence), 1}
end

local function release(lock, owner, fence, scope, channel)
  local held = redis.call('GET', lock)
  if not held then return {-1} end
  local holder, current, count, waiting = parse(held)
  if not holder or holder ~= owner or (fence ~= '' and current ~= fence) then return {-2} end
  count = tonumber(count)
  if scope == 'one' and count > 1 then
    count = count - 1
    redis.call('SET', lock, value_of(holder, current, count, waiting), 'KEEPTTL')
    return {count}
  end
  redis.call('DEL', lock)
  if waiting ~= '' then redis.call(publish, channel, 'free') end
  return {0}
end

local function inspect(lock, owner)
  local held = redis.call('GET', lock)
  if not held then return {0} end
  local holder, fence, count = parse(held)
  if not holder then return {1, 0, 1, 0, redis.call('PTTL', lock)} end
  local mine = 0
  if holder == owner then mine = 1 end
  return {1, mine, tonumber(count), tonumber(fence), redis.call('PTTL', lock)}
end

local function extend(lock, owner, fence, lease)
  local held = redis.call('GET', lock)
  if not held then return {0} end
  local holder, current = parse(held)
  if not holder or holder ~= owner or current ~= fence then return {0} end
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
    ok, reply = pcall(release, KEYS[k], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
    k, a = k + 1, a + 5
  elseif code == 'i' then
    ok, reply = pcall(inspect, KEYS[k], ARGV[a + 1])
    k, a = k + 1, a + 2
  elseif code == 'e' then
    ok, reply = pcall(extend, KEYS[k], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    k, a = k + 1, a + 4
  else
    return redis.error_reply('lockwright py-cachify batch: unknown operation ' .. tostring(code))
  end
  if not ok then
    if type(reply) == 'table' and reply.err then reply = reply.err end
    reply = tostring(reply)
    -- As in batch.lua: a demoted master fails the whole call (nothing is written yet), to be
    -- resent to the master found afresh; anything else fails its op alone.
    if string.find(reply, 'READONLY', 1, true) then
      return redis.error_reply(reply)
    end
    reply = {'error', reply}
  end
  replies[#replies + 1] = reply
end
return replies
