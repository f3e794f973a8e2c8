//! The RAII guard of one hold.

use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use crate::backend::{Fence, HoldKind, LeaseTime, Release, ReleaseScope};
use crate::block_on::block_on;
use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::owner::Owner;
use crate::target::Target;
use crate::telemetry::{self, FoundBy, Operation, ReleaseObserver, ReleaseOutcome};
use crate::watchdog::{self, Ticket, WatchedHold};

/// What the watchdog needs of a hold it renews: its lease, and when the acquire that took it was
/// sent (the hold is surely live until one lease after that).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Renewed {
    pub(crate) lease: std::time::Duration,
    pub(crate) sent_at: std::time::Instant,
}

/// One hold on a lock, released when dropped: at the end of scope, on `?` and `return`, during a
/// panic's unwinding, and when the future that owns it is dropped.
///
/// The guard releases only its own hold: its fence identifies the hold, so a guard whose lease
/// ran out (and whose key another owner took) can never release the new holder's lock; its
/// explicit [`release`](LockGuard::release) reports [`LockError::LeaseLost`] instead.
///
/// ```
/// use lock_core::{Lock, MemoryBackend};
///
/// let backend = MemoryBackend::shared();
/// let lock = Lock::with_backend("ledger", &backend);
/// {
///     let guard = lock.acquire_blocking()?;
///     println!("holding {} with fence {}", guard.key(), guard.fence());
/// } // released here
/// assert!(!lock.is_locked_blocking()?);
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
#[derive(Debug)]
pub struct LockGuard {
    /// The key and backend, shared with the handle and the watchdog's record.
    target: Arc<Target>,
    owner: Owner,
    fence: Fence,
    hold_count: u32,
    armed: bool,
    watch: Option<Ticket>,
    /// When the hold started, for its hold time: the acquire's send time of a hold the watchdog
    /// renews (read anyway), else read at acquire only if the hold time is collected.
    held_since: Option<Instant>,
}

impl LockGuard {
    pub(crate) fn new(
        target: Arc<Target>,
        owner: Owner,
        fence: Fence,
        hold_count: u32,
        renewed: Option<Renewed>,
    ) -> Self {
        let held_since = renewed.map(|renewed| renewed.sent_at);
        let watch = renewed.map(|Renewed { lease, sent_at }| {
            let hold = WatchedHold {
                owner,
                fence,
                kind: HoldKind::Lock,
            };
            watchdog::watch(Arc::clone(&target), hold, lease, sent_at)
        });
        LockGuard {
            target,
            owner,
            fence,
            hold_count,
            armed: true,
            watch,
            held_since,
        }
    }

    /// Whether the hold time has a start.
    pub(crate) fn hold_timed(&self) -> bool {
        self.held_since.is_some()
    }

    /// Times the hold from `since`.
    pub(crate) fn time_hold_from(&mut self, since: Instant) {
        self.held_since = Some(since);
    }

    /// The locked key.
    pub fn key(&self) -> &str {
        &self.target.key
    }

    /// The hold's fencing token (shared by reentrant holds of one owner).
    pub fn fence(&self) -> Fence {
        self.fence
    }

    /// The owner that took the hold.
    pub fn owner(&self) -> Owner {
        self.owner
    }

    /// The owner's hold count right after this guard's acquire (1 unless it re-entered).
    pub fn hold_count_at_acquire(&self) -> u32 {
        self.hold_count
    }

    /// Gives the hold back now and says whether it was still ours (py-cachify's
    /// `release()` on the context manager, Hazelcast's `unlock()`).
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when the lease had run out or the lock was force-unlocked; the
    /// current holder, if any, is untouched.
    pub async fn release(mut self) -> Result<()> {
        self.armed = false;
        // Stop renewing before releasing: no renewal can follow the release.
        let found_lost = self.stop_watching();
        let kind = self.target.backend.kind();
        let observer =
            ReleaseObserver::start(self.target.telemetry, &self.target.key, Some(self.fence));
        let outcome = self
            .target
            .backend
            .release(
                &self.target.key,
                self.owner,
                Some(self.fence),
                ReleaseScope::One,
            )
            .instrument(observer.span().clone())
            .await;
        let result = telemetry::observe(kind, Operation::Release, &self.target.key, outcome)
            .and_then(|outcome| self.check_release(outcome, found_lost));
        let released = match &result {
            Ok(()) => ReleaseOutcome::Released,
            Err(LockError::LeaseLost { .. }) => ReleaseOutcome::LeaseLost,
            Err(_) => ReleaseOutcome::Error,
        };
        observer.finish(released, self.held_since);
        result
    }

    /// Blocking form of [`release`](LockGuard::release).
    pub fn release_blocking(self) -> Result<()> {
        block_on(self.release())
    }

    /// Makes this hold last at least `lease` from now (Redisson's lease extension). The caller
    /// then owns the lease: the watchdog, if it renewed this hold, stops.
    ///
    /// An extend never shortens the lease and never gives an expiry to a hold without one: the
    /// owner's re-entered holds share one lease, and cutting it would end the others early.
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when the hold is gone; [`LockError::InvalidArgument`] for a bad
    /// duration.
    pub async fn extend(&mut self, lease: impl IntoLockDuration) -> Result<()> {
        let lease = lease.into_lock_duration("lease")?;
        self.extend_to(Some(lease)).await
    }

    /// Blocking form of [`extend`](LockGuard::extend).
    pub fn extend_blocking(&mut self, lease: impl IntoLockDuration) -> Result<()> {
        block_on(self.extend(lease))
    }

    /// Removes the expiry from this hold: it lasts until released (the watchdog stops).
    pub async fn persist(&mut self) -> Result<()> {
        self.extend_to(None).await
    }

    /// Whether the lease watchdog renews this hold (acquired without `exp`).
    pub fn is_renewed(&self) -> bool {
        self.watch.is_some()
    }

    /// Whether the watchdog found this hold gone (expired while renewals failed, force-unlocked,
    /// or its key deleted). Always `false` for holds the watchdog does not renew.
    pub fn is_lease_lost(&self) -> bool {
        self.watch.as_ref().is_some_and(Ticket::is_lost)
    }

    /// Resolves when the watchdog finds this hold gone: stop working on what the lock protects.
    /// For holds the watchdog does not renew (`exp` given, or `never_expires`) it never resolves.
    ///
    /// ```
    /// use lock_core::{Lock, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
    /// let backend = MemoryBackend::shared();
    /// let lock = Lock::with_backend("report", &backend).renewed_lease(0.3);
    /// let guard = lock.acquire().await?;
    /// lock.force_unlock().await?; // someone takes the lock away
    /// guard.lease_lost().await;   // the watchdog notices at its next renewal
    /// assert!(guard.is_lease_lost());
    /// # Ok(()) }
    /// ```
    pub async fn lease_lost(&self) {
        watchdog::lost(self.watch.as_ref()).await
    }

    /// Blocking form of [`lease_lost`](LockGuard::lease_lost).
    pub fn lease_lost_blocking(&self) {
        watchdog::lost_blocking(self.watch.as_ref())
    }

    async fn extend_to(&mut self, lease: LeaseTime) -> Result<()> {
        let found_lost = self.stop_watching();
        let extended = self
            .target
            .backend
            .extend(&self.target.key, self.owner, self.fence, lease)
            .await;
        let kind = self.target.backend.kind();
        if telemetry::observe(kind, Operation::Extend, &self.target.key, extended)? {
            Ok(())
        } else {
            Err(self.lease_lost_error(found_lost))
        }
    }

    /// Whether this hold is still live (not expired, not force-unlocked).
    pub async fn is_held(&self) -> Result<bool> {
        let state = self
            .target
            .backend
            .inspect(&self.target.key, self.owner)
            .await;
        let state = telemetry::observe(
            self.target.backend.kind(),
            Operation::Inspect,
            &self.target.key,
            state,
        )?;
        Ok(state.held_by_owner && state.fence == Some(self.fence))
    }

    /// Blocking form of [`is_held`](LockGuard::is_held).
    pub fn is_held_blocking(&self) -> Result<bool> {
        block_on(self.is_held())
    }

    /// Leaves the hold in place without a guard (Hazelcast's `lock()`, which holds until
    /// `unlock()`), returning its fence and the watchdog ticket that renews it, if any.
    pub(crate) fn disarm(mut self) -> (Fence, Option<Ticket>) {
        self.armed = false;
        (self.fence, self.watch.take())
    }

    /// Stops the watchdog's renewals of this hold; returns whether it had found the hold lost
    /// (and so counted and logged it already).
    fn stop_watching(&mut self) -> bool {
        self.watch.take().is_some_and(Ticket::stop)
    }

    fn check_release(&self, outcome: Release, found_lost: bool) -> Result<()> {
        match outcome {
            Release::Freed | Release::StillHeld(_) => Ok(()),
            Release::NotLocked | Release::NotOwner => Err(self.lease_lost_error(found_lost)),
        }
    }

    /// The guard found its hold gone: counted and logged here unless the watchdog did.
    fn lease_lost_error(&self, found_lost: bool) -> LockError {
        if !found_lost {
            telemetry::lease_lost(
                self.target.backend.kind(),
                &self.target.key,
                self.fence,
                FoundBy::Guard,
            );
        }
        LockError::LeaseLost {
            key: Arc::clone(&self.target.key),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.watch = None;
        if self.armed {
            let observer =
                ReleaseObserver::start(self.target.telemetry, &self.target.key, Some(self.fence));
            observer.span().in_scope(|| {
                self.target
                    .backend
                    .release_on_drop(&self.target.key, self.owner, self.fence);
            });
            observer.finish(ReleaseOutcome::Dropped, self.held_since);
        }
    }
}
