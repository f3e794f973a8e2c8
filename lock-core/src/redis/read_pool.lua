-- A read of one pool for operating tools (RedisBackend::read_pool). KEYS: the pool, its meta
-- (layout at the top of pool.lua). nil when no slot is live, else {server clock in µs, the
-- meta's value (nil when it is gone), {member, score, ...} of the live slots, soonest end
-- first}. Expired slots are left out, and left in place: this script writes nothing.
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
local now_ms = math.floor(now_us / 1000)
local slots = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_ms, '+inf', 'WITHSCORES')
if #slots == 0 then return false end
return {now_us, redis.call('GET', KEYS[2]), slots}
