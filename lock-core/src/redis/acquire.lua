local held = redis.call('GET', KEYS[1])
local lease = tonumber(ARGV[2])
if not held then
  -- A new fence is above the last one and never below the server clock in microseconds, so
  -- fences keep growing when the counter is lost (expired, evicted, flushed, restarted, failed
  -- over): see RedisConfig::fence_counter_ttl for the clock assumption.
  local now = redis.call('TIME')
  local fence = tonumber(now[1]) * 1000000 + tonumber(now[2])
  local last = tonumber(redis.call('GET', KEYS[2]))
  if last and last >= fence then fence = last + 1 end
  fence = string.format('%.0f', fence)
  redis.call('SET', KEYS[2], fence, 'PX', ARGV[3])
  if lease > 0 then redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence .. ':1', 'PX', lease)
  else redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence .. ':1') end
  return {1, tonumber(fence), 1}
end
local owner, fence, count, waiting = string.match(held, '^(.-):(%d+):(%d+)(.*)$')
if owner == ARGV[1] then
  count = tonumber(count) + 1
  redis.call('SET', KEYS[1], owner .. ':' .. fence .. ':' .. count .. waiting, 'KEEPTTL')
  local ttl = redis.call('PTTL', KEYS[1])
  -- Re-entering extends the lease if the new one ends later; it never shortens it.
  if lease == 0 then redis.call('PERSIST', KEYS[1])
  elseif ttl >= 0 and ttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
  return {1, tonumber(fence), count}
end
if waiting == '' then redis.call('SET', KEYS[1], held .. ':w', 'KEEPTTL') end
return {0, redis.call('PTTL', KEYS[1]), 0}
