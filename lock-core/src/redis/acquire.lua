local held = redis.call('GET', KEYS[1])
local lease = tonumber(ARGV[2])
if not held then
  local fence = string.format('%d', redis.call('INCR', KEYS[2]))
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
