//! The Lua scripts (the `.lua` files beside this one): one per lock operation, each one atomic
//! round trip.
//!
//! Layout of one lock (all keys share the hash tag `{<key>}`, so a Redis Cluster keeps them in one
//! slot): `<prefix>{<key>}` is a string `<owner>:<fence>:<hold count>`, with `:w` appended once
//! an acquire found the lock held (someone may wait), and the lease as the key's TTL;
//! `<prefix>{<key>}:fence` is the last fence handed out (kept for the fence counter TTL after the
//! last acquire; a new fence is also never below the server clock in microseconds, so fences keep
//! growing once it is gone); `<prefix>{<key>}:free` is the channel a release publishes on. In
//! `<key>`, `\` and `}` are escaped (see `RedisBackend`'s key layout).
//!
//! A string rather than a hash because it is what Redis does cheapest: the uncontended acquire
//! is a `GET` miss, a `TIME`, the counter's `GET` and `SET … PX` and the lock's `SET … PX`,
//! the release a `GET` and a `DEL` (one hash write
//! plus `PEXPIRE` cost about twice as much server time per pair). Owners contain no `:`.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// KEYS: lock, fence counter. ARGV: owner, lease ms (0 = never expires), fence counter TTL ms,
/// the largest fence of a hold the owner ended ('0' = none; see `known_holds`): a hold of the
/// owner with a fence up to it is a ghost, replaced instead of re-entered.
/// Returns {1, fence, hold count} when acquired, {0, pttl, 0} when held by another owner; then
/// it also marks the lock `w`, so the release publishes the wake-up (a waiter listens before it
/// tries, so a release after this script always reaches it).
pub(super) static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("acquire.lua")));

/// KEYS: lock. ARGV: owner, fence ('' = any), scope ('one' | 'all'), channel, publish command
/// (`PUBLISH`, or `SPUBLISH` on a cluster: sharded, in the lock's slot).
/// Returns 0 freed, n > 0 still held n times, -1 not locked, -2 not owner. Publishes the
/// wake-up only when an acquire found the lock held (`w`): uncontended pairs cost the server two
/// calls and no message.
pub(super) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release.lua")));

/// KEYS: lock. ARGV: channel, publish command (as for [`RELEASE`]). Returns the value it
/// deleted (`owner:fence:count[:w]`, so a tool can say what it freed), or nil when nothing was
/// held. Always publishes the wake-up when it freed something.
pub(super) static FORCE_UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("force_unlock.lua")));

/// KEYS: lock. ARGV: owner. Returns {0} when free, else {1, mine, count, fence, pttl}.
pub(super) static INSPECT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("inspect.lua")));

/// KEYS: lock. Returns nil when free, else {value, pttl, server clock in µs}: one atomic read for operating tools
/// (`RedisBackend::read_lock`). Not among [`all`]: no lock operation uses it, so it is loaded
/// on first use instead of on every connection.
pub(super) static READ_HOLD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("read_hold.lua")));

/// KEYS: lock. ARGV: owner, fence, lease ms (0 = never expires). Returns 1 when extended.
pub(super) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("extend.lua")));

/// The watchdog's batch. KEYS: lock keys. ARGV: lease ms, then owner and fence per key.
/// Returns one 1 (renewed) or 0 (gone) per key.
pub(super) static EXTEND_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("extend_many.lua")));

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
