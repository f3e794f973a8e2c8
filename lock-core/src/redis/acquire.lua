local held = redis.call('GET', KEYS[1])
local lease = tonumber(ARGV[2])
local owner, fence, count, waiting
if held then
  owner, fence, count, waiting = string.match(held, '^(.-):(%d+):(%d+)(.*)$')
  if owner == ARGV[1] and tonumber(fence) > tonumber(ARGV[4]) then
    count = tonumber(count) + 1
    redis.call('SET', KEYS[1], owner .. ':' .. fence .. ':' .. count .. waiting, 'KEEPTTL')
    local ttl = redis.call('PTTL', KEYS[1])
    -- Re-entering extends the lease if the new one ends later; it never shortens it.
    if lease == 0 then redis.call('PERSIST', KEYS[1])
    elseif ttl >= 0 and ttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
    return {1, tonumber(fence), count}
  end
  if owner ~= ARGV[1] then
    if waiting == '' then redis.call('SET', KEYS[1], held .. ':w', 'KEEPTTL') end
    return {0, redis.call('PTTL', KEYS[1]), 0}
  end
  -- The owner's name, but a fence no larger than one of a hold the owner ended (ARGV[4]): one
  -- Redis brought back (an older snapshot, a lagging replica). Replaced below.
else
  waiting = ''
end
-- A new hold. Its fence is above the last one and never below the server clock in
-- microseconds, so fences keep growing when the counter is lost (expired, evicted, flushed,
-- restarted, failed over): see RedisConfig::fence_counter_ttl for the clock assumption.
local now = redis.call('TIME')
local new_fence = tonumber(now[1]) * 1000000 + tonumber(now[2])
local last = tonumber(redis.call('GET', KEYS[2]))
if last and last >= new_fence then new_fence = last + 1 end
new_fence = string.format('%.0f', new_fence)
redis.call('SET', KEYS[2], new_fence, 'PX', ARGV[3])
local value = ARGV[1] .. ':' .. new_fence .. ':1' .. waiting
if lease > 0 then redis.call('SET', KEYS[1], value, 'PX', lease)
else redis.call('SET', KEYS[1], value) end
return {1, tonumber(new_fence), 1}
