local held = redis.call('GET', KEYS[1])
if not held then return {0} end
local owner, fence, count = string.match(held, '^(.-):(%d+):(%d+)')
local mine = 0
if owner == ARGV[1] then mine = 1 end
return {1, mine, tonumber(count), tonumber(fence), redis.call('PTTL', KEYS[1])}
