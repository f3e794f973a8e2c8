local held = redis.call('HMGET', KEYS[1], 'o', 'f')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return 1
