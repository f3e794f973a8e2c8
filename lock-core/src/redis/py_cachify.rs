//! py-cachify mode: locks shared with Python services that lock through py-cachify 3.x on the
//! same Redis ([`RedisConfig::py_cachify`]).
//!
//! py-cachify's layout, read from its source (3.1): a lock on key `k` is the Redis string
//! `<prefix>k` (prefix `PYC-` unless `init_cachify(prefix=...)` says otherwise; its decorators
//! lock `key.format(**bound_args) + "-lock"`), taken with `SET <name> pickle.dumps(1) EX <exp> NX`
//! (`exp=None`: no expiry), seen as held by `is_locked` when `GET` returns a value that
//! `pickle.loads` turns into something true, and released by an unconditional `DEL`. A waiting
//! py-cachify acquire polls (`lock_poll_interval`, 0.1 s by default); it publishes nothing.
//!
//! How lockwright maps onto it (the operations are `py_cachify.lua`, the same ops and replies as
//! `batch.lua`, sent through the same group commit):
//! - **Value.** lockwright writes `pickle.dumps("lockwright:<owner>:<fence>:<count>")` (protocol
//!   4, byte for byte what CPython writes; the tests compare), which py-cachify's `is_locked` loads as a non-empty,
//!   so true, string. Anything else under the name (py-cachify's `pickle.dumps(1)`) is a
//!   py-cachify holder.
//! - **Owner-only release.** A release or extend compares the owner and fence in the value
//!   inside the script before it writes or `DEL`s: lockwright never deletes or changes a lock it
//!   does not own, py-cachify's included (only `force_unlock` does, as asked).
//! - **Re-entry** works between lockwright holds as in the normal mode (the owner and count are
//!   in the value); a py-cachify holder is another owner.
//! - **Fences.** A hold's fence is lockwright's own, kept in a counter key beside the lock
//!   (`<lockwright prefix>{<lock name>}:pyc-fence`), never below the server clock in
//!   microseconds: fences grow with each free→held transition taken by lockwright. py-cachify's
//!   holds have none ([`LockState::fence`](crate::LockState) is `None` for them), so a resource
//!   shared with py-cachify writers cannot reject a paused one by fence.
//! - **Leases.** The key's TTL, as py-cachify's `EX`, written in milliseconds (`PX`; py-cachify
//!   only reads that the key exists). Renewed by lockwright's watchdog for lockwright holds.
//! - **Wake-ups.** A lockwright release publishes on lockwright's channel for the key, so
//!   lockwright waiters wake at once; a py-cachify holder publishes nothing, so a lockwright
//!   waiter also tries again every [`RedisConfig::py_cachify_poll_interval`] (default 100 ms,
//!   py-cachify's own) while a py-cachify process holds the key.
//!
//! Pools keep lockwright's own layout in this mode (py-cachify's `pool` is a pickled state
//! rewritten whole under a meta-lock; they are not shared).
//!
//! One Redis server or Sentinel's master; not a Cluster (py-cachify's names carry no hash tag,
//! so the fence counter could not share the lock's slot): connecting refuses it.

use std::sync::LazyLock;
use std::time::Duration;

use deadpool_redis::redis::Script;

use super::RedisConfig;
use crate::backend::RemainingLease;
use crate::duration::IntoLockDuration;
use crate::error::Result;

/// py-cachify's default `init_cachify(prefix=...)`.
const PY_CACHIFY_PREFIX: &str = "PYC-";

/// py-cachify's default `lock_poll_interval`: how often a lockwright waiter tries again while a
/// py-cachify process holds the key.
const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The batch of lock operations on py-cachify's layout.
pub(super) static BATCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("py_cachify.lua")));

/// The watchdog's renewals on py-cachify's layout (arguments as `scripts::EXTEND_MANY`).
pub(super) static EXTEND_MANY: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("py_cachify_extend_many.lua")));

/// The py-cachify settings of a [`RedisConfig`].
#[derive(Clone, Debug)]
pub(super) struct PyCachify {
    /// py-cachify's key prefix.
    pub(super) prefix: String,
    pub(super) poll_interval: Duration,
}

impl PyCachify {
    /// The Redis name py-cachify uses for `key`: its prefix and the key, nothing escaped.
    pub(super) fn lock_name(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// What a waiter on a py-cachify holder sleeps at most: the lease, bounded by the poll
    /// interval (no wake-up will come).
    pub(super) fn poll_bound(&self, remaining: RemainingLease) -> RemainingLease {
        match remaining {
            RemainingLease::Remaining(left) if left <= self.poll_interval => remaining,
            _ => RemainingLease::Remaining(self.poll_interval),
        }
    }
}

impl RedisConfig {
    /// Shares locks with Python services using py-cachify 3.x on the same Redis: lockwright
    /// reads and writes locks as py-cachify does, under its default prefix `PYC-` (change it
    /// with [`py_cachify_prefix`](RedisConfig::py_cachify_prefix)). `Lock::new("job-42")` is
    /// py-cachify's `lock("job-42")`, Redis key `PYC-job-42`; `#[locked(key = "...",
    /// py_cachify)]` is its `@lock(key="...")` decorator (Python's rendering, `-lock` suffix).
    ///
    /// Either side sees the other's holds: `is_locked` is true, an acquire waits or is refused.
    /// lockwright releases only its own holds; a lockwright waiter on a py-cachify holder polls
    /// every [`py_cachify_poll_interval`](RedisConfig::py_cachify_poll_interval). What holds in
    /// this mode and what py-cachify itself cannot guarantee is in README.md ("Sharing locks with
    /// py-cachify") and GUARANTEES.md. Not on a Cluster: connecting fails with
    /// [`LockError::InvalidArgument`](crate::LockError::InvalidArgument).
    ///
    /// Pools ([`Pool`](crate::Pool)) are not shared with py-cachify's `pool`: py-cachify keeps a
    /// pool as a pickled state behind a lock of its own, read and rewritten whole by each
    /// client, which lockwright cannot take part in without that lock's races. A backend in
    /// this mode keeps lockwright's own pool layout (see [`RedisBackend`](crate::RedisBackend)).
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379").py_cachify();
    /// ```
    pub fn py_cachify(mut self) -> Self {
        self.py_cachify.get_or_insert_with(|| PyCachify {
            prefix: PY_CACHIFY_PREFIX.to_owned(),
            poll_interval: DEFAULT_POLL_INTERVAL,
        });
        self
    }

    /// py-cachify mode ([`py_cachify`](RedisConfig::py_cachify)) with the prefix the Python side
    /// passes to `init_cachify(prefix=...)`.
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379").py_cachify_prefix("billing-");
    /// ```
    pub fn py_cachify_prefix(self, prefix: impl Into<String>) -> Self {
        let mut config = self.py_cachify();
        if let Some(mode) = config.py_cachify.as_mut() {
            mode.prefix = prefix.into();
        }
        config
    }

    /// py-cachify mode ([`py_cachify`](RedisConfig::py_cachify)), with waiters on a py-cachify
    /// holder trying again this often (default 100 ms, py-cachify's own `lock_poll_interval`).
    /// Waiters on a lockwright holder are woken by its release, whatever this is.
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379").py_cachify_poll_interval(0.05)?;
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::InvalidArgument`](crate::LockError::InvalidArgument) for an invalid duration.
    pub fn py_cachify_poll_interval(self, interval: impl IntoLockDuration) -> Result<Self> {
        let interval = interval.into_lock_duration("py-cachify poll interval")?;
        let mut config = self.py_cachify();
        if let Some(mode) = config.py_cachify.as_mut() {
            mode.poll_interval = interval;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_on_a_py_cachify_holder_sleeps_at_most_the_poll_interval() {
        let mode = PyCachify {
            prefix: PY_CACHIFY_PREFIX.to_owned(),
            poll_interval: Duration::from_millis(100),
        };
        let poll = RemainingLease::Remaining(Duration::from_millis(100));
        assert_eq!(mode.poll_bound(RemainingLease::Unlimited), poll);
        assert_eq!(
            mode.poll_bound(RemainingLease::Remaining(Duration::from_secs(30))),
            poll
        );
        let short = RemainingLease::Remaining(Duration::from_millis(20));
        assert_eq!(mode.poll_bound(short), short);
        assert_eq!(mode.lock_name("job-42"), "PYC-job-42");
    }
}
