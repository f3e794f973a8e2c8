//! The Redis backend behind Sentinel, against real servers: a master, a replica and three
//! sentinels per set (support/sentinel.rs). The whole conformance suite runs on a shared set
//! through the `redis+sentinel://` URL form; failovers, credentials and `wait_replicas` get sets
//! of their own.

mod conformance;
mod support;

conformance_suite!(support::sentinel::shared_sentinel_backend());

mod sentinel_only {
    use std::time::{Duration, Instant};

    use lock_core::{Lock, RedisBackend, RedisConfig, SharedBackend};

    use crate::conformance::{key, LIVENESS};
    use crate::support::sentinel::{shared_sentinel, SentinelSet, MASTER_NAME};

    fn exists(conn: &mut redis::Connection, name: &str) -> bool {
        redis::cmd("EXISTS").arg(name).query::<i64>(conn).unwrap() == 1
    }

    /// Waits until the server on `port` has `name` (replicated there).
    fn wait_for_key(set: &SentinelSet, port: u16, name: &str) {
        let mut conn = set.server_conn(port);
        let start = Instant::now();
        while !exists(&mut conn, name) {
            assert!(
                start.elapsed() < LIVENESS,
                "{name} never reached port {port}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_sentinel_form_of_the_config_locks_on_the_master() {
        let set = shared_sentinel();
        let config = RedisConfig::sentinel(MASTER_NAME, set.sentinel_urls());
        assert!(config.redacted_url().contains(MASTER_NAME));
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let name = key("sentinel-form");
        let lock = Lock::with_backend(name.as_str(), &backend.shared()).exp(30);
        let guard = lock.acquire_blocking().unwrap();
        let master = set.master_port();
        assert!(exists(
            &mut set.server_conn(master),
            &backend.lock_key(&name)
        ));
        guard.release_blocking().unwrap();
        assert!(!exists(
            &mut set.server_conn(master),
            &backend.lock_key(&name)
        ));
    }

    /// `SENTINEL FAILOVER`: the old master stays up, and is a master still for a while after the
    /// sentinels name the new one (until they turn it into a replica, a failover timeout or so
    /// later). Every operation issued once the sentinels name the new master must land there,
    /// with at most one error on the way; holds from before the failover are released by their
    /// owners there; a waiter is woken by a release on the new master; the synchronous
    /// last-resort release finds the new master too.
    #[test]
    fn a_graceful_failover_moves_every_operation_to_the_new_master() {
        let set = SentinelSet::start();
        let old = set.master_port();
        let new = set.other_than(old);
        let config = set.config().command_timeout(2).unwrap();
        let backend = RedisBackend::connect_blocking(config.clone()).unwrap();
        let shared: SharedBackend = backend.shared();
        // Every slot connected (to the old master).
        for i in 0..32 {
            let lock = Lock::with_backend(key(&format!("warm-{i}")), &shared).exp(30);
            lock.acquire_blocking().unwrap().release_blocking().unwrap();
        }
        // A hold from before, replicated.
        let before_name = key("before");
        let before = Lock::with_backend(before_name.as_str(), &shared)
            .exp(60)
            .acquire_blocking()
            .unwrap();
        wait_for_key(&set, new, &backend.lock_key(&before_name));
        // A waiter on a held key.
        let contended_name = key("contended");
        let contended = Lock::with_backend(contended_name.as_str(), &shared).exp(60);
        let holder = contended.acquire_blocking().unwrap();
        wait_for_key(&set, new, &backend.lock_key(&contended_name));
        let (woken, waiter_done) = std::sync::mpsc::channel();
        let waiter = contended.clone().nowait(false).timeout(60);
        std::thread::spawn(move || {
            let acquired = waiter.acquire_blocking().map(|guard| guard.fence());
            let _ = woken.send((acquired, Instant::now()));
        });
        // A never-expiring hold of a backend whose I/O runs on a runtime we shut down later:
        // its guard's release then runs synchronously.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let on_runtime = RedisBackend::connect_blocking(config.runtime(runtime.handle().clone()))
            .unwrap()
            .shared();
        let forever_name = key("forever");
        let (acquired, is_acquired) = std::sync::mpsc::channel();
        {
            let lock = Lock::with_backend(forever_name.as_str(), &on_runtime).never_expires();
            runtime.spawn(async move {
                let _guard = lock.acquire().await.unwrap();
                acquired.send(()).unwrap();
                std::future::pending::<()>().await;
            });
        }
        is_acquired.recv_timeout(LIVENESS).unwrap();
        wait_for_key(&set, new, &backend.lock_key(&forever_name));

        set.failover();
        set.wait_until_sentinels_name(new);
        // The sentinels tell their subscribers at the moment they switch; give the message a
        // moment to arrive before checking where operations land.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            set.replication(old).get("role").map(String::as_str),
            Some("master"),
            "the old master should still say it is one right after the switch"
        );

        let mut errors = Vec::new();
        let mut held = Vec::new();
        let mut new_master = set.server_conn(new);
        for i in 0..40 {
            let name = key(&format!("after-{i}"));
            match Lock::with_backend(name.as_str(), &shared)
                .exp(60)
                .acquire_blocking()
            {
                Ok(guard) => {
                    assert!(
                        exists(&mut new_master, &backend.lock_key(&name)),
                        "a hold acquired after the switch is not on the new master: it landed \
                         on the old one ({} errors before it: {errors:?})",
                        errors.len()
                    );
                    held.push(guard);
                }
                Err(err) => errors.push(err),
            }
        }
        // The holds from before are found on the new master by their owners.
        before.release_blocking().unwrap();
        let released_at = Instant::now();
        holder.release_blocking().unwrap();
        let (acquired, woken_at) = waiter_done
            .recv_timeout(LIVENESS)
            .expect("the waiter was not woken by the release on the new master");
        acquired.unwrap();
        assert!(woken_at - released_at < LIVENESS);
        // The synchronous release (no runtime left) goes to the new master too.
        drop(runtime);
        let start = Instant::now();
        while exists(&mut new_master, &backend.lock_key(&forever_name)) {
            assert!(
                start.elapsed() < LIVENESS,
                "the synchronous release did not reach the new master (it never expires)"
            );
            std::thread::sleep(Duration::from_millis(10));
        }

        // Once the sentinels have turned the old master into a replica (killing its clients),
        // operations still work.
        set.wait_replica_of(old, new);
        for guard in held {
            if let Err(err) = guard.release_blocking() {
                errors.push(err);
            }
        }
        for i in 0..20 {
            let lock = Lock::with_backend(key(&format!("late-{i}")), &shared).exp(60);
            match lock.acquire_blocking() {
                Ok(guard) => {
                    assert!(exists(&mut new_master, &backend.lock_key(guard.key())));
                    guard.release_blocking().unwrap();
                }
                Err(err) => errors.push(err),
            }
        }
        eprintln!(
            "graceful failover: {} errors after the switch",
            errors.len()
        );
        assert!(errors.len() <= 1, "errors after the failover: {errors:?}");
        drop(on_runtime);
    }
}
