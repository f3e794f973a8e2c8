//! The pool contract (py-cachify's `pool()`, keyed counting semaphores): at most `max_size` live
//! slots per key, unique growing slot tokens, leases like a lock's, waiters woken when a slot
//! frees, typed errors for bad sizes, and nothing left behind. Expanded by `conformance_suite!`
//! next to the rest of the suite (it uses the suite's `backend()`, `key`, `on_other_thread` and
//! the handle-hold tests' `short_default_lease_backend`).

/// The probe of a backend that cannot count what it stores for a pool: the accumulation test
/// then checks what the `Backend` trait shows (sizes) and says on stderr that it counted nothing.
/// Redis: pass a probe that counts the pool's Redis keys (`conformance_suite!(..., pool_entries
/// = ...)`) once the backend's pool names are settled.
pub fn entries_not_counted(_backend: &lock_core::SharedBackend, _pool: &str) -> Option<usize> {
    None
}

#[macro_export]
macro_rules! pool_conformance {
    ($pool_entries:expr) => {
        /// The pool tests, in a module so that `cargo test pool` picks them all.
        mod pools {
            use super::*;
            use lock_core::{Fence as __Fence, Pool, PoolState};

            /// What the store keeps for the pool `key` of `backend`, when the backend's test file can
            /// count it (memory: the whole store's entries; the tests that ask use a store of their
            /// own there).
            fn pool_entries(backend: &SharedBackend, key: &str) -> Option<usize> {
                ($pool_entries)(backend, key)
            }

            /// A pool of `max_size` slots on a key of its own.
            fn pool(name: &str, max_size: u32) -> Pool {
                Pool::with_backend(key(name), max_size, &backend())
            }

            /// Another handle on the pool of `pool`'s key and backend, with another `max_size`.
            fn same_pool(pool: &Pool, max_size: u32) -> Pool {
                Pool::with_backend(pool.key(), max_size, pool.backend())
            }

            /// Whether another owner (a task) gets a slot right now; a slot it gets is given back.
            async fn another_owner_gets_a_slot(pool: &Pool) -> bool {
                let other = pool.clone();
                tokio::spawn(async move { other.try_acquire().await.unwrap().is_some() })
                    .await
                    .unwrap()
            }

            /// Waits until the pool has `size` live slots (a task's acquire went through, say);
            /// panics with `what` past the liveness bound.
            async fn wait_for_pool_size(pool: &Pool, size: u32, what: &str) {
                let start = __Instant::now();
                while pool.size().await.unwrap() != size {
                    assert!(start.elapsed() < LIVENESS, "{what}");
                    tokio::time::sleep(__Duration::from_millis(5)).await;
                }
            }

            #[test]
            fn a_pool_never_has_more_than_max_size_live_slots_under_threads_and_tasks() {
                // Holders count themselves in after their acquire returns and out before they give
                // the slot back, so `inside` never exceeds the live slots.
                const MAX: u32 = 3;
                let pool = pool("racing", MAX).nowait(false).timeout(30).exp(30);
                let inside = __Arc::new(__AtomicU64::new(0));
                let most = __Arc::new(__AtomicU64::new(0));
                let tokens = __Arc::new(std::sync::Mutex::new(Vec::new()));
                let until = __Instant::now() + __Duration::from_millis(1500);
                let enter = |inside: &__AtomicU64, most: &__AtomicU64| {
                    let now = inside.fetch_add(1, __Ordering::SeqCst) + 1;
                    most.fetch_max(now, __Ordering::SeqCst);
                };
                let threads: Vec<_> = (0..4)
                    .map(|t| {
                        let (pool, inside, most, tokens) =
                            (pool.clone(), inside.clone(), most.clone(), tokens.clone());
                        std::thread::spawn(move || {
                            let mut round = 0u64;
                            while __Instant::now() < until {
                                round += 1;
                                // One in three does not wait: try, and come back later.
                                let guard = if (round + t) % 3 == 0 {
                                    match pool.try_acquire_blocking().unwrap() {
                                        Some(guard) => guard,
                                        None => {
                                            std::thread::yield_now();
                                            continue;
                                        }
                                    }
                                } else {
                                    pool.acquire_blocking().unwrap()
                                };
                                enter(&inside, &most);
                                std::thread::sleep(__Duration::from_micros(200));
                                inside.fetch_sub(1, __Ordering::SeqCst);
                                tokens.lock().unwrap().push(guard.slot());
                                drop(guard);
                            }
                        })
                    })
                    .collect();
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..12u64)
                        .map(|t| {
                            let (pool, inside, most, tokens) =
                                (pool.clone(), inside.clone(), most.clone(), tokens.clone());
                            tokio::spawn(async move {
                                let mut round = 0u64;
                                while __Instant::now() < until {
                                    round += 1;
                                    let guard = if (round + t) % 3 == 0 {
                                        match pool.try_acquire().await.unwrap() {
                                            Some(guard) => guard,
                                            None => {
                                                tokio::task::yield_now().await;
                                                continue;
                                            }
                                        }
                                    } else {
                                        pool.acquire().await.unwrap()
                                    };
                                    enter(&inside, &most);
                                    tokio::task::yield_now().await;
                                    inside.fetch_sub(1, __Ordering::SeqCst);
                                    tokens.lock().unwrap().push(guard.slot());
                                    if round % 2 == 0 {
                                        guard.release().await.unwrap();
                                    } else {
                                        drop(guard);
                                    }
                                }
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap();
                    }
                });
                for thread in threads {
                    thread.join().unwrap();
                }
                let most = most.load(__Ordering::SeqCst);
                assert!(most <= u64::from(MAX), "{most} holders at once in a pool of {MAX}");
                assert_eq!(most, u64::from(MAX), "the pool never filled: the race tested nothing");
                let mut tokens = std::mem::take(&mut *tokens.lock().unwrap());
                let taken = tokens.len();
                tokens.sort_unstable();
                tokens.dedup();
                assert_eq!(tokens.len(), taken, "a slot token was handed out twice");
                assert!(taken > 100, "only {taken} slots taken");
                assert_eq!(pool.size_blocking().unwrap(), 0);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_full_pool_refuses_at_once_with_py_cachifys_message() {
                let pool = pool("full", 2);
                // Slots are not reentrant: one task takes two.
                let first = pool.acquire().await.unwrap();
                let second = pool.acquire().await.unwrap();
                assert_ne!(first.slot(), second.slot());
                assert_eq!(
                    (first.size_at_acquire(), second.size_at_acquire()),
                    (1, 2)
                );
                assert_eq!(pool.size().await.unwrap(), 2);
                let start = __Instant::now();
                let other = pool.clone();
                let err = tokio::spawn(async move { other.acquire().await.map(drop) })
                    .await
                    .unwrap()
                    .unwrap_err();
                assert!(
                    matches!(err, LockError::PoolFull { max_size: 2, .. }),
                    "{err:?}"
                );
                assert_eq!(
                    err.to_string(),
                    format!("{} is full (max_size=2)", pool.key())
                );
                assert!(err.is_contention());
                let other = pool.clone();
                let err = on_other_thread(move || other.acquire_blocking().map(drop)).unwrap_err();
                assert!(matches!(err, LockError::PoolFull { .. }), "{err:?}");
                let err = pool.acquire().await.map(drop).unwrap_err();
                assert!(matches!(err, LockError::PoolFull { .. }), "the holder itself: {err:?}");
                assert!(pool.try_acquire().await.unwrap().is_none());
                assert!(pool.try_acquire_blocking().unwrap().is_none());
                assert!(start.elapsed() < LIVENESS, "{:?}", start.elapsed());
                assert_eq!(pool.size().await.unwrap(), 2, "a refused acquire changed the pool");
                drop(first);
                assert!(another_owner_gets_a_slot(&pool).await);
                drop(second);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_waiter_times_out_when_no_slot_frees_in_time() {
                let pool = pool("timeout", 1).exp(10).nowait(false).timeout(0.3);
                let _held = pool.acquire().await.unwrap();
                let other = pool.clone();
                let start = __Instant::now();
                let err = tokio::spawn(async move { other.acquire().await.map(drop) })
                    .await
                    .unwrap()
                    .unwrap_err();
                let waited = start.elapsed();
                assert!(matches!(err, LockError::TimedOut { .. }), "{err:?}");
                assert!(err.is_contention());
                assert!(waited >= __Duration::from_millis(300), "{waited:?}");
                assert!(waited < LIVENESS, "{waited:?}");
                let other = pool.clone();
                let start = __Instant::now();
                let err = on_other_thread(move || other.acquire_blocking().map(drop)).unwrap_err();
                assert!(matches!(err, LockError::TimedOut { .. }), "{err:?}");
                assert!(start.elapsed() >= __Duration::from_millis(300));
                let other = pool.clone().nowait(true);
                assert!(tokio::spawn(async move { other.try_acquire_for(0.2).await.unwrap() })
                    .await
                    .unwrap()
                    .is_none());
                let other = pool.clone();
                assert!(on_other_thread(move || other.try_acquire_for_blocking(0.2).unwrap()).is_none());
                assert_eq!(pool.size().await.unwrap(), 1);
            }

            /// The holder's lease is 60 s and the waiter's timeout twice the liveness bound: only a
            /// wake-up when the slot frees lets the waiter in within the bound.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_waiter_is_woken_when_a_slot_is_released_or_force_released() {
                for how in ["release", "drop", "force_release", "force_release_all"] {
                    let pool = pool("wake", 1).exp(60).nowait(false).timeout(LIVENESS * 2);
                    let held = pool.acquire().await.unwrap();
                    let held_slot = held.slot();
                    let other = pool.clone();
                    let waiter = tokio::spawn(async move {
                        let start = __Instant::now();
                        other
                            .acquire()
                            .await
                            .map(|guard| (start.elapsed(), guard.slot()))
                    });
                    tokio::time::sleep(__Duration::from_millis(100)).await;
                    match how {
                        "release" => held.release().await.unwrap(),
                        "drop" => drop(held),
                        "force_release" => {
                            assert!(pool.force_release(held_slot).await.unwrap());
                            drop(held);
                        }
                        _ => {
                            assert_eq!(pool.force_release_all().await.unwrap(), 1);
                            drop(held);
                        }
                    }
                    let (waited, slot) = waiter.await.unwrap().unwrap();
                    assert!(waited < LIVENESS, "{how}: the waiter slept {waited:?}");
                    assert!(slot > held_slot, "{how}");
                }
            }

            #[test]
            fn a_blocking_pool_waiter_is_woken_when_a_slot_is_released() {
                let pool = pool("wake-blocking", 1)
                    .exp(60)
                    .nowait(false)
                    .timeout(LIVENESS * 2);
                let held = pool.acquire_blocking().unwrap();
                let other = pool.clone();
                let waiter = std::thread::spawn(move || {
                    let start = __Instant::now();
                    other.acquire_blocking().map(|_| start.elapsed())
                });
                std::thread::sleep(__Duration::from_millis(100));
                held.release_blocking().unwrap();
                let waited = waiter.join().unwrap().unwrap();
                assert!(waited < LIVENESS, "the waiter slept {waited:?}");
            }

            /// Nobody gives a slot back: the waiter sleeps until the first slot's lease ends (the
            /// other's is 60 s, its timeout the liveness bound).
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_waiter_gets_the_slot_whose_lease_ends_first() {
                let pool = pool("lease-end", 2).nowait(false).timeout(LIVENESS);
                let _long = pool.clone().exp(60).acquire().await.unwrap();
                let short = pool.clone().exp(0.3).acquire().await.unwrap();
                let other = pool.clone().exp(0.3);
                let start = __Instant::now();
                let by_task = tokio::spawn(async move { other.acquire().await })
                    .await
                    .unwrap()
                    .unwrap();
                let waited = start.elapsed();
                assert!(waited >= __Duration::from_millis(250), "{waited:?}");
                assert!(by_task.slot() > short.slot());
                assert_eq!(pool.size().await.unwrap(), 2, "the long slot and the waiter's");
                // The same for a blocking waiter, the task's slot (exp 0.3) now ending first.
                let other = pool.clone().exp(30);
                let taken = on_other_thread(move || {
                    let start = __Instant::now();
                    other.acquire_blocking().map(|g| (start.elapsed(), g.slot()))
                });
                let (waited, slot) = taken.unwrap();
                assert!(waited >= __Duration::from_millis(150), "{waited:?}");
                assert!(waited < LIVENESS, "{waited:?}");
                assert!(slot > by_task.slot());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn slot_tokens_are_unique_and_grow_per_key() {
                let pool = pool("tokens", 3);
                let mut last = __Fence(0);
                let mut next = |slot: __Fence, what: &str| {
                    assert!(slot > last, "{what}: token {slot} after {last}");
                    last = slot;
                };
                // Each way a slot ends, then new slots: their tokens are larger still.
                for ends_by in ["release", "drop", "force_release", "force_release_all", "expiry"] {
                    let leased = match ends_by {
                        "expiry" => pool.clone().exp(0.05),
                        _ => pool.clone(),
                    };
                    let first = leased.acquire().await.unwrap();
                    next(first.slot(), ends_by);
                    let second = leased.acquire().await.unwrap();
                    next(second.slot(), ends_by);
                    let other = leased.clone();
                    let by_thread = on_other_thread(move || {
                        let guard = other.acquire_blocking().unwrap();
                        let slot = guard.slot();
                        std::mem::forget(guard);
                        slot
                    });
                    next(by_thread, ends_by);
                    match ends_by {
                        "release" => {
                            first.release().await.unwrap();
                            second.release().await.unwrap();
                            assert!(pool.force_release(by_thread).await.unwrap());
                        }
                        "drop" => {
                            drop((first, second));
                            assert!(pool.force_release(by_thread).await.unwrap());
                        }
                        "force_release" => {
                            for slot in [first.slot(), second.slot(), by_thread] {
                                assert!(pool.force_release(slot).await.unwrap());
                            }
                        }
                        "force_release_all" => {
                            assert_eq!(pool.force_release_all().await.unwrap(), 3);
                        }
                        _ => {
                            std::mem::forget((first, second));
                            tokio::time::sleep(__Duration::from_millis(150)).await;
                        }
                    }
                    assert_eq!(pool.size().await.unwrap(), 0, "{ends_by}");
                }
                // Taken at once by many owners: all distinct, all larger than before.
                let wide = same_pool(&pool, 8);
                let racing: Vec<_> = (0..8)
                    .map(|_| {
                        let wide = wide.clone();
                        tokio::spawn(async move { wide.acquire().await.unwrap() })
                    })
                    .collect();
                let mut guards = Vec::new();
                for taken in racing {
                    guards.push(taken.await.unwrap());
                }
                let mut tokens: Vec<__Fence> = guards.iter().map(|g| g.slot()).collect();
                tokens.sort_unstable();
                tokens.dedup();
                assert_eq!(tokens.len(), 8, "a token was handed out twice: {tokens:?}");
                assert!(tokens[0] > last, "{tokens:?} after {last}");
            }

            // py-cachify defect 1, for pools: a holder whose slot ran out freed someone else's.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_slot_whose_lease_ran_out_cannot_release_or_extend_another_slot() {
                let pool = pool("stale-slot", 1);
                let mut stale = pool.clone().exp(0.2).acquire().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(300)).await;
                assert_eq!(pool.size().await.unwrap(), 0);
                let other = pool.clone().exp(30);
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                let new_holder = tokio::spawn(async move {
                    let guard = other.acquire().await.unwrap();
                    rx.await.unwrap();
                    guard.release().await
                });
                wait_for_pool_size(&pool, 1, "the new holder never got its slot").await;
                let err = stale.extend(10).await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                // Through the backend as well: the stale owner and token free nothing.
                assert!(!pool
                    .backend()
                    .pool_release(pool.key(), stale.owner(), stale.slot())
                    .await
                    .unwrap());
                let err = stale.release().await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                assert_eq!(pool.size().await.unwrap(), 1, "the stale slot freed the new one");
                tx.send(()).unwrap();
                new_holder
                    .await
                    .unwrap()
                    .expect("the new holder lost its slot");

                // The same owner: only the token tells its expired slot from its new one.
                let mut stale = pool.clone().exp(0.1).acquire().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(250)).await;
                let mut fresh = pool.clone().exp(30).acquire().await.unwrap();
                assert_eq!(fresh.owner(), stale.owner());
                assert!(fresh.slot() > stale.slot());
                let err = stale.extend(10).await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                let err = stale.release().await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                assert_eq!(pool.size().await.unwrap(), 1);
                fresh.extend(30).await.unwrap();
                // A stale guard dropped leaves the fresh slot alone too.
                drop(fresh);
                let dropped = pool.clone().exp(0.1).acquire().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(250)).await;
                let fresh = pool.clone().exp(30).acquire().await.unwrap();
                drop(dropped);
                assert_eq!(pool.size().await.unwrap(), 1, "a stale drop freed the fresh slot");
                fresh.release().await.unwrap();
            }

            /// Release, extend and renewal act only on the slot of that owner and token: another
            /// owner that knows a live slot's token frees and extends nothing.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn another_owner_cannot_release_or_extend_a_live_slot_by_its_token() {
                let pool = pool("slot-other-owner", 1).exp(1);
                let mut guard = pool.acquire().await.unwrap();
                let other = on_other_thread(lock_core::Owner::current);
                assert_ne!(other, guard.owner());
                let backend = pool.backend();
                assert!(!backend
                    .pool_extend(pool.key(), other, guard.slot(), Some(__Duration::from_secs(60)))
                    .await
                    .unwrap());
                assert!(!backend
                    .pool_release(pool.key(), other, guard.slot())
                    .await
                    .unwrap());
                assert_eq!(pool.size().await.unwrap(), 1, "another owner freed the slot");
                assert!(!another_owner_gets_a_slot(&pool).await);
                // Its lease was not extended either: it ends after 1 s.
                tokio::time::sleep(__Duration::from_millis(1300)).await;
                assert_eq!(pool.size().await.unwrap(), 0, "another owner extended the slot");
                let err = guard.extend(10).await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn force_release_frees_one_slot_whose_holder_sees_lease_lost() {
                let pool = pool("force-one", 3);
                let taken = pool.clone().renewed_lease(0.3).acquire().await.unwrap();
                let kept = pool.clone().exp(30).acquire().await.unwrap();
                let other = pool.clone();
                let slot = taken.slot();
                assert!(on_other_thread(move || other.force_release_blocking(slot).unwrap()));
                assert_eq!(pool.size().await.unwrap(), 1);
                tokio::time::timeout(LIVENESS, taken.lease_lost())
                    .await
                    .expect("the watchdog never found the slot gone");
                assert!(taken.is_lease_lost());
                let err = taken.release().await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                assert!(!pool.force_release(slot).await.unwrap(), "freed twice");
                assert!(
                    !pool.force_release(__Fence(u64::MAX)).await.unwrap(),
                    "a token never handed out"
                );
                assert_eq!(pool.size().await.unwrap(), 1, "another slot went with it");
                kept.release().await.unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn force_release_all_frees_every_live_slot() {
                let pool = pool("force-all", 3);
                let first = pool.clone().exp(30).acquire().await.unwrap();
                let second = pool.clone().renewed_lease(0.3).acquire().await.unwrap();
                // Taken last, so that no acquire reclaims it once expired.
                let expired = pool.clone().exp(0.05).acquire().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(150)).await;
                let other = pool.clone();
                assert_eq!(
                    on_other_thread(move || other.force_release_all_blocking().unwrap()),
                    2,
                    "only live slots count"
                );
                assert_eq!(pool.state().await.unwrap(), PoolState::EMPTY);
                tokio::time::timeout(LIVENESS, second.lease_lost())
                    .await
                    .expect("the watchdog never found the slot gone");
                for guard in [expired, first, second] {
                    let err = guard.release().await.unwrap_err();
                    assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                }
                assert_eq!(pool.force_release_all().await.unwrap(), 0);
                let again = pool.acquire().await.unwrap();
                assert_eq!(again.size_at_acquire(), 1);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pool_size_and_state_count_only_live_slots() {
                let pool = pool("size", 3);
                assert_eq!(pool.state().await.unwrap(), PoolState::EMPTY);
                let long = pool.clone().exp(30).acquire().await.unwrap();
                let short = pool.clone().exp(0.2).acquire().await.unwrap();
                assert_eq!(
                    pool.state().await.unwrap(),
                    PoolState {
                        size: 2,
                        max_size: Some(3)
                    }
                );
                let other = pool.clone();
                assert_eq!(on_other_thread(move || other.size_blocking().unwrap()), 2);
                tokio::time::sleep(__Duration::from_millis(350)).await;
                // Expired, not given back: not counted.
                assert_eq!(pool.size().await.unwrap(), 1);
                assert_eq!(pool.state_blocking().unwrap().max_size, Some(3));
                assert!(short.release().await.is_err());
                long.release().await.unwrap();
                assert_eq!(pool.state().await.unwrap(), PoolState::EMPTY);
                assert_eq!(pool.size_blocking().unwrap(), 0);
            }

            // py-cachify defect 4, for pools: a read must never delete a slot.
            #[test]
            fn concurrent_size_reads_never_free_a_fresh_slot() {
                let pool = pool("size-race", 2);
                let stop = __Arc::new(std::sync::atomic::AtomicBool::new(false));
                let checkers: Vec<_> = (0..2)
                    .map(|n| {
                        let (pool, stop) = (pool.clone(), stop.clone());
                        std::thread::spawn(move || {
                            while !stop.load(__Ordering::Relaxed) {
                                if n == 0 {
                                    pool.size_blocking().unwrap();
                                } else {
                                    pool.state_blocking().unwrap();
                                }
                            }
                        })
                    })
                    .collect();
                let deadline = __Instant::now() + __Duration::from_millis(800);
                let mut rounds = 0;
                while __Instant::now() < deadline {
                    // Leave an expired slot behind, then take fresh ones while the checkers read.
                    std::mem::forget(pool.clone().exp(0.01).acquire_blocking().unwrap());
                    std::thread::sleep(__Duration::from_millis(12));
                    let first = pool.clone().exp(5).acquire_blocking().unwrap();
                    let second = pool.clone().exp(5).acquire_blocking().unwrap();
                    for _ in 0..20 {
                        assert_eq!(pool.size_blocking().unwrap(), 2, "a read freed a fresh slot");
                    }
                    first.release_blocking().unwrap();
                    second.release_blocking().unwrap();
                    rounds += 1;
                }
                stop.store(true, __Ordering::Relaxed);
                checkers.into_iter().for_each(|c| c.join().unwrap());
                assert!(rounds > 5);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn another_max_size_while_slots_are_live_is_refused_and_changes_nothing() {
                let two = pool("mismatch", 2);
                let held = two.clone().exp(30).acquire().await.unwrap();
                let three = same_pool(&two, 3).nowait(false).timeout(LIVENESS * 2);
                let mismatch = |result: Result<(), LockError>, form: &str| match result {
                    Err(LockError::PoolSizeMismatch { live, given, .. }) => {
                        assert_eq!((live, given), (2, 3), "{form}")
                    }
                    other => panic!("{form}: {other:?}"),
                };
                let start = __Instant::now();
                mismatch(three.acquire().await.map(drop), "acquire (waiting)");
                mismatch(three.try_acquire().await.map(drop), "try_acquire");
                mismatch(three.try_acquire_for(1).await.map(drop), "try_acquire_for");
                let other = three.clone();
                mismatch(
                    on_other_thread(move || other.acquire_blocking().map(drop)),
                    "acquire_blocking",
                );
                let other = three.clone();
                mismatch(
                    on_other_thread(move || other.try_acquire_blocking().map(drop)),
                    "try_acquire_blocking",
                );
                assert!(start.elapsed() < LIVENESS, "a mismatch waited");
                let err = three.try_acquire().await.map(drop).unwrap_err();
                assert_eq!(
                    err.to_string(),
                    format!(
                        "pool {} has max_size 2 (its live slots were taken with it), not 3",
                        two.key()
                    )
                );
                assert!(!err.is_contention());
                assert_eq!(
                    three.state().await.unwrap(),
                    PoolState {
                        size: 1,
                        max_size: Some(2)
                    },
                    "a refused acquire changed the pool"
                );
                let second = two.acquire().await.unwrap();
                held.release().await.unwrap();
                second.release().await.unwrap();
                // Empty: the new size applies, and now the old one is refused.
                let mut slots = Vec::new();
                for _ in 0..3 {
                    slots.push(three.acquire().await.unwrap());
                }
                let err = two.acquire().await.map(drop).unwrap_err();
                assert!(
                    matches!(err, LockError::PoolSizeMismatch { live: 3, given: 2, .. }),
                    "{err:?}"
                );
                assert_eq!(three.size().await.unwrap(), 3);
                drop(slots);
                // Emptied by expiry, with nothing given back, a new size applies too.
                std::mem::forget(three.clone().exp(0.1).acquire().await.unwrap());
                tokio::time::sleep(__Duration::from_millis(250)).await;
                let taken = two.acquire().await.unwrap();
                assert_eq!(two.state().await.unwrap().max_size, Some(2));
                taken.release().await.unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_of_zero_slots_and_bad_options_are_typed_errors_on_every_path() {
                use lock_core::Lease;
                let bad = [
                    (Pool::with_backend(key("zero"), 0, &backend()), "max_size"),
                    (pool("bad", 2).exp(0), "exp"),
                    (pool("bad", 2).exp(-1), "exp"),
                    (pool("bad", 2).exp(f64::NAN), "exp"),
                    (pool("bad", 2).exp(1e12), "exp"),
                    (pool("bad", 2).lease(Lease::Fixed(__Duration::ZERO)), "exp"),
                    (pool("bad", 2).timeout(0), "timeout"),
                    (pool("bad", 2).timeout(__Duration::MAX), "timeout"),
                    (pool("bad", 2).renewed_lease(-1), "renewed lease"),
                    (pool("bad", 2).renewed_lease(f64::INFINITY), "renewed lease"),
                    (Pool::with_backend("", 2, &backend()), "key"),
                    (
                        Pool::with_backend("k".repeat(lock_core::MAX_KEY_LEN + 1), 2, &backend()),
                        "key",
                    ),
                ];
                for (pool, name) in bad {
                    let invalid = |r: Result<(), LockError>, form: &str| match r {
                        Err(LockError::InvalidArgument { name: found, .. }) if found == name => {}
                        other => panic!("{pool:?} {form}: {other:?}, not an invalid {name}"),
                    };
                    invalid(pool.validate().map(drop), "validate");
                    invalid(pool.acquire().await.map(drop), "acquire");
                    invalid(pool.acquire_blocking().map(drop), "acquire_blocking");
                    invalid(pool.try_acquire().await.map(drop), "try_acquire");
                    invalid(pool.try_acquire_blocking().map(drop), "try_acquire_blocking");
                    invalid(pool.try_acquire_for(1).await.map(drop), "try_acquire_for");
                    invalid(pool.try_acquire_for_blocking(1).map(drop), "try_acquire_for_blocking");
                    invalid(pool.size().await.map(drop), "size");
                    invalid(pool.size_blocking().map(drop), "size_blocking");
                    invalid(pool.state().await.map(drop), "state");
                    invalid(pool.state_blocking().map(drop), "state_blocking");
                    invalid(pool.force_release(__Fence(1)).await.map(drop), "force_release");
                    invalid(pool.force_release_blocking(__Fence(1)).map(drop), "force_release_blocking");
                    invalid(pool.force_release_all().await.map(drop), "force_release_all");
                    invalid(pool.force_release_all_blocking().map(drop), "force_release_all_blocking");
                    // Nothing was taken: the same key through a valid handle is empty.
                    if !pool.key().is_empty() && pool.key().len() <= lock_core::MAX_KEY_LEN {
                        let valid = Pool::with_backend(pool.key(), 2, pool.backend());
                        assert_eq!(valid.state().await.unwrap(), PoolState::EMPTY, "{pool:?}");
                    }
                }
                let ok = pool("ok", 1);
                assert!(matches!(
                    ok.try_acquire_for(-1).await,
                    Err(LockError::InvalidArgument { name: "timeout", .. })
                ));
                assert!(matches!(
                    ok.try_acquire_for_blocking(f64::NAN),
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
                guard.release().await.expect("a refused extend changed nothing");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_and_a_lock_of_the_same_key_are_independent() {
                let pool = pool("pool-and-lock", 1).exp(30);
                let lock = Lock::with_backend(pool.key(), pool.backend()).exp(30);
                let held = lock.acquire().await.unwrap();
                let slot = pool.acquire().await.unwrap();
                assert!(lock.is_locked().await.unwrap());
                assert_eq!(pool.size().await.unwrap(), 1);
                let (other_lock, other_pool) = (lock.clone(), pool.clone());
                let (locked, full) = tokio::spawn(async move {
                    (
                        other_lock.try_acquire().await.unwrap().is_none(),
                        other_pool.try_acquire().await.unwrap().is_none(),
                    )
                })
                .await
                .unwrap();
                assert!(locked && full);
                // Force-unlocking the lock leaves the pool's slot; force-releasing the pool leaves
                // the lock.
                assert!(lock.force_unlock().await.unwrap());
                assert_eq!(pool.size().await.unwrap(), 1);
                assert!(matches!(
                    held.release().await,
                    Err(LockError::LeaseLost { .. })
                ));
                let held = lock.acquire().await.unwrap();
                assert_eq!(pool.force_release_all().await.unwrap(), 1);
                assert!(held.is_held().await.unwrap());
                assert!(slot.release().await.is_err());
                // A slot given back frees no lock hold, and the other way round.
                let slot = pool.acquire().await.unwrap();
                held.release().await.unwrap();
                assert_eq!(pool.size().await.unwrap(), 1);
                let held = lock.acquire().await.unwrap();
                slot.release().await.unwrap();
                assert!(held.is_held().await.unwrap());
                held.release().await.unwrap();

                // Two pools: one full, the other free, and each force-release is its own.
                let full = pool.clone();
                let other = Pool::with_backend(key("pool-and-lock-other"), 1, pool.backend()).exp(30);
                let in_full = full.acquire().await.unwrap();
                let in_other = other.acquire().await.unwrap();
                assert_eq!(full.force_release_all().await.unwrap(), 1);
                assert_eq!(other.size().await.unwrap(), 1);
                assert!(!full.force_release(in_other.slot()).await.unwrap());
                assert_eq!(other.size().await.unwrap(), 1);
                in_other.release().await.unwrap();
                assert!(in_full.release().await.is_err());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn slots_without_exp_are_renewed_past_several_leases() {
                // Several (four) leases of 0.5 s: the backend's short default lease, and one given.
                const SEVERAL: __Duration = __Duration::from_millis(2000);
                let forms = ["default", "renewed_lease"].map(|form| {
                    tokio::spawn(async move {
                        let (counting, shared) = short_default_lease_backend();
                        let name = key("pool-renewed");
                        let pool = Pool::with_backend(name.as_str(), 1, &shared);
                        let pool = match form {
                            "default" => pool,
                            _ => pool.renewed_lease(0.5),
                        };
                        let guard = pool.acquire().await.unwrap();
                        assert!(guard.is_renewed(), "{form}");
                        assert_eq!(lock_core::watched_holds(&shared), 1, "{form}");
                        tokio::time::sleep(SEVERAL).await;
                        let renewals = counting.renewals(&name);
                        assert!(renewals >= 3, "{form}: renewed {renewals} times in 4 leases");
                        assert!(!another_owner_gets_a_slot(&pool).await, "{form}: another got in");
                        assert_eq!(pool.size().await.unwrap(), 1, "{form}: the slot expired");
                        assert!(!guard.is_lease_lost(), "{form}");
                        guard.release().await.unwrap();
                        assert_eq!(pool.size().await.unwrap(), 0, "{form}");
                        assert_eq!(lock_core::watched_holds(&shared), 0, "{form}: left renewing");
                    })
                });
                for form in forms {
                    form.await.unwrap();
                }
                let fixed = pool("pool-not-renewed", 3).exp(5).acquire().await.unwrap();
                assert!(!fixed.is_renewed());
                let never = pool("pool-not-renewed", 3).never_expires().acquire().await.unwrap();
                assert!(!never.is_renewed());
                let mut extended = pool("pool-not-renewed", 3).acquire().await.unwrap();
                assert!(extended.is_renewed());
                extended.extend(60).await.unwrap();
                assert!(!extended.is_renewed(), "an explicit extend hands the lease to the caller");
            }

            /// A holder that stops renewing (its process hung, say: here its backend's renewals
            /// panic) loses its slot within one lease, and another owner gets it.
            #[test]
            fn a_slot_whose_renewals_stop_frees_within_one_lease() {
                let bare = backend();
                let stopped = __Arc::new(std::sync::atomic::AtomicBool::new(false));
                let stop = stopped.clone();
                let counting = __Arc::new($crate::conformance::CountingBackend::with_hook(
                    __Arc::clone(&bare),
                    move || assert!(!stop.load(__Ordering::SeqCst), "the holder stopped renewing"),
                ));
                let shared: SharedBackend = counting.clone();
                let name = key("pool-renewals-stop");
                let guard = Pool::with_backend(name.as_str(), 1, &shared)
                    .renewed_lease(0.5)
                    .acquire_blocking()
                    .unwrap();
                std::thread::sleep(__Duration::from_millis(1200));
                let waiter = Pool::with_backend(name.as_str(), 1, &bare);
                assert!(
                    waiter.try_acquire_blocking().unwrap().is_none(),
                    "the renewed slot expired while renewed"
                );
                stopped.store(true, __Ordering::SeqCst);
                let taken = waiter
                    .nowait(false)
                    .timeout(LIVENESS)
                    .acquire_blocking()
                    .expect("the slot was not freed");
                let last_renewal = counting.last_successful_renewal_sent().unwrap();
                assert!(
                    last_renewal.elapsed() < __Duration::from_millis(500) + LIVENESS,
                    "freed {:?} after the last renewal",
                    last_renewal.elapsed()
                );
                let start = __Instant::now();
                while !guard.is_lease_lost() {
                    assert!(start.elapsed() < LIVENESS, "the holder was not told");
                    std::thread::sleep(__Duration::from_millis(5));
                }
                drop(guard);
                assert_eq!(
                    Pool::with_backend(name.as_str(), 1, &bare).size_blocking().unwrap(),
                    1,
                    "the lost guard's drop freed the new holder's slot"
                );
                taken.release_blocking().unwrap();
            }

            #[test]
            fn a_pool_guard_is_given_back_at_the_end_of_scope_and_on_panic() {
                let pool = pool("scope", 1).exp(30);
                {
                    let _slot = pool.acquire_blocking().unwrap();
                    assert_eq!(pool.size_blocking().unwrap(), 1);
                }
                assert_eq!(pool.size_blocking().unwrap(), 0);
                let early = |pool: &Pool| -> Result<(), LockError> {
                    let _slot = pool.acquire_blocking()?;
                    Err(LockError::InvalidArgument {
                        name: "job",
                        reason: "failed".to_owned(),
                    })?;
                    Ok(())
                };
                assert!(early(&pool).is_err());
                assert_eq!(pool.size_blocking().unwrap(), 0, "not given back on `?`");
                let holder = pool.clone();
                let result = std::thread::spawn(move || {
                    let _slot = holder.acquire_blocking().unwrap();
                    panic!("the job failed");
                })
                .join();
                assert!(result.is_err());
                assert_eq!(pool.size_blocking().unwrap(), 0, "not given back on panic");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dropped_future_holding_a_slot_gives_it_back() {
                let pool = pool("dropped-future", 1).exp(30);
                let holder = pool.clone();
                let job = async move {
                    let _slot = holder.acquire().await.unwrap();
                    tokio::time::sleep(__Duration::from_secs(60)).await;
                };
                assert!(tokio::time::timeout(__Duration::from_millis(100), job)
                    .await
                    .is_err());
                assert_eq!(pool.size().await.unwrap(), 0);
                let holder = pool.clone();
                let task = tokio::spawn(async move {
                    let _slot = holder.acquire().await.unwrap();
                    std::future::pending::<()>().await;
                });
                wait_for_pool_size(&pool, 1, "the task never took its slot").await;
                task.abort();
                assert!(task.await.unwrap_err().is_cancelled());
                assert_eq!(pool.size().await.unwrap(), 0);
                // A waiter cut off takes nothing either.
                let held = pool.acquire().await.unwrap();
                let waiter = pool.clone().nowait(false);
                assert!(
                    tokio::time::timeout(__Duration::from_millis(100), waiter.acquire())
                        .await
                        .is_err()
                );
                held.release().await.unwrap();
                assert_eq!(pool.size().await.unwrap(), 0);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn pool_acquires_dropped_at_any_point_leave_no_slot_behind() {
                // Cut acquire+hold futures off after 0, 25, 50... microseconds, with one slot of two
                // taken: every await point gets hit. Right after each drop only that slot is live.
                // Behind a wrapper of its own identity, so that the watchdog's count is this test's.
                let shared: SharedBackend =
                    __Arc::new($crate::conformance::CountingBackend::new(backend()));
                let pool =
                    Pool::with_backend(key("pool-cancel-sweep"), 2, &shared).renewed_lease(30);
                let taken = pool.acquire().await.unwrap();
                for step in 0..300u64 {
                    let holder = pool.clone();
                    let attempt = tokio::time::timeout(__Duration::from_micros(step * 25), async move {
                        let _slot = holder.acquire().await.unwrap();
                        tokio::task::yield_now().await;
                    });
                    let _ = attempt.await;
                    assert_eq!(pool.size().await.unwrap(), 1, "a slot left after a drop at step {step}");
                }
                drop(taken);
                assert_eq!(lock_core::watched_holds(&shared), 0, "a renewal entry leaked");
            }

            #[test]
            fn a_slot_dropped_by_its_runtime_shutting_down_is_given_back() {
                let pool = pool("pool-runtime-shutdown", 1).exp(30);
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap();
                let (acquired, is_acquired) = std::sync::mpsc::channel();
                let holder = pool.clone();
                runtime.spawn(async move {
                    let _slot = holder.acquire().await.unwrap();
                    acquired.send(()).unwrap();
                    std::future::pending::<()>().await;
                });
                is_acquired.recv_timeout(LIVENESS).unwrap();
                assert_eq!(pool.size_blocking().unwrap(), 1);
                drop(runtime);
                let start = __Instant::now();
                while pool.size_blocking().unwrap() != 0 {
                    assert!(start.elapsed() < LIVENESS, "still taken (lease 30 s)");
                    std::thread::sleep(__Duration::from_millis(5));
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn extend_and_persist_never_shorten_a_slot() {
                // Each case in a pool of one slot: after the wait, another owner must still be
                // refused (the slot lives), and its own release must be fine.
                let cases = ["extend-long", "extend-never", "persist-short", "extend-short"].map(|case| {
                    tokio::spawn(async move {
                        let pool = pool("pool-extend", 1);
                        let mut guard = match case {
                            "extend-long" => pool.clone().exp(60),
                            "extend-never" => pool.clone().never_expires(),
                            _ => pool.clone().exp(0.3),
                        }
                        .acquire()
                        .await
                        .unwrap();
                        match case {
                            "extend-long" | "extend-never" => guard.extend(0.2).await.unwrap(),
                            "persist-short" => guard.persist().await.unwrap(),
                            _ => guard.extend(10).await.unwrap(),
                        }
                        tokio::time::sleep(__Duration::from_millis(600)).await;
                        let refused = !another_owner_gets_a_slot(&pool).await;
                        let released = guard.release().await.is_ok();
                        (case, refused && released)
                    })
                });
                let mut broken = Vec::new();
                for case in cases {
                    let (case, kept) = case.await.unwrap();
                    if !kept {
                        broken.push(case);
                    }
                }
                assert!(broken.is_empty(), "shortened: {broken:?}");
                // Extend after the lease ran out is lost, and takes nothing.
                let pool = pool("pool-extend-lost", 1);
                let mut guard = pool.clone().exp(0.1).acquire().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(250)).await;
                let err = guard.extend(10).await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                let err = guard.persist().await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                assert_eq!(pool.size().await.unwrap(), 0);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn expired_and_released_slots_leave_nothing_behind() {
                let backend = backend();
                let pools: Vec<Pool> = (0..20)
                    .map(|_| Pool::with_backend(key("pool-reclaim"), 3, &backend))
                    .collect();
                for pool in &pools {
                    // Two slots left to expire (forgotten: nobody gives them back), one given back.
                    std::mem::forget(pool.clone().exp(0.05).acquire().await.unwrap());
                    std::mem::forget(pool.clone().exp(0.05).acquire().await.unwrap());
                    pool.acquire().await.unwrap().release().await.unwrap();
                }
                // The probe, where there is one, sees what a live slot keeps (a slot of its own:
                // on a loaded machine the 50 ms slots above may all have expired by now).
                let live = Pool::with_backend(key("pool-reclaim-live"), 1, &backend);
                let live_slot = live.clone().exp(30).acquire().await.unwrap();
                if let Some(entries) = pool_entries(&backend, live.key()) {
                    assert!(entries > 0, "the probe counts nothing while a slot is live");
                }
                live_slot.release().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(150)).await;
                for pool in &pools {
                    assert_eq!(pool.state().await.unwrap(), PoolState::EMPTY);
                    // The next caller of the pool reclaims its expired slots.
                    pool.acquire().await.unwrap().release().await.unwrap();
                }
                // Many short-lived pools, each slot given back.
                for n in 0..500 {
                    let pool = Pool::with_backend(format!("{}-{n}", key("pool-churn")), 2, &backend);
                    let first = pool.acquire().await.unwrap();
                    drop(pool.acquire().await.unwrap());
                    first.release().await.unwrap();
                }
                let mut counted = false;
                for pool in &pools {
                    if let Some(entries) = pool_entries(&backend, pool.key()) {
                        counted = true;
                        assert_eq!(entries, 0, "entries left for {}", pool.key());
                    }
                }
                if !counted {
                    eprintln!(
                        "expired_and_released_slots_leave_nothing_behind: this backend's test file \
                         gives no pool_entries probe; only the pools' sizes were checked"
                    );
                }
            }

            /// Waiting is woken when a slot frees, not a poll loop: while the pool is full for
            /// 1.5 s, a waiter tries only when it starts.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_waiter_does_not_poll_while_the_pool_is_full() {
                let counting = __Arc::new($crate::conformance::CountingBackend::new(backend()));
                let shared: SharedBackend = counting.clone();
                let name = key("pool-no-poll");
                let pool = Pool::with_backend(name.as_str(), 1, &shared).exp(30);
                let held = pool.acquire().await.unwrap();
                let waiter = pool.clone().nowait(false).timeout(LIVENESS);
                let waiting = tokio::spawn(async move { waiter.acquire().await.map(drop) });
                tokio::time::sleep(__Duration::from_millis(1500)).await;
                let while_full = counting.attempts(&name) - 1;
                held.release().await.unwrap();
                waiting.await.unwrap().unwrap();
                // The waiter's first try, and spares for wake-ups shared with other keys (a 100 ms
                // poll loop would make 15).
                assert!(while_full <= 5, "{while_full} attempts while the pool was full");
            }

            /// Wake-ups are per pool: slots of other pools freed by the hundred while a waiter
            /// waits do not make it try again.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_pool_waiter_is_not_woken_by_releases_of_other_pools() {
                let counting = __Arc::new($crate::conformance::CountingBackend::new(backend()));
                let shared: SharedBackend = counting.clone();
                let name = key("pool-no-other-wakeups");
                let pool = Pool::with_backend(name.as_str(), 1, &shared).exp(30);
                let held = pool.acquire().await.unwrap();
                let waiter = pool.clone().nowait(false).timeout(LIVENESS * 2);
                let waiting = tokio::spawn(async move { waiter.acquire().await.map(drop) });
                let until = __Instant::now() + __Duration::from_millis(1500);
                let released =
                    $crate::conformance::churn_other_keys(shared.clone(), &name, 256, true, until)
                        .await;
                let while_full = counting.attempts(&name) - 1;
                held.release().await.unwrap();
                waiting.await.unwrap().unwrap();
                assert!(released >= 256, "only {released} releases of other pools");
                assert!(
                    while_full <= 5,
                    "{while_full} attempts while the pool was full and {released} other slots freed"
                );
            }

            /// A lock and a pool of one key wait apart: the lock's release wakes the lock's
            /// waiter and leaves the pool's asleep (the pool stays full), and the slot given back
            /// then wakes the pool's waiter. Neither holder's lease ends within the test.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_lock_and_a_pool_of_one_key_each_wake_their_own_waiter() {
                let pool = pool("pool-and-lock-wake", 1).exp(60).nowait(false).timeout(30);
                let lock = Lock::with_backend(pool.key(), pool.backend())
                    .exp(60)
                    .nowait(false)
                    .timeout(30);
                let held = lock.acquire().await.unwrap();
                let slot = pool.acquire().await.unwrap();
                let (other_lock, other_pool) = (lock.clone(), pool.clone());
                let lock_waiter =
                    tokio::spawn(async move { other_lock.acquire().await.map(|_| __Instant::now()) });
                let pool_waiter =
                    tokio::spawn(async move { other_pool.acquire().await.map(|_| __Instant::now()) });
                tokio::time::sleep(__Duration::from_millis(150)).await;
                let freed = __Instant::now();
                held.release().await.unwrap();
                let got = lock_waiter.await.unwrap().unwrap();
                assert!(got.duration_since(freed) < LIVENESS, "the lock's waiter slept on");
                tokio::time::sleep(__Duration::from_millis(100)).await;
                assert!(!pool_waiter.is_finished(), "the pool's waiter got a slot of a full pool");
                let freed = __Instant::now();
                slot.release().await.unwrap();
                let got = pool_waiter.await.unwrap().unwrap();
                assert!(got.duration_since(freed) < LIVENESS, "the pool's waiter slept on");
            }

            /// Many waiters of a pool of two, holders' leases outlasting the test: every slot
            /// given back lets one in, the others wait for the next.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn many_pool_waiters_are_each_woken_by_a_slot_given_back_in_turn() {
                let pool = pool("many-pool-waiters", 2)
                    .exp(60)
                    .nowait(false)
                    .timeout(LIVENESS * 2);
                let first = pool.acquire().await.unwrap();
                let second = pool.acquire().await.unwrap();
                let waiters: Vec<_> = (0..12)
                    .map(|i| {
                        let pool = pool.clone();
                        tokio::spawn(async move {
                            let start = __Instant::now();
                            let slot = pool.acquire().await.unwrap();
                            tokio::time::sleep(__Duration::from_millis(3)).await;
                            if i % 2 == 0 {
                                slot.release().await.unwrap();
                            } else {
                                drop(slot);
                            }
                            start.elapsed()
                        })
                    })
                    .collect();
                let blocking: Vec<_> = (0..4)
                    .map(|_| {
                        let pool = pool.clone();
                        std::thread::spawn(move || {
                            let start = __Instant::now();
                            let slot = pool.acquire_blocking().unwrap();
                            std::thread::sleep(__Duration::from_millis(3));
                            drop(slot);
                            start.elapsed()
                        })
                    })
                    .collect();
                tokio::time::sleep(__Duration::from_millis(300)).await;
                first.release().await.unwrap();
                drop(second);
                for waiter in waiters {
                    let waited = waiter.await.expect("a pool waiter failed");
                    assert!(waited < LIVENESS, "a pool waiter took {waited:?}");
                }
                for thread in blocking {
                    let waited = thread.join().expect("a blocking pool waiter failed");
                    assert!(waited < LIVENESS, "a blocking pool waiter took {waited:?}");
                }
                assert_eq!(pool.size().await.unwrap(), 0);
            }

            #[test]
            fn pool_futures_and_guards_are_send() {
                fn assert_send<T: Send>(_: &T) {}
                let pool = pool("pool-send", 1);
                assert_send(&pool.acquire());
                assert_send(&pool.try_acquire());
                assert_send(&pool.size());
                assert_send(&pool.force_release_all());
                let guard = pool.acquire_blocking().unwrap();
                assert_send(&guard);
                assert_send(&guard.release());
            }
        }
    };
}
