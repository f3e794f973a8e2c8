local lease = tonumber(ARGV[1])
local renewed = {}
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and string.match(held, '^(.-:%d+):') == ARGV[2 * i] .. ':' .. ARGV[2 * i + 1] then
    -- As in extend.lua: a renewal never shortens the shared lease nor adds one.
    local ttl = redis.call('PTTL', key)
    if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', key, lease) end
    renewed[i] = 1
  else
    renewed[i] = 0
  end
end
return renewed
