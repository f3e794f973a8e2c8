//! The seam between the lock API and a store: the [`Backend`] trait and its value types.
//!
//! Everything above this trait (handles, guards, waiting, validation, macros) is written once.
//! Each method is one atomic step on the store: one critical section in memory, one Lua script
//! round trip on Redis.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::owner::Owner;

pub use event_listener::EventListener;

/// A boxed, `Send` future: what backend methods return, so `dyn Backend` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend shared by handles and guards.
pub type SharedBackend = Arc<dyn Backend>;

/// A fencing token: grows strictly with every free→held transition of a key.
///
/// Pass it to the resource the lock protects and have the resource refuse tokens lower than the
/// highest it has seen: that keeps data safe even when a paused holder outlives its lease.
/// A reentrant acquire sees the token of the hold it re-enters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fence(pub u64);

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How long a remaining lease is, as reported by a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemainingLease {
    /// Nobody holds the lock.
    NotLocked,
    /// Held with no expiry: it lasts until released.
    Unlimited,
    /// Held; the lease ends after this long.
    Remaining(Duration),
}

impl RemainingLease {
    /// Hazelcast's `get_remaining_lease_time()`: milliseconds, `-1` when not locked,
    /// `i64::MAX` when held without expiry.
    pub fn as_millis_or_minus_one(self) -> i64 {
        match self {
            RemainingLease::NotLocked => -1,
            RemainingLease::Unlimited => i64::MAX,
            RemainingLease::Remaining(left) => i64::try_from(left.as_millis()).unwrap_or(i64::MAX),
        }
    }
}

/// Outcome of [`Backend::try_acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TryAcquire {
    /// The caller now holds the lock (`hold_count` > 1 when it re-entered its own hold).
    Acquired {
        /// The hold's fencing token.
        fence: Fence,
        /// The owner's hold count after this acquire.
        hold_count: u32,
    },
    /// Another owner holds it.
    Held {
        /// What is left of the other owner's lease: a waiter sleeps at most this long.
        remaining: RemainingLease,
    },
}

/// Which of the owner's holds a release gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseScope {
    /// One hold (a guard or Hazelcast's `unlock`): the key frees when the count reaches zero.
    One,
    /// Every hold of the owner (py-cachify's `release`): the key frees now.
    All,
}

/// Outcome of [`Backend::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// The key is now free.
    Freed,
    /// The owner still holds it this many times.
    StillHeld(u32),
    /// Nobody holds it (never locked, released, or its lease ran out).
    NotLocked,
    /// Another owner (or another hold epoch, when a fence was given) holds it; nothing changed.
    NotOwner,
}

/// A snapshot of one key, from [`Backend::inspect`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockState {
    /// Whether anyone holds it.
    pub locked: bool,
    /// Whether the owner passed to `inspect` holds it.
    pub held_by_owner: bool,
    /// Reentrant hold count of whoever holds it (0 when free).
    pub hold_count: u32,
    /// The holder's fencing token.
    pub fence: Option<Fence>,
    /// What is left of the lease.
    pub remaining: RemainingLease,
}

impl LockState {
    /// The state of a free key.
    pub const FREE: LockState = LockState {
        locked: false,
        held_by_owner: false,
        hold_count: 0,
        fence: None,
        remaining: RemainingLease::NotLocked,
    };
}

/// A lease to set on acquire or extend: `None` means the hold never expires.
pub type LeaseTime = Option<Duration>;

/// Outcome of [`Backend::pool_acquire`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolAcquire {
    /// The caller now holds a slot of the pool.
    Acquired {
        /// The slot's token: unique to this slot of this pool, never handed out again, and
        /// growing with each slot taken (like a [`Fence`]).
        slot: Fence,
        /// Live slots of the pool right after this acquire, this one included.
        size: u32,
    },
    /// `max_size` live slots are taken.
    Full {
        /// What is left of the lease of the slot that ends first: a waiter sleeps at most this
        /// long.
        remaining: RemainingLease,
    },
}

/// A snapshot of one pool, from [`Backend::pool_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolState {
    /// Live slots (taken, lease not run out).
    pub size: u32,
    /// The `max_size` its live slots were taken with; `None` when no slot is live.
    pub max_size: Option<u32>,
}

impl PoolState {
    /// The state of a pool with no live slot.
    pub const EMPTY: PoolState = PoolState {
        size: 0,
        max_size: None,
    };
}

/// A store of keyed locks. Implement it to add a backend; every lock feature above works
/// unchanged.
///
/// Contract, which the conformance tests check for every backend:
/// - each method is atomic;
/// - a key has at most one owner whose lease has not run out; a fence grows strictly with each
///   free→held transition of a key, a reentrant acquire returns the current one;
/// - `release` and `extend` act only when `owner` (and `fence`, when given) match the live hold;
/// - a key's lease is never shorter than the longest lease a live hold of it was given or extended
///   to (re-entry, `extend` and renewals never shorten it, nor add an expiry to a key without one);
/// - whenever a key becomes free by `release` or `force_unlock`, listeners from
///   [`Backend::listen`] on it are woken (expiry need not wake them: waiters sleep at most the
///   remaining lease). A backend may wake only the listeners that an acquire attempt made after
///   their `listen` found the key taken (the waiting loop always listens, then tries): memory
///   and Redis wake a hold's release only when such an attempt found that hold taken, and
///   memory also when a hold so found is removed after its lease ended, since a waiter's own
///   clock may still be short of that end;
/// - free and expired keys leave no state behind except what fencing needs;
/// - pools (keyed counting semaphores, `pool_*`): a pool has at most `max_size` live slots; a
///   slot's token is never handed out twice for a key; release, extend and renewal act only on
///   the live slot of that owner and token; while a pool has live slots, an acquire that gives
///   another `max_size` fails with [`LockError::PoolSizeMismatch`](crate::LockError) and
///   changes nothing; a slot freed by release or force-release wakes
///   [`Backend::listen_pool`] listeners; expired slots are reclaimed and an empty pool leaves
///   no state behind except what its slot tokens need. A pool and a lock of the same key are
///   independent.
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Takes the lock for `owner`, or re-enters the owner's hold (incrementing its count and
    /// extending, never shortening, its lease), or reports the other owner's remaining lease.
    /// The key comes shared, so a backend that keeps it needs no copy.
    fn try_acquire<'a>(
        &'a self,
        key: &'a Arc<str>,
        owner: Owner,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<TryAcquire>>;

    /// [`try_acquire`](Backend::try_acquire) answered at once, for a backend that needs no I/O
    /// (an in-process store): the lock handle calls it first and awaits `try_acquire` only on
    /// `None`, the default. It saves a boxed future on the hottest path; when it answers, it must
    /// answer exactly as `try_acquire` would.
    fn try_acquire_sync(
        &self,
        key: &Arc<str>,
        owner: Owner,
        lease: LeaseTime,
    ) -> Option<Result<TryAcquire>> {
        let _ = (key, owner, lease);
        None
    }

    /// [`try_acquire_sync`](Backend::try_acquire_sync) given `now`, the caller's reading of the
    /// monotonic clock taken just before the call (the lock handle takes one anyway: it is when
    /// a renewed hold's acquire was sent). A backend timing leases on that clock may use it
    /// instead of reading the clock again (a read took about 30 ns on this project's 2-core VM,
    /// a seventh of an uncontended in-memory acquire and release). The default ignores it.
    fn try_acquire_sync_at(
        &self,
        key: &Arc<str>,
        owner: Owner,
        lease: LeaseTime,
        now: Instant,
    ) -> Option<Result<TryAcquire>> {
        let _ = now;
        self.try_acquire_sync(key, owner, lease)
    }

    /// Gives back holds of `owner` (only those of hold epoch `fence`, when given).
    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    ) -> BoxFuture<'a, Result<Release>>;

    /// Frees the key whoever holds it. Returns whether it was held.
    fn force_unlock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>>;

    /// Reads the key's state, as seen by `owner`.
    fn inspect<'a>(&'a self, key: &'a str, owner: Owner) -> BoxFuture<'a, Result<LockState>>;

    /// Makes the live hold of `owner` with `fence` last at least `lease` from now (`None`: until
    /// released). Returns false when that hold is gone, true otherwise, whether or not the lease
    /// changed.
    ///
    /// The owner's re-entered holds share the key's one lease, so it is never shortened and a key
    /// without expiry never gets one: the key's lease is never shorter than the longest lease a
    /// live hold of it was given or extended to.
    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Registers interest in the key becoming free. Callers listen *before* trying to acquire,
    /// so a release between the failed try and the wait is not missed.
    fn listen(&self, key: &str) -> EventListener;

    /// Releases one hold from a guard's `Drop`: must not block for long and cannot report
    /// errors (a network backend sends it in the background; the lease bounds a lost release).
    fn release_on_drop(&self, key: &str, owner: Owner, fence: Fence);

    /// Renews many holds at once (the lease watchdog's batch), by the rule of
    /// [`Backend::extend`] (of [`Backend::pool_extend`] for a pool slot): returns, per hold, `Some(true)` when it was still live (and is
    /// renewed), `Some(false)` when it is gone, and `None` when it is not known (the part of the
    /// batch that carried it failed: the watchdog tries it again, while its lease runs). An
    /// error means no hold's answer is known. The default calls `extend` or `pool_extend` for each; a
    /// network backend should do it in as few round trips as it can, and let a failing part
    /// (one server of several) cost only its own holds.
    fn extend_many<'a>(
        &'a self,
        holds: &'a [RenewHold],
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Option<bool>>>> {
        Box::pin(async move {
            let mut live = Vec::with_capacity(holds.len());
            for hold in holds {
                let extended = match hold.kind {
                    HoldKind::Lock => self.extend(&hold.key, hold.owner, hold.fence, Some(lease)),
                    HoldKind::PoolSlot => {
                        self.pool_extend(&hold.key, hold.owner, hold.fence, Some(lease))
                    }
                };
                live.push(Some(extended.await?));
            }
            Ok(live)
        })
    }

    /// Which store this is, for the lease watchdog: holds of backends with one identity share
    /// renewal batches and one renewal in flight. The default is this value's address; a backend
    /// whose handles are cheap clones of one store (like `RedisBackend::shared`) returns the
    /// store's, so holds taken through any of its handles are renewed together.
    fn identity(&self) -> usize {
        self as *const Self as *const () as usize
    }

    /// A short, fixed name of this kind of store (`"memory"`, `"redis"`): the `backend` label of
    /// lockwright's metrics (see [`telemetry`](crate::telemetry)) and the `backend` field of its
    /// spans. Return a constant: every distinct value is a label value kept for the life of the
    /// process. The default is `"other"`.
    ///
    /// ```
    /// use lock_core::{Backend, MemoryBackend};
    ///
    /// assert_eq!(MemoryBackend::new().kind(), "memory");
    /// ```
    fn kind(&self) -> &'static str {
        "other"
    }

    /// Takes a slot of the pool `key` for `owner` if fewer than `max_size` are live (after
    /// reclaiming expired ones), with lease `lease`. Not reentrant: every call takes a slot of
    /// its own. `max_size` is at least 1 (the handle checks it).
    ///
    /// # Errors
    /// [`LockError::PoolSizeMismatch`](crate::LockError::PoolSizeMismatch) when the pool's live
    /// slots were taken with another `max_size`.
    fn pool_acquire<'a>(
        &'a self,
        key: &'a Arc<str>,
        owner: Owner,
        max_size: u32,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<PoolAcquire>>;

    /// Gives back the slot `slot` of `owner`; false when it is not live (released, expired,
    /// force-released) or not that owner's: nothing changed then.
    fn pool_release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        slot: Fence,
    ) -> BoxFuture<'a, Result<bool>>;

    /// Makes the live slot `slot` of `owner` last at least `lease` from now (`None`: until
    /// released); never shortens it. False when the slot is not live.
    fn pool_extend<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        slot: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<bool>>;

    /// The pool's live slots and the `max_size` they were taken with. A read: it deletes
    /// nothing.
    fn pool_state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<PoolState>>;

    /// Frees the slot `slot` whoever holds it, or with `None` every slot of the pool; returns
    /// how many live slots it freed (and wakes waiters if any).
    fn pool_force_release<'a>(
        &'a self,
        key: &'a str,
        slot: Option<Fence>,
    ) -> BoxFuture<'a, Result<u32>>;

    /// Registers interest in a slot of the pool `key` becoming free; listen *before* trying.
    fn listen_pool(&self, key: &str) -> EventListener;

    /// Gives back a slot from a pool guard's `Drop` (as [`Backend::release_on_drop`] does for a
    /// lock hold).
    fn pool_release_on_drop(&self, key: &str, owner: Owner, slot: Fence);

    /// This backend's lease for holds acquired without `exp`, if it overrides the global
    /// [`default_lease`](crate::default_lease).
    fn default_lease(&self) -> Option<Duration> {
        None
    }
}

/// One hold to renew, for [`Backend::extend_many`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenewHold {
    /// The lock's key.
    pub key: Arc<str>,
    /// The hold's owner.
    pub owner: Owner,
    /// The hold's fence (a pool slot's token).
    pub fence: Fence,
    /// A lock's hold, or a pool's slot.
    pub kind: HoldKind,
}

/// What a [`RenewHold`] renews: [`Backend::extend`] or [`Backend::pool_extend`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldKind {
    /// A hold of the lock `key`.
    Lock,
    /// A slot of the pool `key`.
    PoolSlot,
}
