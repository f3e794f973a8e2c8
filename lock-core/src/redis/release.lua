local held = redis.call('HMGET', KEYS[1], 'o', 'f', 'c', 'w')
if not held[1] then return -1 end
if held[1] ~= ARGV[1] or (ARGV[2] ~= '' and held[2] ~= ARGV[2]) then return -2 end
if ARGV[3] == 'one' and tonumber(held[3]) > 1 then
  return redis.call('HINCRBY', KEYS[1], 'c', -1)
end
redis.call('DEL', KEYS[1])
if held[4] then redis.call('PUBLISH', ARGV[4], 'free') end
return 0
