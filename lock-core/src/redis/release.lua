local held = redis.call('GET', KEYS[1])
if not held then return -1 end
local owner, fence, count, waiting = string.match(held, '^(.-):(%d+):(%d+)(.*)$')
if owner ~= ARGV[1] or (ARGV[2] ~= '' and fence ~= ARGV[2]) then return -2 end
count = tonumber(count)
if ARGV[3] == 'one' and count > 1 then
  count = count - 1
  redis.call('SET', KEYS[1], owner .. ':' .. fence .. ':' .. count .. waiting, 'KEEPTTL')
  return count
end
redis.call('DEL', KEYS[1])
if waiting ~= '' then redis.call(ARGV[5], ARGV[4], 'free') end
return 0
