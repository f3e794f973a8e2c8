local held = redis.call('GET', KEYS[1])
if not held or string.match(held, '^(.-:%d+):') ~= ARGV[1] .. ':' .. ARGV[2] then return 0 end
-- The owner's re-entered holds share this key's lease: never shorten it, never give an expiry
-- to a key without one. The reply comes from the owner and fence check above.
local lease = tonumber(ARGV[3])
if lease == 0 then redis.call('PERSIST', KEYS[1]) return 1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl >= 0 and ttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1
