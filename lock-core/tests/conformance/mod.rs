//! The behaviour every backend must show, written once.
//!
//! `conformance_suite!(make_backend)` expands to the whole suite as `#[test]` functions, each
//! calling `make_backend` (an expression of type `SharedBackend`) for its backend. Each test uses
//! its own keys, so backends may be shared between tests.
//! `conformance_suite!(make_backend, pool_entries = probe)` also gives the pool tests a probe of
//! what the store keeps for a pool (see `pools::entries_not_counted`).

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub mod handle_holds;
pub mod pools;

/// A key no other test (or earlier run against the same server) uses.
pub fn key(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nonce = lock_core::Owner::current().process_nonce();
    format!("{name}-{nonce:x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Generous upper bound for "promptly": liveness, not speed (speed lives in the benches).
pub const LIVENESS: Duration = Duration::from_secs(5);

pub fn elapsed_since(start: Instant) -> Duration {
    start.elapsed()
}

/// Other keys contended and freed over and over until `until`, on `backend`: each round takes
/// every key, has another task (another owner) find it taken, so that its release wakes
/// waiters, and frees it; `pools` churns pools of one slot instead of locks. A waiter on a key
/// of its own must sleep through all of it (wake-ups are per key).
pub async fn churn_other_keys(
    backend: lock_core::SharedBackend,
    name: &str,
    keys: usize,
    pools: bool,
    until: Instant,
) -> u64 {
    let names: Vec<String> = (0..keys)
        .map(|i| key(&format!("{name}-churn-{i}")))
        .collect();
    let mut released = 0;
    while Instant::now() < until {
        for name in &names {
            if pools {
                let pool = lock_core::Pool::with_backend(name.as_str(), 1, &backend).exp(30);
                let slot = pool.acquire().await.unwrap();
                let other = pool.clone();
                let full =
                    tokio::spawn(async move { other.try_acquire().await.unwrap().is_none() });
                assert!(full.await.unwrap(), "another task took the churned slot");
                slot.release().await.unwrap();
            } else {
                let lock = lock_core::Lock::with_backend(name.as_str(), &backend).exp(30);
                let guard = lock.acquire().await.unwrap();
                let other = lock.clone();
                let held = tokio::spawn(async move { other.try_lock().await.unwrap() });
                assert!(!held.await.unwrap(), "another task took the churned lock");
                guard.release().await.unwrap();
            }
            released += 1;
        }
    }
    released
}

/// Wraps a backend and counts, per key, the acquire attempts and the renewals (`extend_many`
/// entries) that reach it; it also logs when each renewal batch was sent and whether every hold
/// in it came back live, and runs a hook before each batch (to make renewals panic, say). It can
/// also answer every acquire late (a slow server).
pub struct CountingBackend {
    inner: lock_core::SharedBackend,
    attempts: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    renewals: std::sync::Mutex<std::collections::HashMap<String, u64>>,
    renewal_log: std::sync::Mutex<Vec<(Instant, bool)>>,
    before_renewal: Box<dyn Fn() + Send + Sync>,
    default_lease: Option<Duration>,
    acquire_delay: Option<Duration>,
}

impl std::fmt::Debug for CountingBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingBackend")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn count(counts: &std::sync::Mutex<std::collections::HashMap<String, u64>>, key: &str) {
    *counts.lock().unwrap().entry(key.to_owned()).or_default() += 1;
}

impl CountingBackend {
    pub fn new(inner: lock_core::SharedBackend) -> Self {
        Self::with_hook(inner, || {})
    }

    /// Runs `before_renewal` before each renewal batch reaches `inner`.
    pub fn with_hook(
        inner: lock_core::SharedBackend,
        before_renewal: impl Fn() + Send + Sync + 'static,
    ) -> Self {
        CountingBackend {
            inner,
            attempts: Default::default(),
            renewals: Default::default(),
            renewal_log: Default::default(),
            before_renewal: Box::new(before_renewal),
            default_lease: None,
            acquire_delay: None,
        }
    }

    /// Gives holds without `exp` this lease (as `RedisConfig::default_lease` does), instead of
    /// the inner backend's.
    pub fn with_default_lease(mut self, lease: Duration) -> Self {
        self.default_lease = Some(lease);
        self
    }

    /// Answers every acquire `delay` after it was sent (blocking the caller's thread meanwhile),
    /// as a slow server would: the inner backend takes the hold only then.
    pub fn with_acquire_delay(mut self, delay: Duration) -> Self {
        self.acquire_delay = Some(delay);
        self
    }

    /// When the last renewal batch that came back with every hold live was sent.
    pub fn last_successful_renewal_sent(&self) -> Option<Instant> {
        let log = self.renewal_log.lock().unwrap();
        log.iter().rev().find(|(_, ok)| *ok).map(|(sent, _)| *sent)
    }

    pub fn attempts(&self, key: &str) -> u64 {
        self.attempts.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    pub fn renewals(&self, key: &str) -> u64 {
        self.renewals.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl lock_core::Backend for CountingBackend {
    fn try_acquire<'a>(
        &'a self,
        key: &'a std::sync::Arc<str>,
        owner: lock_core::Owner,
        lease: lock_core::LeaseTime,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<lock_core::TryAcquire>> {
        count(&self.attempts, key);
        match self.acquire_delay {
            Some(delay) => Box::pin(async move {
                std::thread::sleep(delay);
                self.inner.try_acquire(key, owner, lease).await
            }),
            None => self.inner.try_acquire(key, owner, lease),
        }
    }

    fn try_acquire_sync(
        &self,
        key: &std::sync::Arc<str>,
        owner: lock_core::Owner,
        lease: lock_core::LeaseTime,
    ) -> Option<lock_core::Result<lock_core::TryAcquire>> {
        if self.acquire_delay.is_some() {
            return None; // a slow server answers through `try_acquire`
        }
        let answer = self.inner.try_acquire_sync(key, owner, lease);
        if answer.is_some() {
            count(&self.attempts, key);
        }
        answer
    }

    fn try_acquire_sync_at(
        &self,
        key: &std::sync::Arc<str>,
        owner: lock_core::Owner,
        lease: lock_core::LeaseTime,
        now: std::time::Instant,
    ) -> Option<lock_core::Result<lock_core::TryAcquire>> {
        if self.acquire_delay.is_some() {
            return None;
        }
        let answer = self.inner.try_acquire_sync_at(key, owner, lease, now);
        if answer.is_some() {
            count(&self.attempts, key);
        }
        answer
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: lock_core::Owner,
        fence: Option<lock_core::Fence>,
        scope: lock_core::ReleaseScope,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<lock_core::Release>> {
        self.inner.release(key, owner, fence, scope)
    }

    fn force_unlock<'a>(
        &'a self,
        key: &'a str,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<bool>> {
        self.inner.force_unlock(key)
    }

    fn inspect<'a>(
        &'a self,
        key: &'a str,
        owner: lock_core::Owner,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<lock_core::LockState>> {
        self.inner.inspect(key, owner)
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: lock_core::Owner,
        fence: lock_core::Fence,
        lease: lock_core::LeaseTime,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<bool>> {
        self.inner.extend(key, owner, fence, lease)
    }

    fn listen(&self, key: &str) -> lock_core::EventListener {
        self.inner.listen(key)
    }

    fn release_on_drop(&self, key: &str, owner: lock_core::Owner, fence: lock_core::Fence) {
        self.inner.release_on_drop(key, owner, fence)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn pool_acquire<'a>(
        &'a self,
        key: &'a std::sync::Arc<str>,
        owner: lock_core::Owner,
        max_size: u32,
        lease: lock_core::LeaseTime,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<lock_core::PoolAcquire>> {
        count(&self.attempts, key);
        self.inner.pool_acquire(key, owner, max_size, lease)
    }

    fn pool_release<'a>(
        &'a self,
        key: &'a str,
        owner: lock_core::Owner,
        slot: lock_core::Fence,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<bool>> {
        self.inner.pool_release(key, owner, slot)
    }

    fn pool_extend<'a>(
        &'a self,
        key: &'a str,
        owner: lock_core::Owner,
        slot: lock_core::Fence,
        lease: lock_core::LeaseTime,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<bool>> {
        self.inner.pool_extend(key, owner, slot, lease)
    }

    fn pool_state<'a>(
        &'a self,
        key: &'a str,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<lock_core::PoolState>> {
        self.inner.pool_state(key)
    }

    fn pool_force_release<'a>(
        &'a self,
        key: &'a str,
        slot: Option<lock_core::Fence>,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<u32>> {
        self.inner.pool_force_release(key, slot)
    }

    fn listen_pool(&self, key: &str) -> lock_core::EventListener {
        self.inner.listen_pool(key)
    }

    fn pool_release_on_drop(&self, key: &str, owner: lock_core::Owner, slot: lock_core::Fence) {
        self.inner.pool_release_on_drop(key, owner, slot)
    }

    fn extend_many<'a>(
        &'a self,
        holds: &'a [lock_core::RenewHold],
        lease: Duration,
    ) -> lock_core::BoxFuture<'a, lock_core::Result<Vec<Option<bool>>>> {
        (self.before_renewal)();
        for hold in holds {
            count(&self.renewals, &hold.key);
        }
        let sent = Instant::now();
        Box::pin(async move {
            let renewed = self.inner.extend_many(holds, lease).await;
            let ok = renewed
                .as_ref()
                .is_ok_and(|live| live.iter().all(|l| *l == Some(true)));
            self.renewal_log.lock().unwrap().push((sent, ok));
            renewed
        })
    }

    fn default_lease(&self) -> Option<Duration> {
        self.default_lease.or_else(|| self.inner.default_lease())
    }
}

/// Runs `future` on this thread with no tokio runtime: a minimal executor, as another async
/// runtime would be.
pub fn run_without_tokio<F: std::future::Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[macro_export]
macro_rules! conformance_suite {
    ($make_backend:expr) => {
        $crate::conformance_suite!(
            $make_backend,
            pool_entries = $crate::conformance::pools::entries_not_counted
        );
    };
    // `pool_entries`: a `fn(&SharedBackend, pool_key: &str) -> Option<usize>` counting what the
    // store keeps for a pool, for the test that nothing accumulates.
    ($make_backend:expr, pool_entries = $pool_entries:expr) => {
        use std::sync::atomic::{AtomicU64 as __AtomicU64, Ordering as __Ordering};
        use std::sync::Arc as __Arc;
        use std::time::{Duration as __Duration, Instant as __Instant};

        use lock_core::{Lock, LockError, RemainingLease, SharedBackend};

        use $crate::conformance::{key, LIVENESS};

        fn backend() -> SharedBackend {
            $make_backend
        }

        fn lock(name: &str) -> Lock {
            Lock::with_backend(key(name), &backend())
        }

        /// Runs `f` on a fresh OS thread (a different owner) and returns its result.
        fn on_other_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
            std::thread::spawn(f)
                .join()
                .expect("helper thread panicked")
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn acquire_holds_until_guard_released() {
            let lock = lock("acquire");
            assert!(!lock.is_locked().await.unwrap());
            let guard = lock.acquire().await.unwrap();
            assert!(lock.is_locked().await.unwrap());
            assert!(guard.is_held().await.unwrap());
            guard.release().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
        }

        #[test]
        fn blocking_acquire_holds_until_guard_released() {
            let lock = lock("acquire-blocking");
            assert!(!lock.is_locked_blocking().unwrap());
            let guard = lock.acquire_blocking().unwrap();
            assert!(lock.is_locked_blocking().unwrap());
            assert!(guard.is_held_blocking().unwrap());
            guard.release_blocking().unwrap();
            assert!(!lock.is_locked_blocking().unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn dropping_the_guard_releases() {
            let lock = lock("drop");
            drop(lock.acquire().await.unwrap());
            assert!(!lock.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn nowait_fails_at_once_with_an_error_naming_the_key() {
            let lock = lock("nowait");
            let _held = lock.acquire().await.unwrap();
            let other = lock.clone();
            let start = __Instant::now();
            let err = tokio::spawn(async move { other.acquire().await.map(|_| ()) })
                .await
                .unwrap()
                .unwrap_err();
            assert!(matches!(err, LockError::Locked { .. }), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("{} is already locked!", lock.key())
            );
            assert!(start.elapsed() < LIVENESS);
        }

        #[test]
        fn blocking_nowait_fails_at_once_for_another_thread() {
            let lock = lock("nowait-blocking");
            let _held = lock.acquire_blocking().unwrap();
            let other = lock.clone();
            let err = on_other_thread(move || other.acquire_blocking().map(|_| ())).unwrap_err();
            assert!(matches!(err, LockError::Locked { .. }), "{err:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiting_succeeds_when_holders_exp_is_shorter_than_timeout() {
            let lock = lock("wait-ok").nowait(false).timeout(3).exp(0.3);
            let _held = lock.acquire().await.unwrap();
            let other = lock.clone();
            let start = __Instant::now();
            let guard = tokio::spawn(async move { other.acquire().await })
                .await
                .unwrap();
            assert!(guard.is_ok(), "{guard:?}");
            assert!(start.elapsed() >= __Duration::from_millis(250));
        }

        #[test]
        fn blocking_waiting_succeeds_when_holders_exp_is_shorter_than_timeout() {
            let lock = lock("wait-ok-blocking").nowait(false).timeout(3).exp(0.3);
            let _held = lock.acquire_blocking().unwrap();
            let other = lock.clone();
            let got = on_other_thread(move || other.acquire_blocking().map(|g| g.fence()));
            assert!(got.is_ok(), "{got:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiting_times_out_promptly_when_holders_exp_is_longer_than_timeout() {
            let lock = lock("wait-timeout").nowait(false).timeout(0.3).exp(10);
            let _held = lock.acquire().await.unwrap();
            let other = lock.clone();
            let start = __Instant::now();
            let err = tokio::spawn(async move { other.acquire().await.map(|_| ()) })
                .await
                .unwrap()
                .unwrap_err();
            let waited = start.elapsed();
            assert!(matches!(err, LockError::TimedOut { .. }), "{err:?}");
            assert!(waited >= __Duration::from_millis(300), "{waited:?}");
            assert!(waited < LIVENESS, "{waited:?}");
        }

        #[test]
        fn blocking_waiting_times_out_when_holders_exp_is_longer_than_timeout() {
            let lock = lock("wait-timeout-blocking")
                .nowait(false)
                .timeout(0.3)
                .exp(10);
            let _held = lock.acquire_blocking().unwrap();
            let other = lock.clone();
            let start = __Instant::now();
            let err = on_other_thread(move || other.acquire_blocking().map(|_| ())).unwrap_err();
            assert!(matches!(err, LockError::TimedOut { .. }), "{err:?}");
            assert!(start.elapsed() >= __Duration::from_millis(300));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiter_is_woken_by_the_release_not_by_the_lease() {
            // The holder's lease is 60 s and the waiter's timeout 30 s: only a wake-up on
            // release lets the waiter in within the liveness bound.
            let lock = lock("wake").nowait(false).timeout(30).exp(60);
            let held = lock.acquire().await.unwrap();
            let other = lock.clone();
            let waiter = tokio::spawn(async move {
                let start = __Instant::now();
                other.acquire().await.map(|_| start.elapsed())
            });
            tokio::time::sleep(__Duration::from_millis(100)).await;
            held.release().await.unwrap();
            let waited = waiter.await.unwrap().unwrap();
            assert!(waited < LIVENESS, "waiter slept {waited:?}");
        }

        #[test]
        fn blocking_waiter_is_woken_by_the_release_not_by_the_lease() {
            let lock = lock("wake-blocking").nowait(false).timeout(30).exp(60);
            let held = lock.acquire_blocking().unwrap();
            let other = lock.clone();
            let waiter = std::thread::spawn(move || {
                let start = __Instant::now();
                other.acquire_blocking().map(|_| start.elapsed())
            });
            std::thread::sleep(__Duration::from_millis(100));
            held.release_blocking().unwrap();
            let waited = waiter.join().unwrap().unwrap();
            assert!(waited < LIVENESS, "waiter slept {waited:?}");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn default_expiry_is_the_global_default_lease() {
            let lock = lock("default-exp");
            let _held = lock.acquire().await.unwrap();
            let RemainingLease::Remaining(left) = lock.remaining_lease().await.unwrap() else {
                panic!("a default hold must expire");
            };
            let default = lock_core::default_lease();
            assert!(
                left <= default && left > default - __Duration::from_secs(2),
                "{left:?}"
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn explicit_expiry_frees_the_key_on_time() {
            let lock = lock("exp").exp(0.2);
            let held = lock.acquire().await.unwrap();
            assert!(lock.is_locked().await.unwrap());
            tokio::time::sleep(__Duration::from_millis(400)).await;
            assert!(!lock.is_locked().await.unwrap());
            assert_eq!(
                lock.remaining_lease().await.unwrap(),
                RemainingLease::NotLocked
            );
            let other = lock.clone();
            tokio::spawn(async move { other.acquire().await.map(|_| ()) })
                .await
                .unwrap()
                .unwrap();
            drop(held);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn never_expiring_hold_has_unlimited_lease() {
            let lock = lock("never").never_expires();
            let _held = lock.acquire().await.unwrap();
            assert_eq!(
                lock.remaining_lease().await.unwrap(),
                RemainingLease::Unlimited
            );
            assert_eq!(
                lock.remaining_lease()
                    .await
                    .unwrap()
                    .as_millis_or_minus_one(),
                i64::MAX
            );
            assert!(lock.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn is_locked_is_seen_from_another_thread_and_another_task() {
            let lock = lock("seen");
            let _held = lock.acquire().await.unwrap();
            let from_thread = lock.clone();
            assert!(on_other_thread(move || from_thread
                .is_locked_blocking()
                .unwrap()));
            let from_task = lock.clone();
            assert!(
                tokio::spawn(async move { from_task.is_locked().await.unwrap() })
                    .await
                    .unwrap()
            );
        }

        // py-cachify defect 1: a holder whose lease ran out freed the next holder's lock.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stale_holder_cannot_release_new_holders_lock() {
            let lock = lock("stale").exp(0.2);
            let stale = lock.acquire().await.unwrap();
            tokio::time::sleep(__Duration::from_millis(300)).await;
            let other = lock.clone().exp(30);
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let new_holder = tokio::spawn(async move {
                let guard = other.acquire().await.unwrap();
                rx.await.unwrap();
                guard.is_held().await.unwrap()
            });
            while !lock.is_locked().await.unwrap() {
                tokio::task::yield_now().await;
            }
            let err = stale.release().await.unwrap_err();
            assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            assert!(lock.is_locked().await.unwrap());
            assert!(matches!(
                lock.unlock().await,
                Err(LockError::NotOwner { .. })
            ));
            tx.send(()).unwrap();
            assert!(new_holder.await.unwrap(), "the new holder lost its lock");
        }

        #[test]
        fn stale_guard_dropped_leaves_new_holders_lock_intact() {
            let lock = lock("stale-drop").exp(0.2);
            let stale = lock.acquire_blocking().unwrap();
            std::thread::sleep(__Duration::from_millis(300));
            let other = lock.clone().exp(30);
            let (took, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
            let new_holder = std::thread::spawn(move || {
                let guard = other.acquire_blocking().unwrap();
                took.0.send(()).unwrap();
                release.1.recv().unwrap();
                guard.is_held_blocking().unwrap()
            });
            took.1.recv().unwrap();
            drop(stale);
            assert!(lock.is_locked_blocking().unwrap());
            release.0.send(()).unwrap();
            assert!(new_holder.join().unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stale_guard_of_the_same_owner_cannot_release_its_newer_hold() {
            // Same owner: only the fence tells the expired hold from the new one.
            let lock = lock("stale-same-owner").exp(0.1);
            let stale = lock.acquire().await.unwrap();
            tokio::time::sleep(__Duration::from_millis(250)).await;
            let fresh = lock.clone().exp(30).acquire().await.unwrap();
            assert_eq!(fresh.hold_count_at_acquire(), 1);
            assert!(fresh.fence() > stale.fence());
            let err = stale.release().await.unwrap_err();
            assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            assert!(fresh.is_held().await.unwrap());
            fresh.release().await.unwrap();
        }

        // py-cachify defect 3: nesting the same key raised or self-deadlocked.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reentrant_acquire_counts_holds_and_frees_at_zero() {
            let lock = lock("reentrant").nowait(false).timeout(2);
            let outer = lock.acquire().await.unwrap();
            let inner = lock.acquire().await.unwrap();
            assert_eq!(inner.hold_count_at_acquire(), 2);
            assert_eq!(lock.lock_count().await.unwrap(), 2);
            drop(inner);
            assert_eq!(lock.lock_count().await.unwrap(), 1);
            assert!(lock.is_locked().await.unwrap());
            drop(outer);
            assert_eq!(lock.lock_count().await.unwrap(), 0);
            assert!(!lock.is_locked().await.unwrap());
        }

        #[test]
        fn blocking_reentrant_acquire_does_not_deadlock() {
            let lock = lock("reentrant-blocking").nowait(false).timeout(2);
            let outer = lock.acquire_blocking().unwrap();
            let inner = lock.acquire_blocking().unwrap();
            assert_eq!(lock.lock_count_blocking().unwrap(), 2);
            drop(outer);
            drop(inner);
            assert!(!lock.is_locked_blocking().unwrap());
        }

        /// Re-entered holds share one key and so one lease. Rule: the key's lease is never
        /// shorter than the longest lease a live hold of it was given or extended to. Every
        /// outer x inner pair of lease kinds (a long fixed lease, a short renewed one, never),
        /// with extend or persist on either side and either guard dropped first: the survivor
        /// still holds the key after the short lease has run out several times over.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reentered_holds_with_mixed_leases_keep_the_key_for_the_longest_lease() {
            use lock_core::Lease;
            let kinds = [
                ("fixed", Lease::Fixed(__Duration::from_secs(60))),
                ("renewed", Lease::Renewed(__Duration::from_millis(400))),
                ("never", Lease::Never),
            ];
            let changes = [
                "none",
                "extend-outer",
                "extend-inner",
                "persist-outer",
                "persist-inner",
            ];
            let mut cases = Vec::new();
            for (outer_name, outer_lease) in kinds {
                for (inner_name, inner_lease) in kinds {
                    for change in changes {
                        for outer_survives in [true, false] {
                            let case = format!(
                                "{outer_name}>{inner_name}/{change}/{}",
                                if outer_survives {
                                    "outer-stays"
                                } else {
                                    "inner-stays"
                                }
                            );
                            let lock = lock("mixed-leases");
                            cases.push(tokio::spawn(async move {
                                let mut outer =
                                    lock.clone().lease(outer_lease).acquire().await.unwrap();
                                let mut inner =
                                    lock.clone().lease(inner_lease).acquire().await.unwrap();
                                assert_eq!(inner.hold_count_at_acquire(), 2, "{case}");
                                match change {
                                    "extend-outer" => outer.extend(60).await.unwrap(),
                                    "extend-inner" => inner.extend(60).await.unwrap(),
                                    "persist-outer" => outer.persist().await.unwrap(),
                                    "persist-inner" => inner.persist().await.unwrap(),
                                    _ => {}
                                }
                                // Let every renewed guard renew at least once before one goes.
                                tokio::time::sleep(__Duration::from_millis(500)).await;
                                let survivor = if outer_survives {
                                    drop(inner);
                                    outer
                                } else {
                                    drop(outer);
                                    inner
                                };
                                tokio::time::sleep(__Duration::from_millis(1500)).await;
                                let other = lock.clone();
                                let taken = tokio::spawn(async move {
                                    other.try_acquire().await.unwrap().is_some()
                                })
                                .await
                                .unwrap();
                                let held = survivor.is_held().await.unwrap();
                                let lost = survivor.is_lease_lost();
                                drop(survivor);
                                assert!(!lock.is_locked().await.unwrap(), "{case}: not freed");
                                (case, taken, held, lost)
                            }));
                        }
                    }
                }
            }
            let mut broken = Vec::new();
            for case in cases {
                let (case, taken, held, lost) = case.await.unwrap();
                if taken || !held || lost {
                    broken.push(format!(
                        "{case} (taken by another: {taken}, held: {held}, lost: {lost})"
                    ));
                }
            }
            assert!(
                broken.is_empty(),
                "{} of 90 cases broke exclusion:\n{}",
                broken.len(),
                broken.join("\n")
            );
        }

        /// An extend never shortens the lease, and never adds one to a hold without expiry.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn extend_never_shortens_a_lease() {
            let lock = lock("extend-shorter").exp(60);
            let mut guard = lock.acquire().await.unwrap();
            guard.extend(0.2).await.unwrap();
            let never = lock.clone().never_expires();
            let key2 = never.key().to_owned();
            let persistent_lock =
                Lock::with_backend(format!("{key2}-persistent"), &backend()).never_expires();
            let mut persistent = persistent_lock.acquire().await.unwrap();
            persistent.extend(0.2).await.unwrap();
            tokio::time::sleep(__Duration::from_millis(500)).await;
            assert!(
                guard.is_held().await.unwrap(),
                "extend(0.2) cut a 60 s lease"
            );
            assert_eq!(
                persistent_lock.remaining_lease().await.unwrap(),
                RemainingLease::Unlimited,
                "extend(0.2) gave a persistent hold an expiry"
            );
            assert!(persistent.is_held().await.unwrap());
        }

        /// Futures joined in one task are one owner: their acquires re-enter one hold, even when
        /// both are on their way at once, and the key stays held until both guards are gone.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn acquires_joined_in_one_task_re_enter_one_hold() {
            for _ in 0..20 {
                let lock = lock("joined");
                let (first, second) = tokio::join!(lock.acquire(), lock.acquire());
                let (first, second) = (first.unwrap(), second.unwrap());
                assert_eq!(first.fence(), second.fence(), "two holds for one owner");
                let mut counts = [
                    first.hold_count_at_acquire(),
                    second.hold_count_at_acquire(),
                ];
                counts.sort_unstable();
                assert_eq!(counts, [1, 2]);
                drop(second);
                let other = lock.clone();
                let taken =
                    tokio::spawn(async move { other.try_acquire().await.unwrap().is_some() })
                        .await
                        .unwrap();
                assert!(
                    !taken,
                    "another owner got in while a joined guard still held the key"
                );
                assert!(first.is_held().await.unwrap());
                drop(first);
                assert!(!lock.is_locked().await.unwrap());
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reentrant_acquire_keeps_its_fence() {
            let lock = lock("reentrant-fence");
            let outer = lock.acquire().await.unwrap();
            let inner = lock.acquire().await.unwrap();
            assert_eq!(outer.fence(), inner.fence());
            assert_eq!(lock.state().await.unwrap().fence, Some(outer.fence()));
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fences_grow_strictly_with_each_free_to_held_transition() {
            let lock = lock("fence");
            let mut last = None;
            for _ in 0..20 {
                let other = lock.clone();
                let fence = tokio::spawn(async move { other.acquire().await.unwrap().fence() })
                    .await
                    .unwrap();
                assert!(last < Some(fence), "{last:?} then {fence:?}");
                last = Some(fence);
            }
        }

        // py-cachify defect 4: a concurrent is_locked() could delete a freshly taken lock.
        #[test]
        fn concurrent_is_locked_never_frees_a_fresh_lock() {
            let lock = lock("check-race").exp(0.01);
            let stop = __Arc::new(std::sync::atomic::AtomicBool::new(false));
            let checkers: Vec<_> = (0..2)
                .map(|_| {
                    let (lock, stop) = (lock.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(__Ordering::Relaxed) {
                            lock.is_locked_blocking().unwrap();
                        }
                    })
                })
                .collect();
            let deadline = __Instant::now() + __Duration::from_millis(800);
            let mut rounds = 0;
            while __Instant::now() < deadline {
                // Leave an expired hold behind, then take a fresh one while the checkers look.
                std::mem::forget(lock.clone().exp(0.01).acquire_blocking().unwrap());
                std::thread::sleep(__Duration::from_millis(12));
                let guard = lock.clone().exp(5).acquire_blocking().unwrap();
                for _ in 0..20 {
                    assert!(
                        guard.is_held_blocking().unwrap(),
                        "a check freed a fresh lock"
                    );
                }
                guard.release_blocking().unwrap();
                rounds += 1;
            }
            stop.store(true, __Ordering::Relaxed);
            checkers.into_iter().for_each(|c| c.join().unwrap());
            assert!(rounds > 5);
        }

        // py-cachify defect 5: exp=0 left is_locked() true forever while anyone could acquire.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn zero_exp_is_refused_and_locks_nothing() {
            let lock = lock("zero-exp").exp(0);
            let err = lock.acquire().await.unwrap_err();
            assert!(
                matches!(err, LockError::InvalidArgument { name: "exp", .. }),
                "{err:?}"
            );
            assert!(!Lock::with_backend(lock.key(), lock.backend())
                .is_locked()
                .await
                .unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn invalid_durations_and_keys_are_typed_errors_on_every_path() {
            let bad = [
                lock("bad").exp(-1),
                lock("bad").exp(f64::NAN),
                lock("bad").exp(f64::INFINITY),
                lock("bad").exp(-0.5),
                lock("bad").exp(1e12),
                lock("bad").timeout(0),
                lock("bad").timeout(-3),
                lock("bad").timeout(__Duration::ZERO),
                lock("bad").timeout(__Duration::MAX),
                lock("bad").renewed_lease(-1),
                lock("bad").renewed_lease(f64::NAN),
                lock("bad").lease(lock_core::Lease::Fixed(__Duration::ZERO)),
                lock("bad").lease(lock_core::Lease::Renewed(__Duration::MAX)),
                Lock::with_backend("", &backend()),
                Lock::with_backend("k".repeat(lock_core::MAX_KEY_LEN + 1), &backend()),
            ];
            for lock in bad {
                let invalid = |r: Result<(), LockError>| {
                    assert!(
                        matches!(r, Err(LockError::InvalidArgument { .. })),
                        "{:?}: {r:?}",
                        lock
                    )
                };
                invalid(lock.acquire().await.map(|_| ()));
                invalid(lock.acquire_blocking().map(|_| ()));
                invalid(lock.try_acquire().await.map(|_| ()));
                invalid(lock.try_acquire_blocking().map(|_| ()));
                invalid(lock.try_lock().await.map(|_| ()));
                invalid(lock.try_lock_blocking().map(|_| ()));
                invalid(lock.try_lock_for(1).await.map(|_| ()));
                invalid(lock.try_lock_for_blocking(1).map(|_| ()));
                invalid(lock.lock().await.map(|_| ()));
                invalid(lock.lock_blocking().map(|_| ()));
                invalid(lock.unlock().await);
                invalid(lock.unlock_blocking());
                invalid(lock.release().await.map(|_| ()));
                invalid(lock.release_blocking().map(|_| ()));
                invalid(lock.force_unlock().await.map(|_| ()));
                invalid(lock.force_unlock_blocking().map(|_| ()));
                invalid(lock.state().await.map(|_| ()));
                invalid(lock.state_blocking().map(|_| ()));
                invalid(lock.is_locked().await.map(|_| ()));
                invalid(lock.is_locked_blocking().map(|_| ()));
                invalid(lock.is_locked_by_current_owner().await.map(|_| ()));
                invalid(lock.is_locked_by_current_owner_blocking().map(|_| ()));
                invalid(lock.lock_count().await.map(|_| ()));
                invalid(lock.lock_count_blocking().map(|_| ()));
                invalid(lock.remaining_lease().await.map(|_| ()));
                invalid(lock.remaining_lease_blocking().map(|_| ()));
                // Nothing was taken: the same key through a valid handle is free.
                if !lock.key().is_empty() && lock.key().len() <= lock_core::MAX_KEY_LEN {
                    let valid = Lock::with_backend(lock.key(), lock.backend());
                    assert!(!valid.is_locked().await.unwrap(), "{lock:?} left a lock");
                }
            }
            let ok = lock("ok");
            assert!(matches!(
                ok.try_lock_for(-1).await,
                Err(LockError::InvalidArgument {
                    name: "timeout",
                    ..
                })
            ));
            assert!(matches!(
                ok.try_lock_for_blocking(f64::NAN),
                Err(LockError::InvalidArgument { .. })
            ));
            let mut guard = ok.acquire().await.unwrap();
            assert!(matches!(
                guard.extend(f64::NAN).await,
                Err(LockError::InvalidArgument { .. })
            ));
            assert!(matches!(
                guard.extend_blocking(-2),
                Err(LockError::InvalidArgument { .. })
            ));
            assert!(
                guard.is_held().await.unwrap(),
                "a refused extend changed nothing"
            );
        }

        // py-cachify defect 6: a lock on a non-global instance went through the global client.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn explicit_backend_instance_is_used_for_every_operation() {
            let instance = backend();
            let name = key("instance");
            let on_instance = Lock::with_backend(name.as_str(), &instance);
            let on_global = Lock::new(name.as_str());
            let guard = on_instance.acquire().await.unwrap();
            assert!(on_instance.is_locked().await.unwrap());
            if !__Arc::ptr_eq(&instance, &lock_core::global_backend()) {
                assert!(!on_global.is_locked().await.unwrap());
            }
            drop(guard);
            assert!(!on_instance.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unlock_by_a_non_owner_fails_and_changes_nothing() {
            let lock = lock("unlock-non-owner");
            let _held = lock.acquire().await.unwrap();
            let other = lock.clone();
            let err = tokio::spawn(async move { other.unlock().await })
                .await
                .unwrap()
                .unwrap_err();
            assert!(matches!(err, LockError::NotOwner { .. }), "{err:?}");
            let other = lock.clone();
            let err = on_other_thread(move || other.release_blocking()).unwrap_err();
            assert!(matches!(err, LockError::NotOwner { .. }), "{err:?}");
            assert!(lock.is_locked().await.unwrap());
            lock.unlock().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unlock_of_a_free_lock_is_not_owner() {
            let lock = lock("unlock-free");
            assert!(matches!(
                lock.unlock().await,
                Err(LockError::NotOwner { .. })
            ));
            assert!(!lock.release().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn hazelcast_lock_holds_until_unlock_and_counts_reentry() {
            let lock = lock("hz").never_expires();
            let fence = lock.lock().await.unwrap();
            assert!(lock.try_lock().await.unwrap());
            assert_eq!(lock.lock_count().await.unwrap(), 2);
            assert!(lock.is_locked_by_current_owner().await.unwrap());
            assert_eq!(lock.state().await.unwrap().fence, Some(fence));
            let other = lock.clone();
            let (mine, got) = tokio::spawn(async move {
                (
                    other.is_locked_by_current_owner().await.unwrap(),
                    other.try_lock_for(0.1).await.unwrap(),
                )
            })
            .await
            .unwrap();
            assert!(!mine && !got);
            lock.unlock().await.unwrap();
            assert!(lock.is_locked().await.unwrap());
            lock.unlock().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
            assert_eq!(lock.lock_count().await.unwrap(), 0);
        }

        #[test]
        fn blocking_hazelcast_methods_work_without_a_runtime() {
            let lock = lock("hz-blocking").exp(30);
            let fence = lock.lock_blocking().unwrap();
            assert!(lock.try_lock_blocking().unwrap());
            assert_eq!(lock.lock_count_blocking().unwrap(), 2);
            assert!(lock.is_locked_by_current_owner_blocking().unwrap());
            assert_eq!(lock.state_blocking().unwrap().fence, Some(fence));
            let other = lock.clone();
            assert!(!on_other_thread(move || other
                .try_lock_for_blocking(0.1)
                .unwrap()));
            let other = lock.clone();
            assert!(!on_other_thread(move || other
                .is_locked_by_current_owner_blocking()
                .unwrap()));
            let RemainingLease::Remaining(left) = lock.remaining_lease_blocking().unwrap() else {
                panic!("expected a lease")
            };
            assert!(left <= __Duration::from_secs(30));
            lock.unlock_blocking().unwrap();
            assert!(lock.release_blocking().unwrap());
            assert!(!lock.is_locked_blocking().unwrap());
            assert_eq!(
                lock.remaining_lease_blocking()
                    .unwrap()
                    .as_millis_or_minus_one(),
                -1
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn force_unlock_frees_any_holder_and_the_holder_sees_lease_lost() {
            let lock = lock("force");
            let guard = lock.acquire().await.unwrap();
            let other = lock.clone();
            let freed = on_other_thread(move || other.force_unlock_blocking().unwrap());
            assert!(freed);
            assert!(!lock.is_locked().await.unwrap());
            assert!(!guard.is_held().await.unwrap());
            assert!(matches!(
                guard.release().await,
                Err(LockError::LeaseLost { .. })
            ));
            assert!(!lock.force_unlock().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn remaining_lease_counts_down_and_extend_renews_it() {
            let lock = lock("lease").exp(10);
            assert_eq!(
                lock.remaining_lease()
                    .await
                    .unwrap()
                    .as_millis_or_minus_one(),
                -1
            );
            let mut guard = lock.acquire().await.unwrap();
            let first = lock
                .remaining_lease()
                .await
                .unwrap()
                .as_millis_or_minus_one();
            assert!(first > 8_000 && first <= 10_000, "{first}");
            tokio::time::sleep(__Duration::from_millis(100)).await;
            let later = lock
                .remaining_lease()
                .await
                .unwrap()
                .as_millis_or_minus_one();
            assert!(later < first, "{later} !< {first}");
            guard.extend(60).await.unwrap();
            let extended = lock
                .remaining_lease()
                .await
                .unwrap()
                .as_millis_or_minus_one();
            assert!(extended > 50_000, "{extended}");
            guard.persist().await.unwrap();
            assert_eq!(
                lock.remaining_lease().await.unwrap(),
                RemainingLease::Unlimited
            );
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn extend_after_the_lease_ran_out_is_lease_lost() {
            let lock = lock("extend-lost").exp(0.1);
            let mut guard = lock.acquire().await.unwrap();
            tokio::time::sleep(__Duration::from_millis(250)).await;
            let err = guard.extend(10).await.unwrap_err();
            assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            assert!(!lock.is_locked().await.unwrap());
        }

        // py-cachify defect 2: no renewal, so a job longer than exp overlapped the next run.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watchdog_keeps_a_hold_alive_well_past_its_lease() {
            let lock = lock("watchdog").renewed_lease(0.3);
            let guard = lock.acquire().await.unwrap();
            assert!(guard.is_renewed());
            tokio::time::sleep(__Duration::from_millis(1500)).await;
            assert!(
                guard.is_held().await.unwrap(),
                "the hold expired despite the watchdog"
            );
            assert!(!guard.is_lease_lost());
            let other = lock.clone();
            let taken = tokio::spawn(async move { other.try_acquire().await.unwrap().is_some() });
            assert!(!taken.await.unwrap(), "another owner took a renewed lock");
            drop(guard);
            assert!(!lock.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watchdog_signals_a_lost_lease_when_the_lock_is_taken_away() {
            let lock = lock("watchdog-lost").renewed_lease(0.3);
            let guard = lock.acquire().await.unwrap();
            assert!(lock.force_unlock().await.unwrap());
            tokio::time::timeout(LIVENESS, guard.lease_lost())
                .await
                .expect("the lost-lease signal did not fire");
            assert!(guard.is_lease_lost());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn watchdog_stops_exactly_at_release() {
            // Renewals are counted on their way to the backend: several while held (every
            // 0.1 s), then none but one already in flight when the release came.
            let counting = __Arc::new($crate::conformance::CountingBackend::new(backend()));
            let shared: SharedBackend = counting.clone();
            let name = key("watchdog-stop-counted");
            let counted = Lock::with_backend(name.as_str(), &shared).renewed_lease(0.3);
            let guard = counted.acquire().await.unwrap();
            tokio::time::sleep(__Duration::from_millis(450)).await;
            let while_held = counting.renewals(&name);
            assert!(while_held >= 2, "renewed {while_held} times in 0.45 s");
            guard.release().await.unwrap();
            let at_release = counting.renewals(&name);
            tokio::time::sleep(__Duration::from_millis(600)).await;
            let after = counting.renewals(&name) - at_release;
            assert!(after <= 1, "{after} renewals after the release");

            let lock = lock("watchdog-stop").renewed_lease(0.3);
            lock.acquire().await.unwrap().release().await.unwrap();
            // A new holder with a short fixed lease: a stale renewal would keep it alive.
            let other = lock.clone().exp(0.3);
            let fresh = tokio::spawn(async move { other.acquire().await.unwrap() })
                .await
                .unwrap();
            tokio::time::sleep(__Duration::from_millis(700)).await;
            assert!(
                !lock.is_locked().await.unwrap(),
                "something renewed the new hold"
            );
            assert!(!fresh.is_held().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn only_holds_without_exp_are_renewed() {
            let by_default = lock("renewed-default").acquire().await.unwrap();
            assert!(by_default.is_renewed());
            let fixed = lock("renewed-fixed").exp(5).acquire().await.unwrap();
            assert!(!fixed.is_renewed());
            let never = lock("renewed-never")
                .never_expires()
                .acquire()
                .await
                .unwrap();
            assert!(!never.is_renewed());
            let mut extended = lock("renewed-extended").acquire().await.unwrap();
            extended.extend(60).await.unwrap();
            assert!(
                !extended.is_renewed(),
                "an explicit extend hands the lease to the caller"
            );
        }

        /// The owner is the task, not the thread: on a one-thread runtime every task shares the
        /// thread, and a thread-based owner would let the second task re-enter the first's hold.
        #[tokio::test(flavor = "current_thread")]
        async fn tasks_sharing_one_thread_are_different_owners() {
            let lock = lock("tasks-one-thread");
            let guard = lock.acquire().await.unwrap();
            let other = lock.clone();
            let (taken, thread) = tokio::spawn(async move {
                let taken = other.try_acquire().await.unwrap().is_some();
                (taken, std::thread::current().id())
            })
            .await
            .unwrap();
            assert_eq!(
                thread,
                std::thread::current().id(),
                "one thread runs both tasks"
            );
            assert!(!taken, "a second task on the same thread got the lock");
            assert_eq!(lock.lock_count().await.unwrap(), 1);
            guard.release().await.unwrap();
        }

        /// Waiting is woken by the release, not a poll loop: while the lock is held for 1.5 s,
        /// a waiter tries only when it starts.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_waiter_does_not_poll_while_the_lock_is_held() {
            let counting = __Arc::new($crate::conformance::CountingBackend::new(backend()));
            let shared: SharedBackend = counting.clone();
            let name = key("no-poll");
            let lock = Lock::with_backend(name.as_str(), &shared).exp(30);
            let guard = lock.acquire().await.unwrap();
            let waiter = lock.clone().nowait(false).timeout(LIVENESS);
            let waiting = tokio::spawn(async move { waiter.acquire().await.map(drop) });
            tokio::time::sleep(__Duration::from_millis(1500)).await;
            let while_held = counting.attempts(&name) - 1;
            let released_at = __Instant::now();
            guard.release().await.unwrap();
            waiting.await.unwrap().unwrap();
            assert!(released_at.elapsed() < LIVENESS);
            // The waiter's first try, the try after it starts listening, and spares for
            // wake-ups shared with other keys (a 100 ms poll loop would make 15).
            assert!(
                while_held <= 5,
                "{while_held} attempts while the lock was held"
            );
        }

        /// Wake-ups are per key: releases of other keys, hundreds of them, while a waiter
        /// waits do not make it try again (with wake-ups shared by groups of keys, each of them
        /// would wake the waiters of its group, each of whom then makes a round trip).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_waiter_is_not_woken_by_releases_of_other_keys() {
            let counting = __Arc::new($crate::conformance::CountingBackend::new(backend()));
            let shared: SharedBackend = counting.clone();
            let name = key("no-other-wakeups");
            let lock = Lock::with_backend(name.as_str(), &shared).exp(30);
            let guard = lock.acquire().await.unwrap();
            let waiter = lock.clone().nowait(false).timeout(LIVENESS * 2);
            let waiting = tokio::spawn(async move { waiter.acquire().await.map(drop) });
            let until = __Instant::now() + __Duration::from_millis(1500);
            let released =
                $crate::conformance::churn_other_keys(shared.clone(), &name, 256, false, until)
                    .await;
            let while_held = counting.attempts(&name) - 1;
            guard.release().await.unwrap();
            waiting.await.unwrap().unwrap();
            assert!(released >= 256, "only {released} releases of other keys");
            // The waiter's first try, and spares for the subscriber's reconnects (each wakes
            // everyone).
            assert!(
                while_held <= 5,
                "{while_held} attempts while the lock was held and {released} other keys freed"
            );
        }

        #[test]
        fn async_waits_work_without_a_tokio_runtime() {
            use $crate::conformance::run_without_tokio;
            let lock = lock("no-runtime").exp(0.3);
            let holder = lock.clone();
            on_other_thread(move || holder.lock_blocking().unwrap());
            let impatient = lock.clone().nowait(false).timeout(0.05);
            let err = run_without_tokio(impatient.acquire()).unwrap_err();
            assert!(matches!(err, LockError::TimedOut { .. }), "{err:?}");
            // The holder's lease ends after 0.3 s; a patient waiter then gets the lock.
            let patient = lock.clone().nowait(false).timeout(LIVENESS);
            let guard = run_without_tokio(patient.acquire()).unwrap();
            run_without_tokio(guard.release()).unwrap();
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_blocking_api_waits_inside_a_task_for_a_holder_on_the_same_runtime() {
            // Blocking code inside async code (e.g. a sync `#[locked]` fn): the waiting thread
            // must not stall the holder's task or the I/O the wait depends on.
            let lock = lock("blocking-in-task").nowait(false).timeout(LIVENESS);
            let guard = lock.acquire().await.unwrap();
            let holder = tokio::spawn(async move {
                tokio::time::sleep(__Duration::from_millis(100)).await;
                guard.release().await.unwrap();
            });
            let waiter = lock.clone();
            let waited = tokio::spawn(async move {
                let start = __Instant::now();
                let guard = waiter.acquire_blocking().unwrap();
                let waited = start.elapsed();
                guard.release_blocking().unwrap();
                waited
            })
            .await
            .unwrap();
            holder.await.unwrap();
            assert!(waited < LIVENESS, "{waited:?}");
            assert!(!lock.is_locked().await.unwrap());
        }

        #[test]
        fn a_guard_dropped_by_its_runtime_shutting_down_releases_the_lock() {
            // The holder's task is still waiting when its runtime shuts down and drops it: the
            // release cannot run on that runtime any more, and must still happen.
            let lock = lock("runtime-shutdown").exp(30);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (acquired, is_acquired) = std::sync::mpsc::channel();
            let holder = lock.clone();
            runtime.spawn(async move {
                let _guard = holder.acquire().await.unwrap();
                acquired.send(()).unwrap();
                std::future::pending::<()>().await;
            });
            is_acquired.recv_timeout(LIVENESS).unwrap();
            assert!(lock.is_locked_blocking().unwrap());
            drop(runtime);
            let start = __Instant::now();
            while lock.is_locked_blocking().unwrap() {
                assert!(start.elapsed() < LIVENESS, "still held (lease 30 s)");
                std::thread::sleep(__Duration::from_millis(5));
            }
        }

        #[test]
        fn a_panicking_holder_releases_its_lock() {
            let lock = lock("panic");
            let holder = lock.clone();
            let result = std::thread::spawn(move || {
                let _guard = holder.acquire_blocking().unwrap();
                panic!("the job failed");
            })
            .join();
            assert!(result.is_err());
            assert!(!lock.is_locked_blocking().unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_dropped_future_holding_the_lock_releases_it() {
            let lock = lock("dropped-future");
            let holder = lock.clone();
            let job = async move {
                let _guard = holder.acquire().await.unwrap();
                tokio::time::sleep(__Duration::from_secs(60)).await;
            };
            assert!(tokio::time::timeout(__Duration::from_millis(100), job)
                .await
                .is_err());
            assert!(!lock.is_locked().await.unwrap());

            let holder = lock.clone();
            let task = tokio::spawn(async move {
                let _guard = holder.acquire().await.unwrap();
                std::future::pending::<()>().await;
            });
            while !lock.is_locked().await.unwrap() {
                tokio::task::yield_now().await;
            }
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
            assert!(!lock.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn acquires_dropped_at_any_point_leave_no_lock_behind() {
            // Cut acquire+hold futures off after 0, 25, 50... microseconds: every await point
            // gets hit. Right after each drop, the key must be free.
            let lock = lock("cancel-sweep");
            for step in 0..300u64 {
                let holder = lock.clone();
                let attempt =
                    tokio::time::timeout(__Duration::from_micros(step * 25), async move {
                        let _guard = holder.acquire().await.unwrap();
                        tokio::task::yield_now().await;
                    });
                let _ = attempt.await;
                assert!(
                    !lock.is_locked().await.unwrap(),
                    "held after a drop at step {step}"
                );
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_dropped_waiter_takes_nothing() {
            let lock = lock("dropped-waiter").nowait(false).exp(30);
            let held = lock.acquire().await.unwrap();
            let waiter = lock.clone();
            let wait = tokio::spawn(async move {
                tokio::time::timeout(__Duration::from_millis(100), waiter.acquire()).await
            });
            assert!(
                wait.await.unwrap().is_err(),
                "the waiter should have been cut off"
            );
            held.release().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
        }

        /// Many waiters (threads and tasks) of one key behind holds whose leases outlast the
        /// test: every release hands the key to one of them, and those woken for nothing find
        /// it taken again and must be woken by a later release (per-key wake-ups forget the
        /// key at each wake; in memory only a hold someone found taken wakes). Each hand-off
        /// frees the key another way: guard drop, `release()`, re-entered holds released one by
        /// one, Hazelcast `lock()`/`unlock()`, `force_unlock`. A waiter that misses its wake-up
        /// sleeps until its timeout (10 s), far past the others' few milliseconds of holding.
        #[test]
        fn many_waiters_of_one_key_are_each_woken_by_a_release_in_turn() {
            let lock = lock("many-waiters")
                .nowait(false)
                .timeout(LIVENESS * 2)
                .exp(60);
            let held = lock.acquire_blocking().unwrap();
            let hand_off = |lock: &Lock, way: usize| match way % 5 {
                0 => {
                    let guard = lock.acquire_blocking().unwrap();
                    std::thread::sleep(__Duration::from_millis(3));
                    drop(guard);
                }
                1 => {
                    let guard = lock.acquire_blocking().unwrap();
                    std::thread::sleep(__Duration::from_millis(3));
                    guard.release_blocking().unwrap();
                }
                2 => {
                    let outer = lock.acquire_blocking().unwrap();
                    let inner = lock.acquire_blocking().unwrap();
                    std::thread::sleep(__Duration::from_millis(3));
                    drop(inner);
                    std::thread::sleep(__Duration::from_millis(1));
                    drop(outer);
                }
                3 => {
                    lock.lock_blocking().unwrap();
                    std::thread::sleep(__Duration::from_millis(3));
                    lock.unlock_blocking().unwrap();
                }
                _ => {
                    let guard = lock.acquire_blocking().unwrap();
                    std::thread::sleep(__Duration::from_millis(3));
                    assert!(lock.force_unlock_blocking().unwrap());
                    drop(guard);
                }
            };
            let threads: Vec<_> = (0..10)
                .map(|way| {
                    let lock = lock.clone();
                    std::thread::spawn(move || {
                        let start = __Instant::now();
                        hand_off(&lock, way);
                        start.elapsed()
                    })
                })
                .collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let tasks: Vec<_> = (0..6)
                .map(|i| {
                    let lock = lock.clone();
                    runtime.spawn(async move {
                        let start = __Instant::now();
                        let guard = lock.acquire().await.unwrap();
                        tokio::time::sleep(__Duration::from_millis(3)).await;
                        if i % 2 == 0 {
                            guard.release().await.unwrap();
                        } else {
                            drop(guard);
                        }
                        start.elapsed()
                    })
                })
                .collect();
            std::thread::sleep(__Duration::from_millis(300));
            held.release_blocking().unwrap();
            for thread in threads {
                let waited = thread.join().expect("a thread waiter failed");
                assert!(waited < LIVENESS, "a thread waiter took {waited:?}");
            }
            runtime.block_on(async {
                for task in tasks {
                    let waited = task.await.expect("a task waiter failed");
                    assert!(waited < LIVENESS, "a task waiter took {waited:?}");
                }
            });
            assert!(!lock.is_locked_blocking().unwrap());
        }

        /// Wake-ups go by the exact key (on Redis, by the channel name the server sends back):
        /// keys with braces, glob characters, backslashes, colons and non-ASCII text are woken
        /// by their release, and not by the release of a key that differs by one character.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn waiters_of_keys_with_special_characters_are_woken_by_their_own_release() {
            for odd in [
                "a}b{c",
                "*?[x]\\",
                "k:free",
                "clé ünïcode ✓",
                "{}",
                "x:pool:free",
            ] {
                let name = key(odd);
                let lock = Lock::with_backend(name.as_str(), &backend())
                    .nowait(false)
                    .timeout(30)
                    .exp(60);
                let near = Lock::with_backend(format!("{name}_"), lock.backend())
                    .nowait(false)
                    .timeout(30)
                    .exp(60);
                let held = lock.acquire().await.unwrap();
                let held_near = near.acquire().await.unwrap();
                let (other, other_near) = (lock.clone(), near.clone());
                let waiter =
                    tokio::spawn(async move { other.acquire().await.map(|_| __Instant::now()) });
                let waiter_near =
                    tokio::spawn(
                        async move { other_near.acquire().await.map(|_| __Instant::now()) },
                    );
                tokio::time::sleep(__Duration::from_millis(100)).await;
                let freed = __Instant::now();
                held.release().await.unwrap();
                let got = waiter.await.unwrap().unwrap();
                assert!(
                    got.duration_since(freed) < LIVENESS,
                    "the waiter of {odd:?} slept on"
                );
                assert!(!waiter_near.is_finished());
                let freed = __Instant::now();
                held_near.release().await.unwrap();
                let got = waiter_near.await.unwrap().unwrap();
                assert!(
                    got.duration_since(freed) < LIVENESS,
                    "the waiter of {odd:?}_ slept on"
                );
            }
        }

        /// A re-entered hold frees its key only at its last release, and that release wakes
        /// the waiter that found it taken before the first one.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_last_release_of_a_re_entered_hold_wakes_its_waiter() {
            let lock = lock("reentered-wake").nowait(false).timeout(30).exp(60);
            let outer = lock.acquire().await.unwrap();
            let inner = lock.acquire().await.unwrap();
            let other = lock.clone();
            let waiter = tokio::spawn(async move {
                other.acquire().await.map(|guard| {
                    let at = __Instant::now();
                    drop(guard);
                    at
                })
            });
            tokio::time::sleep(__Duration::from_millis(100)).await;
            inner.release().await.unwrap();
            tokio::time::sleep(__Duration::from_millis(100)).await;
            assert!(
                !waiter.is_finished(),
                "the waiter got a key still held once"
            );
            let freed = __Instant::now();
            outer.release().await.unwrap();
            let got = waiter.await.unwrap().unwrap();
            assert!(
                got.duration_since(freed) < LIVENESS,
                "the waiter slept past the release"
            );
        }

        /// `force_unlock` of a hold without a lease end wakes its waiter: nothing else would.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn force_unlock_wakes_the_waiter_of_a_hold_that_never_ends() {
            let lock = lock("force-wake").nowait(false).timeout(30).exp(60);
            let _held = lock.acquire().await.unwrap();
            let other = lock.clone();
            let waiter = tokio::spawn(async move {
                let start = __Instant::now();
                other.acquire().await.map(|_| start.elapsed())
            });
            tokio::time::sleep(__Duration::from_millis(100)).await;
            let unlocker = lock.clone();
            assert!(on_other_thread(move || unlocker
                .force_unlock_blocking()
                .unwrap()));
            let waited = waiter.await.unwrap().unwrap();
            assert!(waited < LIVENESS, "waiter slept {waited:?}");
        }

        /// A waiter whose timeout ran out leaves; the next waiter of the key, arriving later,
        /// is still woken by the release (the first one's registration, never woken, must not
        /// stand in its way).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_waiter_after_one_that_timed_out_is_still_woken() {
            let lock = lock("after-timeout").nowait(false).exp(60);
            let held = lock.acquire().await.unwrap();
            let impatient = lock.clone().timeout(__Duration::from_millis(100));
            let gave_up = tokio::spawn(async move { impatient.acquire().await.map(drop) })
                .await
                .unwrap();
            assert!(matches!(gave_up, Err(LockError::TimedOut { .. })));
            let patient = lock.clone().timeout(30);
            let waiter =
                tokio::spawn(async move { patient.acquire().await.map(|_| __Instant::now()) });
            tokio::time::sleep(__Duration::from_millis(100)).await;
            let freed = __Instant::now();
            held.release().await.unwrap();
            let got = waiter.await.unwrap().unwrap();
            assert!(
                got.duration_since(freed) < LIVENESS,
                "the waiter slept past the release"
            );
        }

        #[test]
        fn no_lost_update_or_wakeup_under_contention_of_tasks_and_threads() {
            // A read-then-write counter (not fetch_add) loses increments unless the lock excludes.
            let counter = __Arc::new(__AtomicU64::new(0));
            let lock = lock("contention").nowait(false).timeout(30).exp(30);
            let increment = |counter: &__AtomicU64| {
                let value = counter.load(__Ordering::Relaxed);
                std::hint::spin_loop();
                counter.store(value + 1, __Ordering::Relaxed);
            };
            let until = __Instant::now() + __Duration::from_secs(2);
            let mut expected = 0;
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    let (lock, counter) = (lock.clone(), counter.clone());
                    std::thread::spawn(move || {
                        let mut done = 0u64;
                        while __Instant::now() < until {
                            let guard = lock.acquire_blocking().unwrap();
                            increment(&counter);
                            drop(guard);
                            done += 1;
                        }
                        done
                    })
                })
                .collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let tasks: u64 = runtime.block_on(async {
                let handles: Vec<_> = (0..16)
                    .map(|_| {
                        let (lock, counter) = (lock.clone(), counter.clone());
                        tokio::spawn(async move {
                            let mut done = 0u64;
                            while __Instant::now() < until {
                                let guard = lock.acquire().await.unwrap();
                                increment(&counter);
                                tokio::task::yield_now().await;
                                drop(guard);
                                done += 1;
                            }
                            done
                        })
                    })
                    .collect();
                let mut total = 0;
                for handle in handles {
                    total += handle.await.unwrap();
                }
                total
            });
            for thread in threads {
                expected += thread.join().unwrap();
            }
            expected += tasks;
            assert!(expected > 0);
            assert_eq!(counter.load(__Ordering::Relaxed), expected);
            assert!(!lock.is_locked_blocking().unwrap());
        }

        $crate::handle_hold_conformance!();

        $crate::pool_conformance!($pool_entries);

        #[test]
        fn lock_futures_and_guards_are_send() {
            fn assert_send<T: Send>(_: &T) {}
            let lock = lock("send");
            assert_send(&lock.acquire());
            assert_send(&lock.is_locked());
            assert_send(&lock.lock());
            let guard = lock.acquire_blocking().unwrap();
            assert_send(&guard);
            assert_send(&guard.release());
        }
    };
}
