//! The Lua scripts: one per lock operation, each one atomic round trip.
//!
//! Layout of one lock (all keys share the hash tag `{<key>}`, so a Redis Cluster keeps them in one
//! slot): `<prefix>{<key>}` is a hash with fields `o` (owner), `c` (hold count), `f` (fence), `w`
//! (present once an acquire found the lock held: someone may wait), and the lease as the key's TTL; `<prefix>{<key>}:fence` is the fence counter (no TTL, so fences keep
//! growing after the lock key is gone); `<prefix>{<key>}:free` is the channel a release publishes on.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// KEYS: lock, fence counter. ARGV: owner, lease ms (0 = never expires).
/// Returns {1, fence, hold count} when acquired, {0, pttl, 0} when held by another owner; then
/// it also marks the lock `w`, so the release publishes the wake-up (a waiter listens before it
/// tries, so a release after this script always reaches it).
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local owner = redis.call('HGET', KEYS[1], 'o')
local lease = tonumber(ARGV[2])
if not owner then
  local fence = redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[1], 'o', ARGV[1], 'c', 1, 'f', fence)
  if lease > 0 then redis.call('PEXPIRE', KEYS[1], lease) end
  return {1, fence, 1}
end
if owner == ARGV[1] then
  local count = redis.call('HINCRBY', KEYS[1], 'c', 1)
  local fence = tonumber(redis.call('HGET', KEYS[1], 'f'))
  local ttl = redis.call('PTTL', KEYS[1])
  -- Re-entering extends the lease if the new one ends later; it never shortens it.
  if lease == 0 then redis.call('PERSIST', KEYS[1])
  elseif ttl >= 0 and ttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
  return {1, fence, count}
end
redis.call('HSET', KEYS[1], 'w', 1)
return {0, redis.call('PTTL', KEYS[1]), 0}
",
    )
});

/// KEYS: lock. ARGV: owner, fence ('' = any), scope ('one' | 'all'), channel.
/// Returns 0 freed, n > 0 still held n times, -1 not locked, -2 not owner. Publishes the
/// wake-up only when an acquire found the lock held (`w`): uncontended pairs cost the server two
/// calls and no message.
pub(super) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HMGET', KEYS[1], 'o', 'f', 'c', 'w')
if not held[1] then return -1 end
if held[1] ~= ARGV[1] or (ARGV[2] ~= '' and held[2] ~= ARGV[2]) then return -2 end
if ARGV[3] == 'one' and tonumber(held[3]) > 1 then
  return redis.call('HINCRBY', KEYS[1], 'c', -1)
end
redis.call('DEL', KEYS[1])
if held[4] then redis.call('PUBLISH', ARGV[4], 'free') end
return 0
",
    )
});

/// KEYS: lock. ARGV: channel. Returns 1 when something was held.
pub(super) static FORCE_UNLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], 'free')
  return 1
end
return 0
",
    )
});

/// KEYS: lock. ARGV: owner. Returns {0} when free, else {1, mine, count, fence, pttl}.
pub(super) static INSPECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HMGET', KEYS[1], 'o', 'c', 'f')
if not held[1] then return {0} end
local mine = 0
if held[1] == ARGV[1] then mine = 1 end
return {1, mine, tonumber(held[2]), tonumber(held[3]), redis.call('PTTL', KEYS[1])}
",
    )
});

/// KEYS: lock. ARGV: owner, fence, lease ms (0 = never expires). Returns 1 when extended.
pub(super) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HMGET', KEYS[1], 'o', 'f')
if held[1] ~= ARGV[1] or held[2] ~= ARGV[2] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return 1
",
    )
});

/// The watchdog's batch. KEYS: lock keys. ARGV: lease ms, then owner and fence per key.
/// Returns one 1 (renewed) or 0 (gone) per key.
pub(super) static EXTEND_MANY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
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
",
    )
});

/// Every script, for loading them all into a new connection's server at once.
pub(super) fn all() -> [&'static Script; 6] {
    [
        &ACQUIRE,
        &RELEASE,
        &FORCE_UNLOCK,
        &INSPECT,
        &EXTEND,
        &EXTEND_MANY,
    ]
}
