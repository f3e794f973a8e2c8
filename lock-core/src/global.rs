//! Process-wide settings: the default backend and the default lease.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::backend::SharedBackend;
use crate::duration::IntoLockDuration;
use crate::error::Result;
use crate::memory::MemoryBackend;

static GLOBAL_BACKEND: RwLock<Option<SharedBackend>> = RwLock::new(None);
static DEFAULT_LEASE_MILLIS: AtomicU64 = AtomicU64::new(30_000);

/// The backend used by [`Lock::new`](crate::Lock::new): the one given to [`set_global_backend`],
/// or else a process-wide [`MemoryBackend`] created on first use (no set-up needed).
///
/// ```
/// let backend = lock_core::global_backend();
/// assert!(format!("{backend:?}").contains("MemoryBackend"));
/// ```
pub fn global_backend() -> SharedBackend {
    if let Some(backend) = GLOBAL_BACKEND
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
    {
        return Arc::clone(backend);
    }
    let mut slot = GLOBAL_BACKEND
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    Arc::clone(slot.get_or_insert_with(MemoryBackend::shared))
}

/// Makes `backend` the global one (py-cachify's `init_cachify(...)`). Handles created before
/// keep the backend they were created with; handles and `#[locked]` calls made after use this one.
///
/// ```
/// use lock_core::{set_global_backend, MemoryBackend};
/// set_global_backend(MemoryBackend::shared());
/// ```
pub fn set_global_backend(backend: SharedBackend) {
    *GLOBAL_BACKEND
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(backend);
}

/// The lease of a hold whose `exp` is not given: 30 seconds unless changed (py-cachify's default).
pub fn default_lease() -> Duration {
    Duration::from_millis(DEFAULT_LEASE_MILLIS.load(Ordering::Relaxed))
}

/// Changes [`default_lease`] for holds acquired from now on. Sub-millisecond parts are rounded
/// up to whole milliseconds.
///
/// ```
/// lock_core::set_default_lease(60)?;
/// assert_eq!(lock_core::default_lease(), std::time::Duration::from_secs(60));
/// assert!(lock_core::set_default_lease(0).is_err());
/// # lock_core::set_default_lease(30)?;
/// # Ok::<(), lock_core::LockError>(())
/// ```
pub fn set_default_lease(lease: impl IntoLockDuration) -> Result<()> {
    let lease = lease.into_lock_duration("default lease")?;
    let millis = lease.as_nanos().div_ceil(1_000_000);
    DEFAULT_LEASE_MILLIS.store(millis as u64, Ordering::Relaxed);
    Ok(())
}
