local held = redis.call('HMGET', KEYS[1], 'o', 'c', 'f')
if not held[1] then return {0} end
local mine = 0
if held[1] == ARGV[1] then mine = 1 end
return {1, mine, tonumber(held[2]), tonumber(held[3]), redis.call('PTTL', KEYS[1])}
