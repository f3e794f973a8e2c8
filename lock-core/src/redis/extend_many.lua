local renewed = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('HMGET', key, 'o', 'f')
  if held[1] == ARGV[2 * i] and held[2] == ARGV[2 * i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
