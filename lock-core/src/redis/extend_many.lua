local renewed = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and string.match(held, '^(.-:%d+):') == ARGV[2 * i] .. ':' .. ARGV[2 * i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
