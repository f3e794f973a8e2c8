//! The pool handle: py-cachify's `pool(key, max_size, slot_exp)` (Redisson's
//! `RPermitExpirableSemaphore`), a keyed counting semaphore on any backend.

use std::sync::Arc;

use crate::backend::{Fence, PoolAcquire, PoolState, SharedBackend};
use crate::block_on::block_on;
use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::global::global_backend;
use crate::lock::{renewed_from_now, Lease};
use crate::options::Options;
use crate::owner::Owner;
use crate::pool_guard::PoolGuard;
use crate::target::Target;
use crate::telemetry::{self, AcquireObserver, Operation};
use crate::waiting::{self, contention_as_none, Attempt, Wait, Waiter};
use tracing::Instrument;

/// A handle on the pool of one key: at most [`max_size`](Pool::max_size) slots of it are held at
/// once, across every process on the backend (py-cachify's `pool`, Redisson's
/// `RPermitExpirableSemaphore`).
///
/// Each [`acquire`](Pool::acquire) takes a slot of its own and returns a [`PoolGuard`] that
/// gives it back on every way out. A slot has an owner and a token ([`PoolGuard::slot`]) that
/// is never handed out twice for the key, and a lease like a lock's hold: without
/// [`exp`](Pool::exp) the lease watchdog renews it while the guard lives (a crashed process's
/// slot frees within one lease); with `exp` it ends after that lease (py-cachify's
/// `slot_exp`). A slot whose lease ran out counts no more, and its guard can give back nothing
/// but its own slot. Waiters are woken when a slot frees, not by polling.
///
/// Slots are not reentrant: an owner that holds a slot and acquires again takes a second one
/// (as in py-cachify and Redisson). Callers of one pool must agree on its size: while slots are
/// live, an acquire with another `max_size` fails with [`LockError::PoolSizeMismatch`]; a new
/// size applies once the pool is empty.
///
/// | py-cachify                         | lockwright                                   |
/// |------------------------------------|----------------------------------------------|
/// | `pool(key, max_size, slot_exp)`    | `Pool::new(key, max_size).exp(slot_exp)`     |
/// | `with pool(...)` / `async with`    | [`acquire_blocking`](Pool::acquire_blocking) / [`acquire`](Pool::acquire) → guard |
/// | `CachifyPoolFullError`             | [`LockError::PoolFull`]                      |
/// | `size()` / `asize()`               | [`size_blocking`](Pool::size_blocking) / [`size`](Pool::size) |
/// |                                    | [`force_release`](Pool::force_release), [`force_release_all`](Pool::force_release_all) |
///
/// ```
/// use lock_core::{LockError, MemoryBackend, Pool};
///
/// let backend = MemoryBackend::shared();
/// let pool = Pool::with_backend("user-limit-7", 2, &backend);
/// let first = pool.acquire_blocking()?;
/// let second = pool.acquire_blocking()?;
/// assert_eq!(pool.size_blocking()?, 2);
/// // Full: refused at once (the default, as in py-cachify), with py-cachify's message.
/// let err = pool.acquire_blocking().unwrap_err();
/// assert!(matches!(err, LockError::PoolFull { .. }));
/// assert_eq!(err.to_string(), "user-limit-7 is full (max_size=2)");
/// drop(first);
/// assert_eq!(pool.size_blocking()?, 1);
/// # drop(second);
/// # Ok::<(), LockError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pool {
    /// The key and backend, shared with every guard and watched slot of the handle.
    target: Arc<Target>,
    max_size: u32,
    options: Options,
}

impl Pool {
    /// A handle on the pool `key` of `max_size` slots in the
    /// [global backend](crate::global_backend), with py-cachify's defaults: `nowait = true`, no
    /// timeout, the default lease (renewed while the guard lives).
    pub fn new(key: impl Into<Arc<str>>, max_size: u32) -> Self {
        Self::with_backend(key, max_size, &global_backend())
    }

    /// A handle on the pool `key` of `max_size` slots in `backend`.
    ///
    /// A `max_size` of zero is refused: every operation then returns
    /// [`LockError::InvalidArgument`].
    pub fn with_backend(key: impl Into<Arc<str>>, max_size: u32, backend: &SharedBackend) -> Self {
        let key = key.into();
        let mut options = Options::for_key(&key);
        if max_size == 0 {
            options.refuse(
                "max_size",
                "must be at least 1 (a pool of 0 slots could never be entered)",
            );
        }
        Pool {
            options,
            target: Target::new(key, backend),
            max_size,
        }
    }

    /// `true` (the default, as in py-cachify): [`acquire`](Pool::acquire) fails at once with
    /// [`LockError::PoolFull`] when every slot is taken. `false`: it waits for a slot, up to the
    /// [`timeout`](Pool::timeout) if one is set.
    pub fn nowait(mut self, nowait: bool) -> Self {
        self.options.nowait = nowait;
        self
    }

    /// The longest [`acquire`](Pool::acquire) waits when `nowait(false)`; then it fails with
    /// [`LockError::TimedOut`]. A `Duration` or seconds.
    pub fn timeout(mut self, timeout: impl IntoLockDuration) -> Self {
        self.options.set_timeout(timeout);
        self
    }

    /// Each slot expires this long after acquire unless given back first (py-cachify's
    /// `slot_exp`), renewed by nobody. A `Duration` or seconds.
    pub fn exp(mut self, exp: impl IntoLockDuration) -> Self {
        self.options.set_exp(exp);
        self
    }

    /// Slots get this lease, renewed by the watchdog every third of it while the guard lives.
    pub fn renewed_lease(mut self, lease: impl IntoLockDuration) -> Self {
        self.options.set_renewed_lease(lease);
        self
    }

    /// Slots never expire: they last until given back (py-cachify's `slot_exp=None`).
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

    /// How many slots the pool has.
    pub fn max_size(&self) -> u32 {
        self.max_size
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

    /// Takes a slot with the handle's options (py-cachify's `async with pool(...)`): the guard
    /// gives it back on drop.
    ///
    /// # Errors
    /// [`LockError::PoolFull`] (nowait), [`LockError::TimedOut`],
    /// [`LockError::PoolSizeMismatch`], [`LockError::InvalidArgument`], [`LockError::Backend`].
    pub async fn acquire(&self) -> Result<PoolGuard> {
        self.acquire_as_task(self.options_wait()).await
    }

    /// Blocking form of [`acquire`](Pool::acquire) (py-cachify's `with pool(...)`).
    pub fn acquire_blocking(&self) -> Result<PoolGuard> {
        self.acquire_as_thread(self.options_wait())
    }

    /// Takes a slot without waiting, whatever the options: `None` when the pool is full.
    pub async fn try_acquire(&self) -> Result<Option<PoolGuard>> {
        contention_as_none(self.acquire_as_task(Wait::No).await)
    }

    /// Blocking form of [`try_acquire`](Pool::try_acquire).
    pub fn try_acquire_blocking(&self) -> Result<Option<PoolGuard>> {
        contention_as_none(self.acquire_as_thread(Wait::No))
    }

    /// Waits up to `timeout` for a slot, whatever the options: `None` when none freed in time.
    pub async fn try_acquire_for(
        &self,
        timeout: impl IntoLockDuration,
    ) -> Result<Option<PoolGuard>> {
        let timeout = timeout.into_lock_duration("timeout")?;
        contention_as_none(self.acquire_as_task(Wait::For(timeout)).await)
    }

    /// Blocking form of [`try_acquire_for`](Pool::try_acquire_for).
    pub fn try_acquire_for_blocking(
        &self,
        timeout: impl IntoLockDuration,
    ) -> Result<Option<PoolGuard>> {
        let timeout = timeout.into_lock_duration("timeout")?;
        contention_as_none(self.acquire_as_thread(Wait::For(timeout)))
    }

    /// Live slots of the pool, in every process (py-cachify's `asize()`).
    pub async fn size(&self) -> Result<u32> {
        Ok(self.state().await?.size)
    }

    /// Blocking form of [`size`](Pool::size) (py-cachify's `size()`).
    pub fn size_blocking(&self) -> Result<u32> {
        block_on(self.size())
    }

    /// Live slots and the size they were taken with.
    pub async fn state(&self) -> Result<PoolState> {
        self.validate()?;
        let state = self.target.backend.pool_state(&self.target.key).await;
        telemetry::observe(
            self.target.backend.kind(),
            Operation::PoolState,
            &self.target.key,
            state,
        )
    }

    /// Blocking form of [`state`](Pool::state).
    pub fn state_blocking(&self) -> Result<PoolState> {
        block_on(self.state())
    }

    /// Frees the slot with token `slot` whoever holds it (an operator's tool, like a lock's
    /// `force_unlock`): its guard then finds its lease lost. Returns whether it was live.
    pub async fn force_release(&self, slot: Fence) -> Result<bool> {
        self.validate()?;
        Ok(self
            .target
            .backend
            .pool_force_release(&self.target.key, Some(slot))
            .await?
            > 0)
    }

    /// Blocking form of [`force_release`](Pool::force_release).
    pub fn force_release_blocking(&self, slot: Fence) -> Result<bool> {
        block_on(self.force_release(slot))
    }

    /// Frees every slot of the pool; returns how many were live.
    pub async fn force_release_all(&self) -> Result<u32> {
        self.validate()?;
        let freed = self
            .target
            .backend
            .pool_force_release(&self.target.key, None)
            .await;
        telemetry::observe(
            self.target.backend.kind(),
            Operation::PoolForceRelease,
            &self.target.key,
            freed,
        )
    }

    /// Blocking form of [`force_release_all`](Pool::force_release_all).
    pub fn force_release_all_blocking(&self) -> Result<u32> {
        block_on(self.force_release_all())
    }

    /// Every acquiring method's, observed (see `telemetry`).
    async fn acquire_as_task(&self, wait: Wait) -> Result<PoolGuard> {
        self.validate()?;
        let mut observer = AcquireObserver::start_pool(self.target.telemetry, &self.target.key);
        observer.count_attempt();
        let span = observer.span().clone();
        let acquired = self
            .acquire_with(wait, Waiter::Task, &mut observer)
            .instrument(span)
            .await;
        observer.finish(acquired)
    }

    /// [`acquire_as_task`](Pool::acquire_as_task) for the blocking API.
    fn acquire_as_thread(&self, wait: Wait) -> Result<PoolGuard> {
        self.validate()?;
        let mut observer = AcquireObserver::start_pool(self.target.telemetry, &self.target.key);
        observer.count_attempt();
        let span = observer.span().clone();
        let acquired = block_on(
            self.acquire_with(wait, Waiter::Thread, &mut observer)
                .instrument(span),
        );
        observer.finish(acquired)
    }

    /// The acquire loop, as a lock's (see `waiting`): woken when a slot frees, or when the first
    /// slot's lease ends.
    async fn acquire_with(
        &self,
        wait: Wait,
        waiter: Waiter,
        observer: &mut AcquireObserver,
    ) -> Result<PoolGuard> {
        let owner = Owner::current();
        let (lease, renewed_lease) = self.options.lease.resolve(&self.target.backend);
        waiting::until_taken(
            &self.target.key,
            wait,
            waiter,
            || self.target.backend.listen_pool(&self.target.key),
            || async move {
                let renewed = renewed_from_now(renewed_lease);
                let acquired = self
                    .target
                    .backend
                    .pool_acquire(&self.target.key, owner, self.max_size, lease)
                    .await?;
                Ok(match acquired {
                    PoolAcquire::Acquired { slot, size } => Attempt::Taken(PoolGuard::new(
                        Arc::clone(&self.target),
                        owner,
                        slot,
                        size,
                        renewed,
                    )),
                    PoolAcquire::Full { remaining } => Attempt::Busy(remaining),
                })
            },
            |now| observer.found_held(now),
            || LockError::PoolFull {
                key: Arc::clone(&self.target.key),
                max_size: self.max_size,
            },
        )
        .await
    }
}
