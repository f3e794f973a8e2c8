//! The lock handle: py-cachify's `lock(...)` and Hazelcast's `Lock`, on any backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::{EventListener, Listener};
use tracing::Instrument;

use crate::backend::{
    Fence, LeaseTime, LockState, Release, ReleaseScope, RemainingLease, SharedBackend, TryAcquire,
};
use crate::block_on::block_on;
use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::global::{default_lease, global_backend};
use crate::guard::{LockGuard, Renewed};
use crate::owner::Owner;
use crate::telemetry::{self, AcquireObserver, Operation, ReleaseObserver, ReleaseOutcome};

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64 * 1024;

/// How long a hold lasts if it is not released (py-cachify's `exp`, Hazelcast's `lease_time`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lease {
    /// No `exp` given: the backend's default lease (else the global [`default_lease`], 30 s),
    /// renewed by the lease watchdog every third of it while the guard lives (Redisson's
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
    fn resolve(self, backend: &SharedBackend) -> (LeaseTime, Option<Duration>) {
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

/// How long an acquire may wait.
#[derive(Clone, Copy, Debug)]
enum Wait {
    No,
    For(Duration),
    Forever,
}

/// Whether a wait parks the thread (blocking API) or awaits (async API).
#[derive(Clone, Copy, Debug)]
enum Waiter {
    Thread,
    Task,
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
/// |                                     | `lock(lease_time)`                | [`lock`](Lock::lock)                      |
/// |                                     | `try_lock(timeout, lease_time)`   | [`try_lock`](Lock::try_lock), [`try_lock_for`](Lock::try_lock_for) |
/// |                                     | `unlock()`                        | [`unlock`](Lock::unlock)                  |
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
    key: Arc<str>,
    backend: SharedBackend,
    nowait: bool,
    timeout: Option<Duration>,
    lease: Lease,
    invalid: Option<(&'static str, String)>,
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
        let invalid = if key.is_empty() {
            Some(("key", "must not be empty".to_owned()))
        } else if key.len() > MAX_KEY_LEN {
            Some((
                "key",
                format!(
                    "{} bytes is longer than the maximum of {MAX_KEY_LEN}",
                    key.len()
                ),
            ))
        } else {
            None
        };
        Lock {
            key,
            backend: Arc::clone(backend),
            nowait: true,
            timeout: None,
            lease: Lease::Default,
            invalid,
        }
    }

    /// `true` (the default, as in py-cachify): [`acquire`](Lock::acquire) fails at once with
    /// [`LockError::Locked`] when another owner holds the lock. `false`: it waits, up to the
    /// [`timeout`](Lock::timeout) if one is set, else until the lock is free.
    pub fn nowait(mut self, nowait: bool) -> Self {
        self.nowait = nowait;
        self
    }

    /// The longest [`acquire`](Lock::acquire) waits when `nowait(false)`; then it fails with
    /// [`LockError::TimedOut`]. A `Duration` or seconds (`4`, `0.5`). With `nowait(true)` the
    /// timeout is kept but unused, as in py-cachify.
    pub fn timeout(mut self, timeout: impl IntoLockDuration) -> Self {
        match timeout.into_lock_duration("timeout") {
            Ok(timeout) => self.timeout = Some(timeout),
            Err(err) => self.remember(err),
        }
        self
    }

    /// The hold expires this long after acquire unless released first (py-cachify's `exp`). A
    /// `Duration` or seconds (`2`, `0.25`).
    pub fn exp(mut self, exp: impl IntoLockDuration) -> Self {
        match exp.into_lock_duration("exp") {
            Ok(exp) => self.lease = Lease::Fixed(exp),
            Err(err) => self.remember(err),
        }
        self
    }

    /// Holds get this lease, renewed by the watchdog every third of it while the guard lives
    /// (like no `exp`, with a lease other than the default).
    pub fn renewed_lease(mut self, lease: impl IntoLockDuration) -> Self {
        match lease.into_lock_duration("renewed lease") {
            Ok(lease) => self.lease = Lease::Renewed(lease),
            Err(err) => self.remember(err),
        }
        self
    }

    /// Holds never expire: they last until released (py-cachify's `exp=None`).
    pub fn never_expires(mut self) -> Self {
        self.lease = Lease::Never;
        self
    }

    /// Sets the lease policy directly.
    pub fn lease(mut self, lease: Lease) -> Self {
        match lease {
            Lease::Fixed(exp) => self.exp(exp),
            Lease::Renewed(lease) => self.renewed_lease(lease),
            Lease::Default | Lease::Never => {
                self.lease = lease;
                self
            }
        }
    }

    fn remember(&mut self, err: LockError) {
        if let (None, LockError::InvalidArgument { name, reason }) = (&self.invalid, err) {
            self.invalid = Some((name, reason));
        }
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The backend this handle uses.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    /// `Ok` when the key and options are valid, else the first problem.
    pub fn validate(&self) -> Result<&Self> {
        match &self.invalid {
            None => Ok(self),
            Some((name, reason)) => Err(LockError::invalid(name, reason.clone())),
        }
    }

    fn options_wait(&self) -> Wait {
        match (self.nowait, self.timeout) {
            (true, _) => Wait::No,
            (false, Some(timeout)) => Wait::For(timeout),
            (false, None) => Wait::Forever,
        }
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

    /// Hazelcast's `lock()`: waits as long as it takes, then holds (with the handle's lease)
    /// until [`unlock`](Lock::unlock) or expiry. Returns the fencing token. With no guard there
    /// is no watchdog: without `exp` the hold lasts one default lease unless unlocked first.
    pub async fn lock(&self) -> Result<Fence> {
        Ok(self.acquire_as_task(Wait::Forever).await?.disarm())
    }

    /// Blocking form of [`lock`](Lock::lock).
    pub fn lock_blocking(&self) -> Result<Fence> {
        Ok(self.acquire_as_thread(Wait::Forever)?.disarm())
    }

    /// Hazelcast's `try_lock()`: takes the lock (until [`unlock`](Lock::unlock)) if free or
    /// already ours, without waiting.
    pub async fn try_lock(&self) -> Result<bool> {
        Ok(self.try_acquire().await?.map(LockGuard::disarm).is_some())
    }

    /// Blocking form of [`try_lock`](Lock::try_lock).
    pub fn try_lock_blocking(&self) -> Result<bool> {
        Ok(self
            .try_acquire_blocking()?
            .map(LockGuard::disarm)
            .is_some())
    }

    /// Hazelcast's `try_lock(timeout)`: waits up to `timeout` for the lock.
    pub async fn try_lock_for(&self, timeout: impl IntoLockDuration) -> Result<bool> {
        let wait = Wait::For(timeout.into_lock_duration("timeout")?);
        let acquired = contention_as_none(self.acquire_as_task(wait).await)?;
        Ok(acquired.map(LockGuard::disarm).is_some())
    }

    /// Blocking form of [`try_lock_for`](Lock::try_lock_for).
    pub fn try_lock_for_blocking(&self, timeout: impl IntoLockDuration) -> Result<bool> {
        let wait = Wait::For(timeout.into_lock_duration("timeout")?);
        let acquired = contention_as_none(self.acquire_as_thread(wait))?;
        Ok(acquired.map(LockGuard::disarm).is_some())
    }

    /// Hazelcast's `unlock()`: gives back one hold of the current owner.
    ///
    /// # Errors
    /// [`LockError::NotOwner`] when the current owner holds no hold on it.
    pub async fn unlock(&self) -> Result<()> {
        self.release_scope(ReleaseScope::One).await.map(|_| ())
    }

    /// Blocking form of [`unlock`](Lock::unlock).
    pub fn unlock_blocking(&self) -> Result<()> {
        block_on(self.unlock())
    }

    /// py-cachify's `release()`: the current owner gives back all its holds, freeing the key.
    /// Returns `false` when nobody held it.
    ///
    /// # Errors
    /// [`LockError::NotOwner`] when another owner holds it: only [`force_unlock`](Lock::force_unlock)
    /// frees someone else's lock.
    pub async fn release(&self) -> Result<bool> {
        self.release_scope(ReleaseScope::All).await
    }

    /// Blocking form of [`release`](Lock::release) (py-cachify's sync `release()`).
    pub fn release_blocking(&self) -> Result<bool> {
        block_on(self.release())
    }

    async fn release_scope(&self, scope: ReleaseScope) -> Result<bool> {
        self.validate()?;
        let kind = self.backend.kind();
        let observer = ReleaseObserver::start(kind, &self.key, None);
        let outcome = self
            .backend
            .release(&self.key, Owner::current(), None, scope)
            .instrument(observer.span().clone())
            .await;
        let (released, result) =
            match telemetry::observe(kind, Operation::Release, &self.key, outcome) {
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
                            key: Arc::clone(&self.key),
                        }),
                    ),
                },
            };
        observer.finish(released, None);
        result
    }

    /// Hazelcast's `force_unlock()`: frees the lock whoever holds it, without waiting. Returns
    /// whether it was held. The holder's guard then reports [`LockError::LeaseLost`].
    pub async fn force_unlock(&self) -> Result<bool> {
        self.validate()?;
        let unlocked = self.backend.force_unlock(&self.key).await;
        telemetry::observe(
            self.backend.kind(),
            Operation::ForceUnlock,
            &self.key,
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
        let state = self.backend.inspect(&self.key, Owner::current()).await;
        telemetry::observe(self.backend.kind(), Operation::Inspect, &self.key, state)
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
        let mut observer = AcquireObserver::start(self.backend.kind(), &self.key);
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
        let mut observer = AcquireObserver::start(self.backend.kind(), &self.key);
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
        let (lease, renewed_lease) = self.lease.resolve(&self.backend);
        let renewed = renewed_from_now(renewed_lease);
        match self.backend.try_acquire_sync(&self.key, owner, lease)? {
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
        LockGuard::new(
            Arc::clone(&self.key),
            Arc::clone(&self.backend),
            owner,
            fence,
            hold_count,
            renewed,
        )
    }

    fn locked(&self) -> LockError {
        LockError::Locked {
            key: Arc::clone(&self.key),
        }
    }

    /// The acquire loop shared by every acquiring method: listen, try, then sleep until a
    /// release wakes us, the holder's lease ends, or our deadline passes.
    async fn acquire_with(
        &self,
        wait: Wait,
        waiter: Waiter,
        observer: &mut AcquireObserver,
    ) -> Result<LockGuard> {
        let owner = Owner::current();
        let (lease, renewed_lease) = self.lease.resolve(&self.backend);
        let deadline = match wait {
            Wait::For(timeout) => Some(Instant::now() + timeout),
            Wait::No | Wait::Forever => None,
        };
        loop {
            // Listen before trying, so a release between the try and the wait still wakes us.
            let listener = match wait {
                Wait::No => None,
                Wait::For(_) | Wait::Forever => Some(self.backend.listen(&self.key)),
            };
            let renewed = renewed_from_now(renewed_lease);
            let outcome = match self.backend.try_acquire_sync(&self.key, owner, lease) {
                Some(outcome) => outcome?,
                None => self.backend.try_acquire(&self.key, owner, lease).await?,
            };
            let remaining = match outcome {
                TryAcquire::Acquired { fence, hold_count } => {
                    return Ok(self.guard(owner, fence, hold_count, renewed))
                }
                TryAcquire::Held { remaining } => remaining,
            };
            let Some(listener) = listener else {
                return Err(self.locked());
            };
            let now = Instant::now();
            observer.found_held(now);
            let lease_end = match remaining {
                // Another client may have set any TTL on a shared Redis key: an end beyond
                // what `Instant` can hold is as good as none.
                RemainingLease::Remaining(left) => now.checked_add(left),
                RemainingLease::Unlimited | RemainingLease::NotLocked => None,
            };
            let wake_at = match (deadline, lease_end) {
                (Some(deadline), _) if deadline <= now => {
                    return Err(LockError::TimedOut {
                        key: Arc::clone(&self.key),
                        waited: match wait {
                            Wait::For(timeout) => timeout,
                            Wait::No | Wait::Forever => Duration::ZERO,
                        },
                    })
                }
                (Some(deadline), Some(lease_end)) => Some(deadline.min(lease_end)),
                (deadline, lease_end) => deadline.or(lease_end),
            };
            sleep_until(listener, wake_at, waiter).await;
        }
    }
}

/// For a hold the watchdog is to renew: its lease, counted from now, just before the acquire is
/// sent (no clock read for holds it does not renew).
fn renewed_from_now(renewed_lease: Option<Duration>) -> Option<Renewed> {
    renewed_lease.map(|lease| Renewed {
        lease,
        sent_at: Instant::now(),
    })
}

async fn sleep_until(listener: EventListener, wake_at: Option<Instant>, waiter: Waiter) {
    match (waiter, wake_at) {
        (Waiter::Thread, Some(at)) => {
            listener.wait_deadline(at);
        }
        (Waiter::Thread, None) => listener.wait(),
        // Without a tokio runtime there is no timer to await: wait on this thread instead of
        // panicking (correct under any executor, though it blocks that executor's thread).
        (Waiter::Task, Some(at)) if tokio::runtime::Handle::try_current().is_err() => {
            listener.wait_deadline(at);
        }
        (Waiter::Task, Some(at)) => {
            let _ = tokio::time::timeout_at(at.into(), listener).await;
        }
        (Waiter::Task, None) => listener.await,
    }
}

fn contention_as_none(result: Result<LockGuard>) -> Result<Option<LockGuard>> {
    match result {
        Ok(guard) => Ok(Some(guard)),
        Err(err) if err.is_contention() => Ok(None),
        Err(err) => Err(err),
    }
}
