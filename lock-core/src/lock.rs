//! The lock handle: py-cachify's `lock(...)` and Hazelcast's `Lock`, on any backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::backend::{
    Fence, LeaseTime, LockState, Release, ReleaseScope, RemainingLease, SharedBackend, TryAcquire,
};
use crate::block_on::block_on;
use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::global::{default_lease, global_backend};
use crate::guard::{LockGuard, Renewed};
use crate::handle_holds;
use crate::options::Options;
use crate::owner::Owner;
use crate::target::Target;
use crate::telemetry::{self, AcquireObserver, Operation, ReleaseObserver, ReleaseOutcome};
use crate::waiting::{self, contention_as_none, Attempt, Wait, Waiter};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// How long a hold lasts if it is not released (py-cachify's `exp`, Hazelcast's `lease_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lease {
    /// No `exp` given: the backend's default lease (else the global [`default_lease`], 30 s),
    /// renewed by the lease watchdog every third of it while the guard lives, or, for a hold
    /// taken by [`Lock::lock`] / [`Lock::try_lock`], until its `unlock()` (Redisson's
    /// watchdog). A crashed process's hold ends within one lease; a live one never overlaps
    /// the next run (py-cachify defect 2).
    #[default]
    Default,
    /// Like [`Lease::Default`], with this lease instead of the default.
    Renewed(Duration),
    /// Expires this long after acquire, renewed by nobody.
    Fixed(Duration),
    /// Held until released (py-cachify's `exp=None`, Hazelcast's `lease_time=-1`).
    Never,
}

impl Lease {
    /// The lease to set on acquire, and the watchdog's lease when the hold is to be renewed.
    pub(crate) fn resolve(self, backend: &SharedBackend) -> (LeaseTime, Option<Duration>) {
        match self {
            Lease::Default => {
                let lease = backend.default_lease().unwrap_or_else(default_lease);
                (Some(lease), Some(lease))
            }
            Lease::Renewed(lease) => (Some(lease), Some(lease)),
            Lease::Fixed(lease) => (Some(lease), None),
            Lease::Never => (None, None),
        }
    }
}

/// A [`Lock`] on the global backend whose key is formatted from the caller's variables, like
/// `format!`: `lock!("job-{id}")` locks `job-7` when `id` is 7.
///
/// py-cachify's `lock('job-{id}')` locks the literal text `job-{id}` (its defect 8). Here the
/// template is formatted where the handle is made, a placeholder that names no variable is a
/// compile error, and positional arguments work as in `format!`. Write `{{` / `}}` for literal
/// braces. Options chain as on [`Lock::new`]; for an explicit backend use
/// `Lock::with_backend(format!(..), &backend)`.
///
/// ```
/// let id = 7;
/// let lock = lock_core::lock!("job-{id}").exp(10);
/// assert_eq!(lock.key(), "job-7");
/// assert_eq!(lock_core::lock!("user-{}-{:03}", "ann", 5).key(), "user-ann-005");
/// ```
///
/// ```compile_fail
/// // `{idd}` names no variable in scope: a compile error, not a lock on the literal text.
/// let id = 7;
/// let lock = lock_core::lock!("job-{idd}");
/// ```
#[macro_export]
macro_rules! lock {
    ($($template:tt)+) => {
        $crate::Lock::new(::std::format!($($template)+))
    };
}

/// A handle on the lock of one key, with py-cachify's options (`nowait`, `timeout`, `exp`).
///
/// Creating a handle does nothing on the backend; it is cheap to clone. Every operation has an
/// async form and a blocking form (suffix `_blocking`). The owner of a hold is the current tokio
/// task, or the current thread outside tasks (see [`Owner`]); an owner may acquire its own lock
/// again (the hold count goes up) instead of deadlocking.
///
/// | py-cachify                          | Hazelcast                         | lockwright                                |
/// |-------------------------------------|-----------------------------------|-------------------------------------------|
/// | `with lock(...)`                    |                                   | [`acquire`](Lock::acquire) → guard        |
/// | `is_locked()` / `is_alocked()`      | `is_locked()`                     | [`is_locked`](Lock::is_locked)            |
/// | `release()` / `arelease()`          |                                   | [`release`](Lock::release) (owner only)   |
/// |                                     | `lock(lease_time)`                | [`lock`](Lock::lock) (no `exp`: renewed until `unlock`) |
/// |                                     | `try_lock(timeout, lease_time)`   | [`try_lock`](Lock::try_lock), [`try_lock_for`](Lock::try_lock_for) |
/// |                                     | `unlock()`                        | [`unlock`](Lock::unlock)                  |
/// |                                     | FencedLock's `LockOwnershipLostError` | [`is_lease_lost`](Lock::is_lease_lost), [`LockError::LeaseLost`] from `unlock` |
/// |                                     | `force_unlock()`                  | [`force_unlock`](Lock::force_unlock)      |
/// |                                     | `is_locked_by_current_thread()`   | [`is_locked_by_current_owner`](Lock::is_locked_by_current_owner) |
/// |                                     | `get_lock_count()`                | [`lock_count`](Lock::lock_count)          |
/// |                                     | `get_remaining_lease_time()`      | [`remaining_lease`](Lock::remaining_lease) |
///
/// Invalid options (a zero, negative or NaN duration, an empty key) never panic: the handle
/// remembers the first problem and every operation returns it as [`LockError::InvalidArgument`].
///
/// ```
/// use lock_core::{Lock, MemoryBackend};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
/// let backend = MemoryBackend::shared();
/// let lock = Lock::with_backend("example-lock", &backend)
///     .nowait(false)
///     .timeout(4)
///     .exp(2);
/// let guard = lock.acquire().await?;
/// assert!(lock.is_locked().await?);
/// assert_eq!(lock.lock_count().await?, 1);
/// guard.release().await?;
/// assert!(!lock.is_locked().await?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Lock {
    /// The key and backend, shared with every guard and watched hold of the handle.
    target: Arc<Target>,
    options: Options,
}

impl Lock {
    /// A handle on `key` in the [global backend](crate::global_backend), with py-cachify's
    /// defaults: `nowait = true`, no timeout, the default lease.
    pub fn new(key: impl Into<Arc<str>>) -> Self {
        Self::with_backend(key, &global_backend())
    }

    /// A handle on `key` in `backend` (a non-global instance): every operation of the handle and
    /// its guards goes to that backend.
    pub fn with_backend(key: impl Into<Arc<str>>, backend: &SharedBackend) -> Self {
        let key = key.into();
        Lock {
            options: Options::for_key(&key),
            target: Target::new(key, backend),
        }
    }

    /// `true` (the default, as in py-cachify): [`acquire`](Lock::acquire) fails at once with
    /// [`LockError::Locked`] when another owner holds the lock. `false`: it waits, up to the
    /// [`timeout`](Lock::timeout) if one is set, else until the lock is free.
    pub fn nowait(mut self, nowait: bool) -> Self {
        self.options.nowait = nowait;
        self
    }

    /// The longest [`acquire`](Lock::acquire) waits when `nowait(false)`; then it fails with
    /// [`LockError::TimedOut`]. A `Duration` or seconds (`4`, `0.5`). With `nowait(true)` the
    /// timeout is kept but unused, as in py-cachify.
    pub fn timeout(mut self, timeout: impl IntoLockDuration) -> Self {
        self.options.set_timeout(timeout);
        self
    }

    /// The hold expires this long after acquire unless released first (py-cachify's `exp`). A
    /// `Duration` or seconds (`2`, `0.25`).
    pub fn exp(mut self, exp: impl IntoLockDuration) -> Self {
        self.options.set_exp(exp);
        self
    }

    /// Holds get this lease, renewed by the watchdog every third of it while the guard lives,
    /// or until the `unlock()` of a [`lock`](Lock::lock) (like no `exp`, with a lease other than
    /// the default).
    pub fn renewed_lease(mut self, lease: impl IntoLockDuration) -> Self {
        self.options.set_renewed_lease(lease);
        self
    }

    /// Holds never expire: they last until released (py-cachify's `exp=None`).
    pub fn never_expires(mut self) -> Self {
        self.options.lease = Lease::Never;
        self
    }

    /// Sets the lease policy directly.
    pub fn lease(mut self, lease: Lease) -> Self {
        self.options.set_lease(lease);
        self
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.target.key
    }

    /// The backend this handle uses.
    pub fn backend(&self) -> &SharedBackend {
        &self.target.backend
    }

    /// `Ok` when the key and options are valid, else the first problem.
    pub fn validate(&self) -> Result<&Self> {
        self.options.validate().map(|()| self)
    }

    fn options_wait(&self) -> Wait {
        self.options.wait()
    }

    /// Acquires with the handle's options (py-cachify's `with lock(...)`): the guard releases on
    /// drop.
    ///
    /// # Errors
    /// [`LockError::Locked`] (nowait), [`LockError::TimedOut`], [`LockError::InvalidArgument`],
    /// [`LockError::Backend`].
    pub async fn acquire(&self) -> Result<LockGuard> {
        self.acquire_as_task(self.options_wait()).await
    }

    /// Blocking form of [`acquire`](Lock::acquire).
    pub fn acquire_blocking(&self) -> Result<LockGuard> {
        self.acquire_as_thread(self.options_wait())
    }

    /// Acquires without waiting, whatever the options: `None` when another owner holds it.
    pub async fn try_acquire(&self) -> Result<Option<LockGuard>> {
        contention_as_none(self.acquire_as_task(Wait::No).await)
    }

    /// Blocking form of [`try_acquire`](Lock::try_acquire).
    pub fn try_acquire_blocking(&self) -> Result<Option<LockGuard>> {
        contention_as_none(self.acquire_as_thread(Wait::No))
    }

    /// Hazelcast's `lock()`: waits as long as it takes, then holds until [`unlock`](Lock::unlock)
    /// (by any handle on this key and backend, in the same owner). Returns the fencing token.
    ///
    /// The lease follows the handle's options, as for a guard. Without `exp` (the default
    /// lease, or [`renewed_lease`](Lock::renewed_lease)) the lease watchdog renews the hold
    /// every third of its lease until the matching `unlock()`, [`release`](Lock::release) or
    /// [`force_unlock`](Lock::force_unlock) (Redisson's watchdog; Hazelcast's `lease_time=-1`):
    /// a live process keeps it as long as it runs, a crashed one loses it within one lease.
    /// Re-entering (`lock()` again, or [`try_lock`](Lock::try_lock)) counts up, and the hold is
    /// renewed while the count is above zero; each `unlock()` gives back the last-taken of the
    /// owner's handle holds, so nested `lock()`/`unlock()` pairs with other leases inside a
    /// renewed one leave it renewed. With `exp` the hold ends after that lease, renewed by
    /// nobody; with [`never_expires`](Lock::never_expires) it lasts until unlocked.
    ///
    /// When the watchdog finds a renewed hold gone (force-unlocked, expired while renewals
    /// failed), [`is_lease_lost`](Lock::is_lease_lost) turns true and the next `unlock()`
    /// returns [`LockError::LeaseLost`]. A hold taken while the owner already holds the key
    /// through a guard joins that hold (one epoch, one fence), and the key then stays held while
    /// either lasts: renewed until the `unlock()` of a handle hold without `exp`, and while a
    /// guard without `exp` lives.
    ///
    /// ```
    /// use lock_core::{Lock, MemoryBackend};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lock_core::LockError> {
    /// let backend = MemoryBackend::shared();
    /// let lock = Lock::with_backend("long-job", &backend);
    /// let fence = lock.lock().await?; // held, and renewed, until unlock()
    /// assert!(lock.is_renewed() && !lock.is_lease_lost());
    /// // ... work for as long as it takes, passing `fence` to what the lock protects ...
    /// lock.unlock().await?;
    /// assert!(!lock.is_locked().await?);
    /// # let _ = fence;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`LockError::InvalidArgument`], [`LockError::Backend`].
    pub async fn lock(&self) -> Result<Fence> {
        let guard = self.acquire_as_task(Wait::Forever).await?;
        Ok(self.hold_until_unlock(guard))
    }

    /// Blocking form of [`lock`](Lock::lock).
    pub fn lock_blocking(&self) -> Result<Fence> {
        let guard = self.acquire_as_thread(Wait::Forever)?;
        Ok(self.hold_until_unlock(guard))
    }

    /// Hazelcast's `try_lock()`: takes the lock if free or already ours, without waiting, and
    /// holds it as [`lock`](Lock::lock) does (renewed until [`unlock`](Lock::unlock) when the
    /// handle has no `exp`).
    pub async fn try_lock(&self) -> Result<bool> {
        let acquired = self.try_acquire().await?;
        Ok(acquired
            .map(|guard| self.hold_until_unlock(guard))
            .is_some())
    }

    /// Blocking form of [`try_lock`](Lock::try_lock).
    pub fn try_lock_blocking(&self) -> Result<bool> {
        Ok(self
            .try_acquire_blocking()?
            .map(|guard| self.hold_until_unlock(guard))
            .is_some())
    }

    /// Hazelcast's `try_lock(timeout)`: waits up to `timeout` for the lock, then holds it as
    /// [`lock`](Lock::lock) does.
    pub async fn try_lock_for(&self, timeout: impl IntoLockDuration) -> Result<bool> {
        let wait = Wait::For(timeout.into_lock_duration("timeout")?);
        let acquired = contention_as_none(self.acquire_as_task(wait).await)?;
        Ok(acquired
            .map(|guard| self.hold_until_unlock(guard))
            .is_some())
    }

    /// Blocking form of [`try_lock_for`](Lock::try_lock_for).
    pub fn try_lock_for_blocking(&self, timeout: impl IntoLockDuration) -> Result<bool> {
        let wait = Wait::For(timeout.into_lock_duration("timeout")?);
        let acquired = contention_as_none(self.acquire_as_thread(wait))?;
        Ok(acquired
            .map(|guard| self.hold_until_unlock(guard))
            .is_some())
    }

    /// Turns a guard into a handle hold: the hold stays, and the watchdog ticket that renews it
    /// (if any) goes on the record until the matching unlock. Runs in the same poll as the
    /// acquire's end, so a dropped `lock()` future either took nothing or completed.
    fn hold_until_unlock(&self, guard: LockGuard) -> Fence {
        let owner = guard.owner();
        let (fence, ticket) = guard.disarm();
        let kept = match (ticket, self.options.lease.resolve(&self.target.backend).0) {
            (Some(ticket), _) => handle_holds::Kept::Renewed(ticket),
            (None, Some(lease)) => handle_holds::Kept::Fixed(lease),
            (None, None) => handle_holds::Kept::Never,
        };
        let spare =
            handle_holds::record(&self.target.backend, &self.target.key, owner, fence, kept);
        drop(spare);
        fence
    }

    /// Hazelcast's `unlock()`: gives back one hold of the current owner. The last of the
    /// owner's [`lock`](Lock::lock) holds stops their renewal before the release is sent.
    ///
    /// # Errors
    /// [`LockError::LeaseLost`] when the hold taken by [`lock`](Lock::lock) (or `try_lock`)
    /// is gone: force-unlocked, its `exp` run out, or expired while its renewals failed. The
    /// release is fenced, as a guard's is, so a newer hold on the key, even the owner's own, is
    /// left intact. (The record of a hold with `exp` may be forgotten once its lease has surely
    /// run out; its unlock then acts as one without a `lock()`.) [`LockError::NotOwner`] when the
    /// current owner holds no hold on it. On [`LockError::Backend`] the hold is counted as given back: the
    /// backend may or may not have released it, and nobody renews it any more.
    pub async fn unlock(&self) -> Result<()> {
        self.validate()?;
        let owner = Owner::current();
        let Some(taken) = handle_holds::take_one(&self.target.backend, &self.target.key, owner)
        else {
            return self.release_scope(ReleaseScope::One).await.map(|_| ());
        };
        // Renewal stops before the release, as a guard's does.
        drop(taken.ticket);
        let outcome = self
            .target
            .backend
            .release(
                &self.target.key,
                owner,
                Some(taken.fence),
                ReleaseScope::One,
            )
            .await?;
        match outcome {
            Release::Freed | Release::StillHeld(_) => Ok(()),
            Release::NotLocked | Release::NotOwner => {
                drop(handle_holds::lost(
                    &self.target.backend,
                    &self.target.key,
                    owner,
                    taken.fence,
                ));
                Err(self.lease_lost())
            }
        }
    }

    /// Blocking form of [`unlock`](Lock::unlock).
    pub fn unlock_blocking(&self) -> Result<()> {
        block_on(self.unlock())
    }

    /// py-cachify's `release()`: the current owner gives back all its holds, freeing the key
    /// (the renewal of its [`lock`](Lock::lock) holds stops first). Returns `false` when nobody
    /// held it.
    ///
    /// # Errors
    /// [`LockError::NotOwner`] when another owner holds it: only [`force_unlock`](Lock::force_unlock)
    /// frees someone else's lock. [`LockError::LeaseLost`] when the owner held it through
    /// [`lock`](Lock::lock) without `exp` and that hold is gone.
    pub async fn release(&self) -> Result<bool> {
        self.validate()?;
        let recorded =
            handle_holds::take_all(&self.target.backend, &self.target.key, Owner::current());
        let had_renewed_hold = recorded.is_some_and(|taken| taken.renewed);
        match self.release_scope(ReleaseScope::All).await {
            Ok(false) | Err(LockError::NotOwner { .. }) if had_renewed_hold => {
                Err(self.lease_lost())
            }
            released => released,
        }
    }

    /// Blocking form of [`release`](Lock::release) (py-cachify's sync `release()`).
    pub fn release_blocking(&self) -> Result<bool> {
        block_on(self.release())
    }

    /// Whether the current owner's hold taken by [`lock`](Lock::lock), [`try_lock`](Lock::try_lock)
    /// or [`try_lock_for`](Lock::try_lock_for) without `exp` is lost: the watchdog found it gone
    /// (force-unlocked, its key deleted, or expired while renewals failed: no later than one
    /// lease after the last successful renewal, less a tenth), or it was force-unlocked through
    /// this process. Stop touching what the lock protects; the next [`unlock`](Lock::unlock)
    /// reports it. `false` when the owner has no such hold (none taken, unlocked, or taken with
    /// `exp` or `never_expires`, which nobody watches). Asks no backend.
    pub fn is_lease_lost(&self) -> bool {
        handle_holds::status(&self.target.backend, &self.target.key, Owner::current())
            .is_some_and(|status| status.lost)
    }

    /// Whether the watchdog renews a hold of the current owner taken by [`lock`](Lock::lock)
    /// (or `try_lock`): taken without `exp`, not unlocked yet, and not lost. Asks no backend.
    pub fn is_renewed(&self) -> bool {
        handle_holds::status(&self.target.backend, &self.target.key, Owner::current())
            .is_some_and(|status| status.renewed && !status.lost)
    }

    async fn release_scope(&self, scope: ReleaseScope) -> Result<bool> {
        self.validate()?;
        let kind = self.target.backend.kind();
        let observer = ReleaseObserver::start(self.target.telemetry, &self.target.key, None);
        let outcome = self
            .target
            .backend
            .release(&self.target.key, Owner::current(), None, scope)
            .instrument(observer.span().clone())
            .await;
        let (released, result) =
            match telemetry::observe(kind, Operation::Release, &self.target.key, outcome) {
                Err(err) => (ReleaseOutcome::Error, Err(err)),
                Ok(outcome) => match (outcome, scope) {
                    (Release::Freed | Release::StillHeld(_), _) => {
                        (ReleaseOutcome::Released, Ok(true))
                    }
                    (Release::NotLocked, ReleaseScope::All) => {
                        (ReleaseOutcome::NotLocked, Ok(false))
                    }
                    (Release::NotLocked | Release::NotOwner, _) => (
                        ReleaseOutcome::NotOwner,
                        Err(LockError::NotOwner {
                            key: Arc::clone(&self.target.key),
                        }),
                    ),
                },
            };
        observer.finish(released, None);
        result
    }

    /// Hazelcast's `force_unlock()`: frees the lock whoever holds it, without waiting. Returns
    /// whether it was held. The holder's guard then reports [`LockError::LeaseLost`], and so does
    /// the holder's `unlock()` after [`lock`](Lock::lock) (whose renewal stops here at once when
    /// it was taken in this process through this backend, else at the watchdog's next renewal).
    pub async fn force_unlock(&self) -> Result<bool> {
        self.validate()?;
        let unlocked = self.target.backend.force_unlock(&self.target.key).await;
        if unlocked.is_ok() {
            // Holds taken here by `lock()` are gone: stop renewing them now, and keep their
            // record so that their owners' `is_lease_lost` and `unlock` tell.
            drop(handle_holds::force_unlocked(
                &self.target.backend,
                &self.target.key,
            ));
        }
        telemetry::observe(
            self.target.backend.kind(),
            Operation::ForceUnlock,
            &self.target.key,
            unlocked,
        )
    }

    /// Blocking form of [`force_unlock`](Lock::force_unlock).
    pub fn force_unlock_blocking(&self) -> Result<bool> {
        block_on(self.force_unlock())
    }

    /// Everything about the lock in one backend call.
    pub async fn state(&self) -> Result<LockState> {
        self.validate()?;
        let state = self
            .target
            .backend
            .inspect(&self.target.key, Owner::current())
            .await;
        telemetry::observe(
            self.target.backend.kind(),
            Operation::Inspect,
            &self.target.key,
            state,
        )
    }

    /// Blocking form of [`state`](Lock::state).
    pub fn state_blocking(&self) -> Result<LockState> {
        block_on(self.state())
    }

    /// Whether anyone holds the lock (py-cachify's `is_alocked()`, Hazelcast's `is_locked()`).
    pub async fn is_locked(&self) -> Result<bool> {
        Ok(self.state().await?.locked)
    }

    /// Blocking form of [`is_locked`](Lock::is_locked) (py-cachify's `is_locked()`).
    pub fn is_locked_blocking(&self) -> Result<bool> {
        Ok(self.state_blocking()?.locked)
    }

    /// Whether the current owner (task or thread) holds it (Hazelcast's
    /// `is_locked_by_current_thread()`).
    pub async fn is_locked_by_current_owner(&self) -> Result<bool> {
        Ok(self.state().await?.held_by_owner)
    }

    /// Blocking form of [`is_locked_by_current_owner`](Lock::is_locked_by_current_owner).
    pub fn is_locked_by_current_owner_blocking(&self) -> Result<bool> {
        Ok(self.state_blocking()?.held_by_owner)
    }

    /// The reentrant hold count, whoever holds it; 0 when free (Hazelcast's `get_lock_count()`).
    pub async fn lock_count(&self) -> Result<u32> {
        Ok(self.state().await?.hold_count)
    }

    /// Blocking form of [`lock_count`](Lock::lock_count).
    pub fn lock_count_blocking(&self) -> Result<u32> {
        Ok(self.state_blocking()?.hold_count)
    }

    /// What is left of the holder's lease (Hazelcast's `get_remaining_lease_time()`; see
    /// [`RemainingLease::as_millis_or_minus_one`] for its number).
    pub async fn remaining_lease(&self) -> Result<RemainingLease> {
        Ok(self.state().await?.remaining)
    }

    /// Blocking form of [`remaining_lease`](Lock::remaining_lease).
    pub fn remaining_lease_blocking(&self) -> Result<RemainingLease> {
        Ok(self.state_blocking()?.remaining)
    }

    /// Every acquiring method of the async API comes here: the attempt is observed (metrics,
    /// span) from its start to its outcome, in this one place.
    async fn acquire_as_task(&self, wait: Wait) -> Result<LockGuard> {
        self.validate()?;
        let mut observer = AcquireObserver::start(self.target.telemetry, &self.target.key);
        let acquired = match self.acquire_at_once(wait) {
            Some(acquired) => acquired,
            None => {
                observer.count_attempt();
                let span = observer.span().clone();
                self.acquire_with(wait, Waiter::Task, &mut observer)
                    .instrument(span)
                    .await
            }
        };
        observer.finish(acquired)
    }

    /// [`acquire_as_task`](Lock::acquire_as_task) for the blocking API.
    fn acquire_as_thread(&self, wait: Wait) -> Result<LockGuard> {
        self.validate()?;
        let mut observer = AcquireObserver::start(self.target.telemetry, &self.target.key);
        let acquired = match self.acquire_at_once(wait) {
            Some(acquired) => acquired,
            None => {
                observer.count_attempt();
                let span = observer.span().clone();
                block_on(
                    self.acquire_with(wait, Waiter::Thread, &mut observer)
                        .instrument(span),
                )
            }
        };
        observer.finish(acquired)
    }

    /// The first attempt of an acquire, when the backend answers it without I/O (in memory): no
    /// waiting loop, no boxed future. `None` when the backend must be awaited or the caller
    /// must wait for the lock; the waiting loop then listens and tries again.
    fn acquire_at_once(&self, wait: Wait) -> Option<Result<LockGuard>> {
        let owner = Owner::current();
        let (lease, renewed_lease) = self.options.lease.resolve(&self.target.backend);
        // One clock reading serves the watchdog (when the acquire was sent) and the backend.
        let now = Instant::now();
        let renewed = renewed_at(renewed_lease, now);
        match self
            .target
            .backend
            .try_acquire_sync_at(&self.target.key, owner, lease, now)?
        {
            Err(err) => Some(Err(err)),
            Ok(TryAcquire::Acquired { fence, hold_count }) => {
                Some(Ok(self.guard(owner, fence, hold_count, renewed)))
            }
            Ok(TryAcquire::Held { .. }) => match wait {
                Wait::No => Some(Err(self.locked())),
                Wait::For(_) | Wait::Forever => None,
            },
        }
    }

    fn guard(
        &self,
        owner: Owner,
        fence: Fence,
        hold_count: u32,
        renewed: Option<Renewed>,
    ) -> LockGuard {
        LockGuard::new(Arc::clone(&self.target), owner, fence, hold_count, renewed)
    }

    fn lease_lost(&self) -> LockError {
        LockError::LeaseLost {
            key: Arc::clone(&self.target.key),
        }
    }

    fn locked(&self) -> LockError {
        LockError::Locked {
            key: Arc::clone(&self.target.key),
        }
    }

    /// The acquire loop shared by every acquiring method (see `waiting`).
    async fn acquire_with(
        &self,
        wait: Wait,
        waiter: Waiter,
        observer: &mut AcquireObserver,
    ) -> Result<LockGuard> {
        let owner = Owner::current();
        let (lease, renewed_lease) = self.options.lease.resolve(&self.target.backend);
        waiting::until_taken(
            &self.target.key,
            wait,
            waiter,
            || self.target.backend.listen(&self.target.key),
            || async move {
                let now = Instant::now();
                let renewed = renewed_at(renewed_lease, now);
                let outcome = match self.target.backend.try_acquire_sync_at(
                    &self.target.key,
                    owner,
                    lease,
                    now,
                ) {
                    Some(outcome) => outcome?,
                    None => {
                        self.target
                            .backend
                            .try_acquire(&self.target.key, owner, lease)
                            .await?
                    }
                };
                Ok(match outcome {
                    TryAcquire::Acquired { fence, hold_count } => {
                        Attempt::Taken(self.guard(owner, fence, hold_count, renewed))
                    }
                    TryAcquire::Held { remaining } => Attempt::Busy(remaining),
                })
            },
            |now| observer.found_held(now),
            || self.locked(),
        )
        .await
    }
}

/// For a hold the watchdog is to renew: its lease, counted from now, just before the acquire is
/// sent (no clock read for holds it does not renew).
pub(crate) fn renewed_from_now(renewed_lease: Option<Duration>) -> Option<Renewed> {
    renewed_lease.map(|lease| Renewed {
        lease,
        sent_at: Instant::now(),
    })
}

/// [`renewed_from_now`] with a clock reading the caller has already taken.
fn renewed_at(renewed_lease: Option<Duration>, sent_at: Instant) -> Option<Renewed> {
    renewed_lease.map(|lease| Renewed { lease, sent_at })
}
