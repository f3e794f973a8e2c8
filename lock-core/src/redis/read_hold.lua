local held = redis.call('GET', KEYS[1])
if not held then return false end
local now = redis.call('TIME')
return {held, redis.call('PTTL', KEYS[1]), tonumber(now[1]) * 1000000 + tonumber(now[2])}
