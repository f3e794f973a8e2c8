local held = redis.call('GET', KEYS[1])
if not held then return false end
redis.call('DEL', KEYS[1])
redis.call(ARGV[2], ARGV[1], 'free')
return held
