//! The Lua scripts (the `.lua` files beside this one): the batch of lock operations and the
//! watchdog's renewals, each one atomic round trip.
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
//! is a `GET` miss, the counter's `SET … PX … GET` and the lock's `SET … PX` (and one `TIME` per
//! batch), the release a `GET` and a `DEL` (one hash write
//! plus `PEXPIRE` cost about twice as much server time per pair). Owners contain no `:`.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// Every lock operation but the watchdog's renewals and force-unlock: a batch of them, applied
/// in order and answered each on its own (group commit, see `batch.rs`; the arguments and
/// replies of each operation are described at the top of `batch.lua`). An acquire found the
/// lock held marks it `w`, so the release publishes the wake-up (a waiter listens before it
/// tries, so a release after this script always reaches it); uncontended pairs publish nothing.
pub(super) static BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("batch.lua")));

/// Every pool operation: a batch of them (group commit, as [`BATCH`]; arguments, replies and the
/// pool's layout are described at the top of `pool.lua`). Pools keep this layout in py-cachify
/// mode too.
pub(super) static POOL_BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("pool.lua")));

/// KEYS: lock. ARGV: channel, publish command (`PUBLISH`, or `SPUBLISH` on a cluster: sharded,
/// in the lock's slot). Returns the value it deleted (`owner:fence:count[:w]`, so a tool can say
/// what it freed), or nil when nothing was held. Always publishes the wake-up when it freed
/// something.
pub(super) static FORCE_UNLOCK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("force_unlock.lua")));

/// KEYS: lock. Returns nil when free, else {value, pttl, server clock in µs}: one atomic read
/// for operating tools (`RedisBackend::read_lock`). Not among [`all`]: no lock operation uses
/// it, so it is loaded on first use instead of on every connection.
pub(super) static READ_HOLD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("read_hold.lua")));

/// The watchdog's batch. KEYS: lock keys. ARGV: lease ms, then owner and fence per key.
/// Returns one 1 (renewed) or 0 (gone) per key.
pub(super) static EXTEND_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("extend_many.lua")));

/// Every script (py-cachify mode's too), for loading them all into a new connection's server
/// at once.
pub(super) fn all() -> [&'static Script; 6] {
    [
        &BATCH,
        &POOL_BATCH,
        &FORCE_UNLOCK,
        &EXTEND_MANY,
        &super::py_cachify::BATCH,
        &super::py_cachify::EXTEND_MANY,
    ]
}
