//! The runtime of [lockwright](https://docs.rs/lockwright): keyed locks with py-cachify's
//! options and Hazelcast's API, on a pluggable [`Backend`].
//!
//! - [`Lock`]: a handle on one key's lock, with async and `_blocking` forms of every operation;
//!   [`lock!`] makes one whose key is formatted from your variables (`lock!("job-{id}")`).
//! - [`LockGuard`]: one hold, released on drop, carrying a [`Fence`] token.
//! - [`Pool`]: a keyed counting semaphore (py-cachify's `pool`): at most `max_size` slots of a
//!   key held at once, each a [`PoolGuard`].
//! - [`Backend`]: the seam; [`MemoryBackend`] is the default, used when nothing is set up.
//! - [`telemetry`]: the metrics (through the `metrics` facade) and `tracing` spans of every
//!   operation.
//!
//! Guarantees (each is tested): only the owner releases a hold (force-unlock aside); a hold whose
//! lease ran out can no longer release or extend anything; an owner re-enters its own lock; fences
//! grow strictly per key; waiters are woken by the release, not by polling.
//!
//! ```
//! use lock_core::Lock;
//!
//! let lock = Lock::new("job-42").exp(10);
//! let guard = lock.acquire_blocking()?;
//! assert!(lock.is_locked_blocking()?);
//! drop(guard);
//! # Ok::<(), lock_core::LockError>(())
//! ```
#![warn(missing_docs)]

mod backend;
mod block_on;
mod duration;
mod error;
mod global;
mod guard;
mod handle_holds;
mod lock;
mod memory;
mod memory_key;
mod memory_pools;
mod options;
mod owner;
mod pool;
mod pool_guard;
mod python_format;
#[cfg(feature = "redis")]
mod redis;
mod target;
pub mod telemetry;
mod waiting;
mod wakeups;
mod watchdog;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

pub use backend::{
    Backend, BoxFuture, EventListener, Fence, HoldKind, LeaseTime, LockState, PoolAcquire,
    PoolState, Release, ReleaseScope, RemainingLease, RenewHold, SharedBackend, TryAcquire,
};
pub use duration::{IntoLockDuration, MAX_DURATION};
pub use error::{LockError, Result};
pub use global::{default_lease, global_backend, set_default_lease, set_global_backend};
pub use guard::LockGuard;
pub use lock::{Lease, Lock, MAX_KEY_LEN};
pub use memory::{ManualClock, MemoryBackend};
pub use owner::Owner;
pub use pool::Pool;
pub use pool_guard::PoolGuard;
#[cfg(feature = "redis")]
pub use redis::{RedisBackend, RedisConfig};

/// What operating tools (the `lockwright` CLI) need from a [`RedisBackend`]: every master, the
/// lock names read back, a force-unlock that says what it freed. Not a stable API: it hands out
/// redis-rs types and may change in any release.
#[cfg(feature = "redis")]
#[doc(hidden)]
pub use redis::operate as __operate;
pub use watchdog::watched_holds;
