local owner = redis.call('HGET', KEYS[1], 'o')
local lease = tonumber(ARGV[2])
if not owner then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'o', ARGV[1], 'c', 1, 'f', fence)
  if lease > 0 then redis.call('PEXPIRE', KEYS[1], lease) end
  return {1, fence, 1}
end
if owner == ARGV[1] then
  local count = redis.call('HINCRBY', KEYS[1], 'c', 1)
  local fence = tonumber(redis.call('HGET', KEYS[1], 'f'))
  local ttl = redis.call('PTTL', KEYS[1])
  -- Re-entering extends the lease if the new one ends later; it never shortens it.
  if lease == 0 then redis.call('PERSIST', KEYS[1])
  elseif ttl >= 0 and ttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
  return {1, fence, count}
end
redis.call('HSET', KEYS[1], 'w', 1)
return {0, redis.call('PTTL', KEYS[1]), 0}
