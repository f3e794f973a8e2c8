//! The one error type of the lock API.

use std::sync::Arc;
use std::time::Duration;

/// Everything a lock operation can fail with.
///
/// Callers match on the variant: [`LockError::Locked`] and [`LockError::TimedOut`] mean "someone
/// else holds it", [`LockError::NotOwner`] and [`LockError::LeaseLost`] mean "you no longer hold
/// it", [`LockError::InvalidArgument`] is a caller bug, [`LockError::Backend`] is infrastructure
/// (and [`LockError::NotReplicated`]: replicas that did not confirm a write in time).
///
/// ```
/// use lock_core::{Lock, LockError, MemoryBackend};
///
/// let backend = MemoryBackend::shared();
/// let lock = Lock::with_backend("report-7", &backend).nowait(true);
/// let _held = lock.acquire_blocking()?;
/// // A second owner (another thread) is refused at once, with py-cachify's message.
/// let other = std::thread::spawn(move || lock.acquire_blocking().map(|_| ()));
/// let err = other.join().unwrap().unwrap_err();
/// assert!(matches!(err, LockError::Locked { .. }));
/// assert_eq!(err.to_string(), "report-7 is already locked!");
/// # Ok::<(), LockError>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The lock is held by another owner and the caller asked not to wait (`nowait`).
    #[error("{key} is already locked!")]
    Locked {
        /// The lock's key.
        key: Arc<str>,
    },
    /// The lock stayed held by another owner for the whole wait `timeout`.
    #[error("{key} is still locked after waiting {waited:?}")]
    TimedOut {
        /// The lock's key.
        key: Arc<str>,
        /// The wait timeout that ran out.
        waited: Duration,
    },
    /// The caller does not hold the lock (Hazelcast's `IllegalMonitorStateException`): it is
    /// free, or held by another owner.
    #[error("{key} is not held by the current owner")]
    NotOwner {
        /// The lock's key.
        key: Arc<str>,
    },
    /// The hold behind a guard (or taken by `Lock::lock` and given back by `unlock`) is gone:
    /// its lease ran out or it was force-unlocked, and the key may now belong to someone else
    /// (whose lock was left intact).
    #[error("lost the lease on {key}: it expired or was force-unlocked")]
    LeaseLost {
        /// The lock's key.
        key: Arc<str>,
    },
    /// Every slot of the pool is taken and the caller asked not to wait (`nowait`): py-cachify's
    /// `CachifyPoolFullError`.
    #[error("{key} is full (max_size={max_size})")]
    PoolFull {
        /// The pool's key.
        key: Arc<str>,
        /// The pool's size.
        max_size: u32,
    },
    /// The pool's live slots were taken with another `max_size` than this caller's: callers of
    /// one pool must agree on its size (a new size applies once the pool is empty).
    #[error("pool {key} has max_size {live} (its live slots were taken with it), not {given}")]
    PoolSizeMismatch {
        /// The pool's key.
        key: Arc<str>,
        /// The size the live slots were taken with.
        live: u32,
        /// The size this caller gave.
        given: u32,
    },
    /// A key, duration or setting that cannot be used.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// Which argument (`"timeout"`, `"exp"`, `"key"`, ...).
        name: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// Fewer replicas than the Redis backend's `RedisConfig::wait_replicas` asks for
    /// acknowledged a hold's write within its timeout. An acquire has been undone
    /// (the caller holds nothing); an `extend` or `persist` did happen on the master, but may
    /// not survive a failover. Replicas down or lagging: retry later, or treat as
    /// [`LockError::Backend`].
    #[error(
        "{key}: {acknowledged} of the {wanted} replicas asked for acknowledged the write in time \
         (wait_replicas)"
    )]
    NotReplicated {
        /// The lock's key.
        key: Arc<str>,
        /// How many replicas acknowledged it (`WAIT`'s answer).
        acknowledged: usize,
        /// How many were asked for.
        wanted: usize,
    },
    /// A backend could not be set up: bad URL, unreachable server, wrong credentials.
    #[error("cannot connect to {target}: {source}")]
    Connection {
        /// What was being connected to (passwords redacted).
        target: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
    /// The backend failed (connection refused, authentication, protocol...).
    #[error("backend error on {key}: {source}")]
    Backend {
        /// The lock's key.
        key: Arc<str>,
        /// The backend's own error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl LockError {
    pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        LockError::InvalidArgument {
            name,
            reason: reason.into(),
        }
    }

    /// The key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            LockError::Locked { key }
            | LockError::TimedOut { key, .. }
            | LockError::NotOwner { key }
            | LockError::LeaseLost { key }
            | LockError::NotReplicated { key, .. }
            | LockError::PoolFull { key, .. }
            | LockError::PoolSizeMismatch { key, .. }
            | LockError::Backend { key, .. } => Some(key),
            LockError::InvalidArgument { .. } | LockError::Connection { .. } => None,
        }
    }

    /// True for [`LockError::Locked`], [`LockError::PoolFull`] and [`LockError::TimedOut`]:
    /// others hold the lock (every slot of the pool).
    pub fn is_contention(&self) -> bool {
        matches!(
            self,
            LockError::Locked { .. } | LockError::PoolFull { .. } | LockError::TimedOut { .. }
        )
    }
}

/// Shorthand for results of lock operations.
pub type Result<T, E = LockError> = std::result::Result<T, E>;
