//! Holds taken through the handle without a guard (Hazelcast's `lock()` / `try_lock()` /
//! `try_lock_for()`): without `exp` they are renewed by the watchdog until the matching
//! `unlock()`, their loss is seen without a guard, and they mix with guards by the re-entry
//! lease rule. Expanded by `conformance_suite!` next to the rest of the suite (it uses the
//! suite's `backend()`, `key` and `on_other_thread`).

/// The short default lease the tests give their backend (a wrapper, as
/// `RedisConfig::default_lease` would): holds without `exp` get it, renewed every 1/6 s. Not
/// shorter: on a loaded machine a renewal may come late, and the watchdog then rightly gives the
/// hold up.
pub const SHORT_DEFAULT_LEASE: std::time::Duration = std::time::Duration::from_millis(500);

#[macro_export]
macro_rules! handle_hold_conformance {
    () => {
        /// The suite's backend behind a counting wrapper whose default lease is short. The
        /// wrapper has an identity of its own, so `watched_holds` on it sees only this test's
        /// holds, and a force-unlock through the bare backend is news to the watchdog.
        fn short_default_lease_backend(
        ) -> (__Arc<$crate::conformance::CountingBackend>, SharedBackend) {
            let (counting, shared, _) = short_default_lease_backend_and_bare();
            (counting, shared)
        }

        /// The same, with the bare backend it wraps (in memory, each `backend()` is a store of
        /// its own).
        fn short_default_lease_backend_and_bare() -> (
            __Arc<$crate::conformance::CountingBackend>,
            SharedBackend,
            SharedBackend,
        ) {
            let bare = backend();
            let counting = __Arc::new(
                $crate::conformance::CountingBackend::new(__Arc::clone(&bare))
                    .with_default_lease($crate::conformance::handle_holds::SHORT_DEFAULT_LEASE),
            );
            let shared: SharedBackend = counting.clone();
            (counting, shared, bare)
        }

        /// Several (four) default leases.
        const SEVERAL_LEASES: __Duration = __Duration::from_millis(2000);

        /// Whether another owner (a task, and a thread) can get the lock right now.
        async fn another_owner_gets(lock: &Lock) -> bool {
            // Through guards: a hold taken by mistake goes with them, and nothing renews it.
            let other = lock.clone().nowait(false).timeout(0.05);
            let by_task = tokio::spawn(async move { other.acquire().await.is_ok() })
                .await
                .unwrap();
            // A thread of the blocking pool: a thread joined here would hold a worker of this
            // runtime hostage, which the backend's background work may need.
            let other = lock.clone();
            let by_thread = tokio::task::spawn_blocking(move || {
                other.try_acquire_blocking().unwrap().is_some()
            })
            .await
            .unwrap();
            by_task || by_thread
        }

        /// Once every hold is given back, nothing is left to renew, and no renewal reaches the
        /// backend but at most one that was already on its way.
        async fn assert_renewals_stopped(
            counting: &$crate::conformance::CountingBackend,
            shared: &SharedBackend,
            name: &str,
        ) {
            assert_eq!(
                lock_core::watched_holds(shared),
                0,
                "a renewal entry leaked"
            );
            let at_unlock = counting.renewals(name);
            tokio::time::sleep(__Duration::from_millis(600)).await;
            let after = counting.renewals(name) - at_unlock;
            assert!(after <= 1, "{after} renewals after the last unlock");
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handle_lock_without_exp_is_renewed_until_unlock() {
            let forms = ["lock", "try_lock", "try_lock_for"].map(|form| {
                tokio::spawn(async move {
                    let (counting, shared) = short_default_lease_backend();
                    let name = key("hz-renewed");
                    let lock = Lock::with_backend(name.as_str(), &shared);
                    let fence = match form {
                        "lock" => lock.lock().await.unwrap(),
                        "try_lock" => {
                            assert!(lock.try_lock().await.unwrap(), "{form}");
                            lock.state().await.unwrap().fence.unwrap()
                        }
                        _ => {
                            assert!(lock.try_lock_for(1).await.unwrap(), "{form}");
                            lock.state().await.unwrap().fence.unwrap()
                        }
                    };
                    assert!(lock.is_renewed(), "{form}");
                    assert_eq!(lock_core::watched_holds(&shared), 1, "{form}");
                    tokio::time::sleep(SEVERAL_LEASES).await;
                    let renewals = counting.renewals(&name);
                    assert!(
                        renewals >= 3,
                        "{form}: renewed {renewals} times in 4 leases"
                    );
                    assert!(
                        !another_owner_gets(&lock).await,
                        "{form}: another owner got in"
                    );
                    let state = lock.state().await.unwrap();
                    assert!(state.held_by_owner, "{form}: the hold expired");
                    assert_eq!(state.fence, Some(fence), "{form}");
                    assert!(!lock.is_lease_lost(), "{form}");
                    lock.unlock().await.unwrap();
                    assert!(!lock.is_locked().await.unwrap(), "{form}");
                    assert!(!lock.is_renewed(), "{form}");
                    assert_renewals_stopped(&counting, &shared, &name).await;
                })
            });
            for form in forms {
                form.await.unwrap();
            }
        }

        #[test]
        fn a_blocking_handle_lock_without_exp_is_renewed_until_unlock() {
            let forms = ["lock", "try_lock", "try_lock_for", "lock-in-a-task"].map(|form| {
                std::thread::spawn(move || {
                    let (counting, shared) = short_default_lease_backend();
                    let name = key("hz-renewed-blocking");
                    let lock = Lock::with_backend(name.as_str(), &shared);
                    // Blocking code inside async code: the owner is the task throughout.
                    let runtime = tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(2)
                        .enable_all()
                        .build()
                        .unwrap();
                    let hold = move |lock: &Lock| match form {
                        "try_lock" => assert!(lock.try_lock_blocking().unwrap()),
                        "try_lock_for" => assert!(lock.try_lock_for_blocking(1).unwrap()),
                        _ => drop(lock.lock_blocking().unwrap()),
                    };
                    let wait_and_check = move |lock: &Lock| {
                        assert!(lock.is_renewed(), "{form}");
                        std::thread::sleep(SEVERAL_LEASES);
                        let other = lock.clone();
                        assert!(
                            !on_other_thread(move || other
                                .try_acquire_blocking()
                                .unwrap()
                                .is_some()),
                            "{form}: another owner got in"
                        );
                        assert!(
                            lock.is_locked_by_current_owner_blocking().unwrap(),
                            "{form}"
                        );
                        assert!(!lock.is_lease_lost(), "{form}");
                        lock.unlock_blocking().unwrap();
                        assert!(!lock.is_renewed(), "{form}");
                    };
                    if form == "lock-in-a-task" {
                        let in_task = lock.clone();
                        let task = runtime.spawn(async move {
                            hold(&in_task);
                            wait_and_check(&in_task);
                        });
                        runtime.block_on(task).unwrap();
                    } else {
                        hold(&lock);
                        wait_and_check(&lock);
                    }
                    assert!(!lock.is_locked_blocking().unwrap(), "{form}");
                    runtime.block_on(assert_renewals_stopped(&counting, &shared, &name));
                })
            });
            for form in forms {
                form.join().unwrap();
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn reentrant_handle_locks_are_renewed_until_the_count_is_back_to_zero() {
            let (counting, shared) = short_default_lease_backend();
            let name = key("hz-reentrant");
            let lock = Lock::with_backend(name.as_str(), &shared);
            let fence = lock.lock().await.unwrap();
            assert!(lock.try_lock().await.unwrap());
            assert_eq!(lock.lock_count().await.unwrap(), 2);
            assert_eq!(
                lock_core::watched_holds(&shared),
                1,
                "one renewal per owner and key"
            );
            tokio::time::sleep(SEVERAL_LEASES).await;
            lock.unlock().await.unwrap();
            assert_eq!(lock.lock_count().await.unwrap(), 1);
            assert!(lock.is_renewed());
            let at_first_unlock = counting.renewals(&name);
            tokio::time::sleep(SEVERAL_LEASES).await;
            let since = counting.renewals(&name) - at_first_unlock;
            assert!(since >= 3, "renewed {since} times in 4 leases at count 1");
            assert!(
                !another_owner_gets(&lock).await,
                "another owner got in at count 1"
            );
            assert_eq!(lock.state().await.unwrap().fence, Some(fence));
            lock.unlock().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
            assert!(!lock.is_renewed());
            assert!(matches!(
                lock.unlock().await,
                Err(LockError::NotOwner { .. })
            ));
            assert_renewals_stopped(&counting, &shared, &name).await;
        }

        /// Futures joined in one task are one owner: their `lock()`s re-enter one hold, which
        /// one watchdog entry renews (the second acquire's is dropped at once).
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn handle_locks_joined_in_one_task_share_one_renewal() {
            let (counting, shared) = short_default_lease_backend();
            let name = key("hz-joined");
            let lock = Lock::with_backend(name.as_str(), &shared);
            let (first, second) = tokio::join!(lock.lock(), lock.try_lock());
            assert_eq!(Some(first.unwrap()), lock.state().await.unwrap().fence);
            assert!(second.unwrap());
            assert_eq!(lock.lock_count().await.unwrap(), 2);
            assert_eq!(lock_core::watched_holds(&shared), 1);
            lock.unlock().await.unwrap();
            tokio::time::sleep(SEVERAL_LEASES).await;
            assert!(!another_owner_gets(&lock).await);
            lock.unlock().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
            assert_renewals_stopped(&counting, &shared, &name).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_lost_handle_lock_is_seen_without_a_guard_and_reported_by_unlock() {
            let (_, shared, bare) = short_default_lease_backend_and_bare();
            let name = key("hz-lost");
            let lock = Lock::with_backend(name.as_str(), &shared);

            // Taken away behind the watchdog's back (the bare backend is another identity):
            // its next renewal finds the hold gone.
            lock.lock().await.unwrap();
            assert!(!lock.is_lease_lost());
            assert!(Lock::with_backend(name.as_str(), &bare)
                .force_unlock()
                .await
                .unwrap());
            let start = __Instant::now();
            while !lock.is_lease_lost() {
                assert!(start.elapsed() < LIVENESS, "the loss was never noticed");
                tokio::time::sleep(__Duration::from_millis(10)).await;
            }
            assert!(!lock.is_renewed());
            let other = lock.clone().exp(30);
            let (took, release) = (
                tokio::sync::oneshot::channel(),
                tokio::sync::oneshot::channel::<()>(),
            );
            let new_holder = tokio::spawn(async move {
                let guard = other.acquire().await.unwrap();
                took.0.send(()).unwrap();
                release.1.await.unwrap();
                guard.is_held().await.unwrap()
            });
            took.1.await.unwrap();
            let err = lock.unlock().await.unwrap_err();
            assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            assert!(
                lock.is_locked().await.unwrap(),
                "the lost hold's unlock freed the new one"
            );
            assert!(!lock.is_lease_lost(), "unlocked: nothing left to be lost");
            assert!(matches!(
                lock.unlock().await,
                Err(LockError::NotOwner { .. })
            ));
            release.0.send(()).unwrap();
            assert!(new_holder.await.unwrap(), "the new holder lost its lock");

            // Force-unlocked through this handle while held twice: lost at once, and each of
            // the two unlocks reports it, leaving the owner's newer hold alone.
            lock.lock().await.unwrap();
            lock.lock().await.unwrap();
            assert!(lock.force_unlock().await.unwrap());
            assert!(lock.is_lease_lost());
            assert_eq!(
                lock_core::watched_holds(&shared),
                0,
                "still renewing a freed hold"
            );
            let newer = lock.clone().exp(30).acquire().await.unwrap();
            for _ in 0..2 {
                let err = lock.unlock().await.unwrap_err();
                assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
                assert!(
                    newer.is_held().await.unwrap(),
                    "a stale unlock freed the newer hold"
                );
            }
            newer.release().await.unwrap();

            // release() reports it too, once.
            lock.lock().await.unwrap();
            lock.force_unlock().await.unwrap();
            let err = lock.release().await.unwrap_err();
            assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            assert!(!lock.release().await.unwrap());
            assert_eq!(lock_core::watched_holds(&shared), 0);
        }

        /// A handle hold with `exp` whose lease ran out: its unlock is fenced like a guard's
        /// release, so it reports the loss and leaves the owner's newer hold alone.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_unlock_of_an_expired_handle_lock_is_lease_lost_and_frees_no_newer_hold() {
            let lock = lock("hz-expired").exp(0.1);
            lock.lock().await.unwrap();
            assert!(
                !lock.is_renewed() && !lock.is_lease_lost(),
                "nobody watches an exp"
            );
            tokio::time::sleep(__Duration::from_millis(250)).await;
            let newer = lock.clone().exp(30).acquire().await.unwrap();
            let err = lock.unlock().await.unwrap_err();
            assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
            assert!(
                newer.is_held().await.unwrap(),
                "a stale unlock freed the newer hold"
            );
            newer.release().await.unwrap();
            // Never expiring, held twice: two unlocks, then the key is free.
            let never = lock.clone().never_expires();
            never.lock().await.unwrap();
            never.lock().await.unwrap();
            never.unlock().await.unwrap();
            assert!(never.is_locked().await.unwrap());
            never.unlock().await.unwrap();
            assert!(!never.is_locked().await.unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handle_lock_is_not_unlocked_by_another_owner_and_stays_renewed() {
            let (counting, shared) = short_default_lease_backend();
            let name = key("hz-other-owner");
            let lock = Lock::with_backend(name.as_str(), &shared);
            lock.lock().await.unwrap();
            let other = lock.clone();
            let (unlocked, released, lost) = tokio::spawn(async move {
                (
                    other.unlock().await,
                    other.release().await,
                    other.is_lease_lost(),
                )
            })
            .await
            .unwrap();
            assert!(
                matches!(unlocked, Err(LockError::NotOwner { .. })),
                "{unlocked:?}"
            );
            assert!(
                matches!(released, Err(LockError::NotOwner { .. })),
                "{released:?}"
            );
            assert!(!lost);
            let other = lock.clone();
            let unlocked = tokio::task::spawn_blocking(move || other.unlock_blocking())
                .await
                .unwrap();
            assert!(
                matches!(unlocked, Err(LockError::NotOwner { .. })),
                "{unlocked:?}"
            );
            tokio::time::sleep(SEVERAL_LEASES).await;
            assert!(lock.is_renewed());
            assert!(!another_owner_gets(&lock).await);
            lock.unlock().await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
            assert_renewals_stopped(&counting, &shared, &name).await;
        }

        /// Handle holds and guards re-entering each other follow the re-entry rule: the key's
        /// lease is never shorter than the longest lease a live hold of it was given. Every
        /// pair with a handle hold on at least one side (a renewed default or short lease, a
        /// long fixed one, never; guards as in the mixed-leases test), either given back first
        /// (for two handle holds, unlock gives back the last-taken, as nested `lock()`/`unlock()`
        /// pairs do): the survivor still holds the key after the short lease has run out several
        /// times, and a handle survivor without `exp` is renewed until its unlock.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn handle_locks_and_guards_re_entering_each_other_keep_the_key_for_the_longest_lease()
        {
            use lock_core::{Lease, LockGuard};
            enum Hold {
                Guard(LockGuard),
                Handle,
            }
            async fn take(lock: &Lock, handle: bool, lease: Lease) -> Hold {
                let lock = lock.clone().lease(lease);
                if handle {
                    lock.lock().await.unwrap();
                    Hold::Handle
                } else {
                    Hold::Guard(lock.acquire().await.unwrap())
                }
            }
            async fn give_back(lock: &Lock, hold: Hold) -> Result<(), LockError> {
                match hold {
                    Hold::Guard(guard) => guard.release().await,
                    Hold::Handle => lock.unlock().await,
                }
            }
            let short = Lease::Renewed(__Duration::from_millis(400));
            let kinds = [
                (
                    "guard-fixed",
                    false,
                    Lease::Fixed(__Duration::from_secs(60)),
                ),
                ("guard-default", false, Lease::Default),
                ("guard-never", false, Lease::Never),
                ("handle-default", true, Lease::Default),
                ("handle-renewed", true, short),
                (
                    "handle-fixed",
                    true,
                    Lease::Fixed(__Duration::from_secs(60)),
                ),
                ("handle-never", true, Lease::Never),
            ];
            let (_, shared) = short_default_lease_backend();
            let mut cases = Vec::new();
            for (outer_name, outer_handle, outer_lease) in kinds {
                for (inner_name, inner_handle, inner_lease) in kinds {
                    if !outer_handle && !inner_handle {
                        continue; // guards only: the mixed-leases test
                    }
                    for outer_survives in [true, false] {
                        if outer_handle && inner_handle && !outer_survives {
                            continue; // unlocks give back the last-taken: as outer-stays
                        }
                        let survivor_lease = if outer_survives {
                            outer_lease
                        } else {
                            inner_lease
                        };
                        let expect_renewed =
                            (if outer_survives {
                                outer_handle
                            } else {
                                inner_handle
                            }) && matches!(survivor_lease, Lease::Default | Lease::Renewed(_));
                        let case = format!(
                            "{outer_name}>{inner_name}/{}",
                            if outer_survives {
                                "outer-stays"
                            } else {
                                "inner-stays"
                            }
                        );
                        let lock = Lock::with_backend(key("hz-mixed"), &shared);
                        cases.push(tokio::spawn(async move {
                            let outer = take(&lock, outer_handle, outer_lease).await;
                            let inner = take(&lock, inner_handle, inner_lease).await;
                            let mut broken = Vec::new();
                            if lock.lock_count().await.unwrap() != 2 {
                                broken.push("not re-entered".to_owned());
                            }
                            // Let every renewed hold renew at least once before one goes.
                            tokio::time::sleep(__Duration::from_millis(500)).await;
                            let (gone, survivor) = if outer_survives {
                                (inner, outer)
                            } else {
                                (outer, inner)
                            };
                            if let Err(err) = give_back(&lock, gone).await {
                                broken.push(format!("first give-back: {err}"));
                            }
                            tokio::time::sleep(__Duration::from_millis(1500)).await;
                            let other = lock.clone();
                            let taken = tokio::spawn(async move {
                                other.try_acquire().await.unwrap().is_some()
                            })
                            .await
                            .unwrap();
                            if taken {
                                broken.push("taken by another owner".to_owned());
                            }
                            let (held, lost) = match &survivor {
                                Hold::Guard(guard) => {
                                    (guard.is_held().await.unwrap(), guard.is_lease_lost())
                                }
                                Hold::Handle => (
                                    lock.is_locked_by_current_owner().await.unwrap(),
                                    lock.is_lease_lost(),
                                ),
                            };
                            if !held || lost {
                                broken.push(format!("survivor held: {held}, lost: {lost}"));
                            }
                            // A handle survivor without exp is renewed as a handle hold;
                            // a guard survivor leaves no handle hold behind.
                            if lock.is_renewed() != expect_renewed {
                                broken.push(format!(
                                    "handle hold renewed: {}, expected {expect_renewed}",
                                    lock.is_renewed()
                                ));
                            }
                            if let Err(err) = give_back(&lock, survivor).await {
                                broken.push(format!("last give-back: {err}"));
                            }
                            if lock.is_locked().await.unwrap() {
                                broken.push("not freed".to_owned());
                            }
                            (case, broken)
                        }));
                    }
                }
            }
            let mut broken = Vec::new();
            for case in cases {
                let (case, problems) = case.await.unwrap();
                if !problems.is_empty() {
                    broken.push(format!("{case}: {}", problems.join(", ")));
                }
            }
            assert!(
                broken.is_empty(),
                "{} of 64 cases broke:\n{}",
                broken.len(),
                broken.join("\n")
            );
            assert_eq!(
                lock_core::watched_holds(&shared),
                0,
                "a renewal entry leaked"
            );
        }

        /// `lock()` cut off at any point (every await point of the acquire gets hit) either took
        /// nothing or completed: after each, the key is free once unlocked, and nothing is left
        /// to renew.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_handle_lock_cut_off_at_any_point_leaves_nothing_held_or_renewed() {
            let (_, shared) = short_default_lease_backend();
            let lock = Lock::with_backend(key("hz-cancel-sweep"), &shared);
            for step in 0..200u64 {
                let cut = tokio::time::timeout(__Duration::from_micros(step * 25), lock.lock());
                if cut.await.is_ok() {
                    lock.unlock().await.unwrap();
                }
                assert!(
                    !lock.is_locked().await.unwrap(),
                    "held after a cut at step {step}"
                );
                assert!(!lock.is_renewed(), "renewed after a cut at step {step}");
            }
            // Cut off while waiting for another owner: takes nothing.
            let holder = lock.clone().exp(30);
            let (took, release) = (
                tokio::sync::oneshot::channel(),
                tokio::sync::oneshot::channel::<()>(),
            );
            let held = tokio::spawn(async move {
                let guard = holder.acquire().await.unwrap();
                took.0.send(()).unwrap();
                release.1.await.unwrap();
                guard.release().await.unwrap();
            });
            took.1.await.unwrap();
            let cut = tokio::time::timeout(__Duration::from_millis(100), lock.lock());
            assert!(cut.await.is_err(), "lock() got a held lock");
            assert!(!lock.is_renewed());
            release.0.send(()).unwrap();
            held.await.unwrap();
            assert!(!lock.is_locked().await.unwrap());
            assert_eq!(
                lock_core::watched_holds(&shared),
                0,
                "a renewal entry leaked"
            );
        }

        /// Unlocks land at every phase of the renewal cycle (renewals every 1/6 s): none leaves a
        /// renewal behind that could keep a later hold alive.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unlock_racing_the_watchdogs_renewal_leaves_nothing_renewed() {
            let (counting, shared) = short_default_lease_backend();
            let name = key("hz-unlock-race");
            let lock = Lock::with_backend(name.as_str(), &shared);
            for round in 0..24u64 {
                lock.lock().await.unwrap();
                tokio::time::sleep(__Duration::from_millis(round * 13 % 170)).await;
                lock.unlock().await.unwrap();
                assert!(!lock.is_renewed(), "round {round}");
            }
            assert!(counting.renewals(&name) > 0, "no renewal to race with");
            assert!(!lock.is_locked().await.unwrap());
            assert_renewals_stopped(&counting, &shared, &name).await;
            // A new holder with a short fixed lease: a stale renewal would keep it alive.
            let other = lock.clone().exp(0.3);
            tokio::spawn(async move { other.lock().await.unwrap() })
                .await
                .unwrap();
            tokio::time::sleep(__Duration::from_millis(700)).await;
            assert!(
                !lock.is_locked().await.unwrap(),
                "something renewed the new hold"
            );
        }
    };
}
