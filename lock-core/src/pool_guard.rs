//! The RAII guard of one pool slot.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::backend::{Fence, HoldKind, LeaseTime};
use crate::block_on::block_on;
use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::guard::Renewed;
use crate::owner::Owner;
use crate::target::Target;
use crate::telemetry::{self, FoundBy, Operation, ReleaseObserver, ReleaseOutcome, Taken};
use crate::watchdog::{self, Ticket, WatchedHold};

/// One slot of a [`Pool`](crate::Pool), given back when dropped: at the end of scope, on `?`
/// and `return`, during a panic's unwinding, and when the future that owns it is dropped.
///
/// The guard gives back only its own slot: the slot's token identifies it, so a guard whose
/// lease ran out cannot free a slot someone took since; its explicit
/// [`release`](PoolGuard::release) reports [`LockError::LeaseLost`] instead.
///
/// ```
/// use lock_core::{MemoryBackend, Pool};
///
/// let backend = MemoryBackend::shared();
/// let pool = Pool::with_backend("exports", 3, &backend);
/// {
///     let slot = pool.acquire_blocking()?;
///     println!("slot {} of {}, {} taken", slot.slot(), pool.max_size(), slot.size_at_acquire());
/// } // given back here
/// assert_eq!(pool.size_blocking()?, 0);
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[must_use = "the slot is given back as soon as the guard is dropped"]
#[derive(Debug)]
pub struct PoolGuard {
    /// The pool's key and backend, shared with the handle and the watchdog's record.
    target: Arc<Target>,
    owner: Owner,
    slot: Fence,
    size: u32,
    armed: bool,
    watch: Option<Ticket>,
    /// When the slot was taken, for its hold time (as a lock guard's `held_since`).
    held_since: Option<Instant>,
}

impl PoolGuard {
    pub(crate) fn new(
        target: Arc<Target>,
        owner: Owner,
        slot: Fence,
        size: u32,
        renewed: Option<Renewed>,
    ) -> Self {
        let held_since = renewed.map(|renewed| renewed.sent_at);
        let watch = renewed.map(|Renewed { lease, sent_at }| {
            let hold = WatchedHold {
                owner,
                fence: slot,
                kind: HoldKind::PoolSlot,
            };
            watchdog::watch(Arc::clone(&target), hold, lease, sent_at)
        });
        PoolGuard {
            target,
            owner,
            slot,
            size,
            armed: true,
            watch,
            held_since,
        }
    }

    /// The pool's key.
    pub fn key(&self) -> &str {
        &self.target.key
    }

    /// The slot's token: unique to this slot of the pool, never handed out again, growing with
    /// each slot taken (pass it where a fencing token is wanted).
    pub fn slot(&self) -> Fence {
        self.slot
    }

    /// The owner that took the slot.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// Live slots of the pool right after this one was taken, this one included.
    pub fn size_at_acquire(&self) -> u32 {
        self.size
    }

    /// Gives the slot back now and says whether it was still ours.
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when its lease had run out or it was force-released; no other
    /// slot is touched.
    pub async fn release(mut self) -> Result<()> {
        self.armed = false;
        // Stop renewing before releasing: no renewal can follow the release.
        let found_lost = self.stop_watching();
        let kind = self.target.backend.kind();
        let observer =
            ReleaseObserver::start_pool(self.target.telemetry, &self.target.key, self.slot);
        let released = self
            .target
            .backend
            .pool_release(&self.target.key, self.owner, self.slot)
            .instrument(observer.span().clone())
            .await;
        let result =
            match telemetry::observe(kind, Operation::PoolRelease, &self.target.key, released) {
                Ok(true) => Ok(()),
                Ok(false) => Err(self.lease_lost_error(found_lost)),
                Err(err) => Err(err),
            };
        let outcome = match &result {
            Ok(()) => ReleaseOutcome::Released,
            Err(LockError::LeaseLost { .. }) => ReleaseOutcome::LeaseLost,
            Err(_) => ReleaseOutcome::Error,
        };
        observer.finish(outcome, self.held_since);
        result
    }

    /// Blocking form of [`release`](PoolGuard::release).
    pub fn release_blocking(self) -> Result<()> {
        block_on(self.release())
    }

    /// Makes this slot last at least `lease` from now; the watchdog, if it renewed the slot,
    /// stops. Never shortens the lease, never gives one to a slot without.
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when the slot is gone; [`LockError::InvalidArgument`] for a bad
    /// duration.
    pub async fn extend(&mut self, lease: impl IntoLockDuration) -> Result<()> {
        let lease = lease.into_lock_duration("lease")?;
        self.extend_to(Some(lease)).await
    }

    /// Blocking form of [`extend`](PoolGuard::extend).
    pub fn extend_blocking(&mut self, lease: impl IntoLockDuration) -> Result<()> {
        block_on(self.extend(lease))
    }

    /// Removes the expiry from this slot: it lasts until given back (the watchdog stops).
    pub async fn persist(&mut self) -> Result<()> {
        self.extend_to(None).await
    }

    async fn extend_to(&mut self, lease: LeaseTime) -> Result<()> {
        let found_lost = self.stop_watching();
        let extended = self
            .target
            .backend
            .pool_extend(&self.target.key, self.owner, self.slot, lease)
            .await;
        let kind = self.target.backend.kind();
        if telemetry::observe(kind, Operation::PoolExtend, &self.target.key, extended)? {
            Ok(())
        } else {
            Err(self.lease_lost_error(found_lost))
        }
    }

    /// Whether the lease watchdog renews this slot (taken without `exp`).
    pub fn is_renewed(&self) -> bool {
        self.watch.is_some()
    }

    /// Whether the watchdog found this slot gone (expired while renewals failed,
    /// force-released). Always `false` for slots the watchdog does not renew.
    pub fn is_lease_lost(&self) -> bool {
        self.watch.as_ref().is_some_and(Ticket::is_lost)
    }

    /// Resolves when the watchdog finds this slot gone. For slots it does not renew it never
    /// resolves.
    pub async fn lease_lost(&self) {
        watchdog::lost(self.watch.as_ref()).await
    }

    /// Blocking form of [`lease_lost`](PoolGuard::lease_lost).
    pub fn lease_lost_blocking(&self) {
        watchdog::lost_blocking(self.watch.as_ref())
    }

    fn stop_watching(&mut self) -> bool {
        self.watch.take().is_some_and(Ticket::stop)
    }

    fn lease_lost_error(&self, found_lost: bool) -> LockError {
        if !found_lost {
            telemetry::lease_lost(
                self.target.backend.kind(),
                &self.target.key,
                self.slot,
                FoundBy::Guard,
            );
        }
        LockError::LeaseLost {
            key: Arc::clone(&self.target.key),
        }
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        self.watch = None;
        if self.armed {
            let observer =
                ReleaseObserver::start_pool(self.target.telemetry, &self.target.key, self.slot);
            observer.span().in_scope(|| {
                self.target
                    .backend
                    .pool_release_on_drop(&self.target.key, self.owner, self.slot);
            });
            observer.finish(ReleaseOutcome::Dropped, self.held_since);
        }
    }
}

impl Taken for PoolGuard {
    fn token(&self) -> Fence {
        self.slot
    }

    fn hold_timed(&self) -> bool {
        self.held_since.is_some()
    }

    fn time_hold_from(&mut self, since: Instant) {
        self.held_since = Some(since);
    }
}
