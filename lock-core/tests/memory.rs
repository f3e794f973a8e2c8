//! The conformance suite and the memory-only guarantees, on `MemoryBackend`.

mod conformance;

conformance_suite!(memory_backend(), pool_entries = memory_entries);

/// Every store the suite made, so that [`memory_entries`] finds the one behind a `SharedBackend`.
static MADE: std::sync::Mutex<Vec<std::sync::Weak<lock_core::MemoryBackend>>> =
    std::sync::Mutex::new(Vec::new());

/// A store of its own per call (as `MemoryBackend::shared()`), remembered.
fn memory_backend() -> lock_core::SharedBackend {
    let memory = std::sync::Arc::new(lock_core::MemoryBackend::new());
    let mut made = MADE.lock().unwrap();
    made.retain(|store| store.strong_count() > 0);
    made.push(std::sync::Arc::downgrade(&memory));
    memory
}

/// The entries of the whole store behind `backend` (the pool tests that ask use a store of their
/// own); `None` for a backend this file did not make.
fn memory_entries(backend: &lock_core::SharedBackend, _pool: &str) -> Option<usize> {
    let address = std::sync::Arc::as_ptr(backend) as *const ();
    MADE.lock()
        .unwrap()
        .iter()
        .filter_map(std::sync::Weak::upgrade)
        .find(|store| std::sync::Arc::as_ptr(store) as *const () == address)
        .map(|store| store.entry_count())
}

mod memory_only {
    use std::sync::Arc;
    use std::time::Duration;

    use lock_core::{Lock, MemoryBackend, SharedBackend};

    /// The `Backend` contract: "whenever a key becomes free by `release` or `force_unlock`,
    /// listeners from `Backend::listen` on it are woken". Driven through the `Backend` methods
    /// with a `ManualClock` (as its docs say to): a listener that found the key taken, whose
    /// holder's lease then ran out (the hold swept), sleeps through the release of the next
    /// holder, which nobody else found taken.
    #[test]
    fn a_listener_is_woken_by_the_release_of_a_hold_taken_after_an_expired_one_was_swept() {
        use event_listener::Listener;
        use lock_core::{Backend, ManualClock, Owner, Release, ReleaseScope, TryAcquire};

        let clock = ManualClock::new();
        let backend = MemoryBackend::with_clock(clock.clone());
        let key: Arc<str> = "swept-then-retaken".into();
        let lease = Some(Duration::from_secs(10));
        let (first, second) = (
            std::thread::spawn(Owner::current).join().unwrap(),
            std::thread::spawn(Owner::current).join().unwrap(),
        );
        let me = Owner::current();
        let taken = backend
            .try_acquire_sync(&key, first, lease)
            .unwrap()
            .unwrap();
        assert!(matches!(taken, TryAcquire::Acquired { .. }));
        let listener = backend.listen(&key);
        let found = backend.try_acquire_sync(&key, me, lease).unwrap().unwrap();
        assert!(matches!(found, TryAcquire::Held { .. }));
        clock.advance(Duration::from_secs(11));
        backend.purge_expired();
        let TryAcquire::Acquired { fence, .. } = backend
            .try_acquire_sync(&key, second, lease)
            .unwrap()
            .unwrap()
        else {
            panic!("the expired key was not free");
        };
        let released = crate::conformance::run_without_tokio(backend.release(
            &key,
            second,
            Some(fence),
            ReleaseScope::One,
        ));
        assert_eq!(released.unwrap(), Release::Freed);
        assert!(
            listener.wait_timeout(Duration::from_secs(2)).is_some(),
            "the key was freed by a release and its listener slept through it"
        );
    }

    /// The lock handle passes the backend its own clock reading (it takes one anyway); a backend
    /// on a `ManualClock` must time leases by that clock all the same, on every acquiring path.
    #[test]
    fn a_backend_on_a_manual_clock_times_the_handles_acquires_by_it() {
        use lock_core::ManualClock;

        let clock = ManualClock::new();
        let backend: SharedBackend = Arc::new(MemoryBackend::with_clock(clock.clone()));
        let lease = Duration::from_millis(50);
        let taken_by_other_thread = |lock: Lock| {
            std::thread::spawn(move || lock.try_acquire_blocking().unwrap().map(|g| g.fence()))
                .join()
                .unwrap()
        };
        for renewed in [false, true] {
            let lock = Lock::with_backend(format!("manual-clock-{renewed}"), &backend);
            let lock = if renewed {
                lock.renewed_lease(lease)
            } else {
                lock.exp(lease)
            };
            let guard = lock.acquire_blocking().unwrap();
            // Three leases of real time, none of the backend's.
            std::thread::sleep(3 * lease);
            assert_eq!(
                taken_by_other_thread(lock.clone()),
                None,
                "renewed: {renewed}: a lease ran out by the real clock, not the backend's"
            );
            drop(guard);
        }
        let lock = Lock::with_backend("manual-clock-expiry", &backend).exp(lease);
        std::mem::forget(lock.acquire_blocking().unwrap());
        clock.advance(lease);
        assert!(
            taken_by_other_thread(lock).is_some(),
            "the lease ran out by the backend's clock"
        );
    }

    #[test]
    fn a_million_released_keys_leave_no_entries_behind() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: SharedBackend = memory.clone();
        for i in 0..1_000_000u32 {
            let guard = Lock::with_backend(format!("job-{i}"), &backend)
                .acquire_blocking()
                .unwrap();
            drop(guard);
        }
        assert_eq!(memory.entry_count(), 0);
    }

    #[test]
    fn expired_holds_nobody_touches_again_are_reclaimed() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: SharedBackend = memory.clone();
        for i in 0..5_000 {
            let lock = Lock::with_backend(format!("forgotten-{i}"), &backend).exp(0.05);
            std::mem::forget(lock.acquire_blocking().unwrap());
        }
        assert_eq!(memory.entry_count(), 5_000);
        std::thread::sleep(Duration::from_millis(100));
        // Ordinary traffic on other keys sweeps the expired holds.
        let busy = Lock::with_backend("busy", &backend);
        for _ in 0..6_000 {
            drop(busy.acquire_blocking().unwrap());
        }
        assert_eq!(memory.entry_count(), 0);
    }

    #[test]
    fn expired_pool_slots_nobody_touches_again_are_reclaimed() {
        let memory = Arc::new(MemoryBackend::new());
        let backend: SharedBackend = memory.clone();
        for i in 0..5_000 {
            let pool = lock_core::Pool::with_backend(format!("forgotten-pool-{i}"), 2, &backend);
            std::mem::forget(pool.exp(0.05).acquire_blocking().unwrap());
        }
        assert_eq!(memory.entry_count(), 5_000);
        std::thread::sleep(Duration::from_millis(100));
        // Ordinary traffic on another pool sweeps the expired slots.
        let busy = lock_core::Pool::with_backend("busy-pool", 1, &backend);
        for _ in 0..6_000 {
            drop(busy.acquire_blocking().unwrap());
        }
        assert_eq!(memory.entry_count(), 0);
    }

    /// py-cachify defect 8: its context-manager key `lock('job-{id}')` is never formatted.
    #[test]
    fn a_key_template_is_formatted_from_the_callers_variables() {
        let id = 7;
        let lock = lock_core::lock!("defect8-job-{id}");
        assert_eq!(lock.key(), "defect8-job-7");
        let guard = lock.acquire_blocking().unwrap();
        assert!(Lock::new("defect8-job-7").is_locked_blocking().unwrap());
        assert!(!Lock::new("defect8-job-{id}").is_locked_blocking().unwrap());
        drop(guard);
        assert!(!lock_core::lock!("defect8-job-{}", 7)
            .is_locked_blocking()
            .unwrap());
    }

    #[test]
    fn the_default_global_backend_is_in_memory_and_needs_no_setup() {
        let lock = Lock::new("global-default-key");
        assert!(format!("{:?}", lock.backend()).contains("MemoryBackend"));
        let guard = lock.acquire_blocking().unwrap();
        assert!(Lock::new("global-default-key")
            .is_locked_blocking()
            .unwrap());
        drop(guard);
    }

    /// The memory backend's fences come from one counter per table shard: they must still be
    /// unique across keys (the backend's docs say so) and grow per key, whichever keys share a
    /// shard and in whatever order keys are taken, short keys (stored inline) and long ones.
    #[test]
    fn memory_fences_are_unique_across_keys_and_grow_per_key() {
        use std::collections::{HashMap, HashSet};

        let backend = MemoryBackend::shared();
        let keys: Vec<String> = (0..1_000)
            .map(|i| match i % 2 {
                0 => format!("k{i}"),
                _ => format!("a-key-long-enough-not-to-be-stored-inline-{i}"),
            })
            .collect();
        let mut seen = HashSet::new();
        let mut last: HashMap<&str, u64> = HashMap::new();
        for round in 0..3 {
            let mut held = Vec::new();
            for i in 0..keys.len() {
                // Keys taken in another order each round (7 and 13 are prime to 1,000), a third
                // of them held to the end of the round.
                let key = &keys[(i * 7 + round * 13) % keys.len()];
                let lock = Lock::with_backend(key.as_str(), &backend).exp(60);
                let guard = lock.acquire_blocking().unwrap();
                let fence = guard.fence().0;
                assert!(seen.insert(fence), "fence {fence} handed out twice ({key})");
                if let Some(previous) = last.insert(key, fence) {
                    assert!(fence > previous, "{key}: fence {fence} after {previous}");
                }
                if i % 3 == 0 {
                    held.push(guard);
                }
            }
        }
    }
}
