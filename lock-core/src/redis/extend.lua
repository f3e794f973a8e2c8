local held = redis.call('GET', KEYS[1])
if not held or string.match(held, '^(.-:%d+):') ~= ARGV[1] .. ':' .. ARGV[2] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return 1
