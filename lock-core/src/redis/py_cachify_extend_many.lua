-- extend_many.lua on py-cachify's layout (see py_cachify.lua): KEYS lock keys, ARGV lease ms,
-- then owner and fence per key. Returns one 1 (renewed) or 0 (gone, or not lockwright's) per key.
local lease = tonumber(ARGV[1])
local renewed = {}
for i, key in ipairs(KEYS) do
  renewed[i] = 0
  local held = redis.call('GET', key)
  if held and string.sub(held, 1, 3) == '\128\4\149' and string.byte(held, 12) == 140 then
    local n = string.byte(held, 13)
    local text = string.sub(held, 14, 13 + n)
    if #held == 15 + n
      and string.match(text, '^lockwright:(.-:%d+):') == ARGV[2 * i] .. ':' .. ARGV[2 * i + 1] then
      local ttl = redis.call('PTTL', key)
      if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', key, lease) end
      renewed[i] = 1
    end
  end
end
return renewed
