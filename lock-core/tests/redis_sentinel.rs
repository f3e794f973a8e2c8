//! The Redis backend behind Sentinel, against real servers: a master, a replica and three
//! sentinels per set (support/sentinel.rs). The whole conformance suite runs on a shared set
//! through the `redis+sentinel://` URL form, and once more with `wait_replicas`; failovers and
//! credentials get sets of their own.

mod conformance;
mod support;

conformance_suite!(support::sentinel::shared_sentinel_backend());

/// The suite again, with every hold confirmed by the replica (`wait_replicas(1, 1 s)`).
mod replicated {
    crate::conformance_suite!(crate::support::sentinel::shared_sentinel_replicated_backend());
}

mod sentinel_only {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use lock_core::{Lock, LockError, RedisBackend, RedisConfig, SharedBackend};

    use crate::conformance::{key, LIVENESS};
    use crate::support::sentinel::{
        shared_sentinel, SentinelOptions, SentinelSet, MASTER_NAME, SETTLE,
    };
    use crate::support::{free_port, FreezingProxy};

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

    /// A master demoted without the Sentinels killing its clients (as an operator's `REPLICAOF`
    /// does), while the switch watch has not heard of the switch yet (its Sentinel subscription
    /// is frozen): the slots' connections still go to the old master, whose first answer is
    /// `READONLY`. Each such connection is dropped and the operation sent again, once, to the
    /// master a fresh lookup finds: the caller sees no error.
    #[test]
    fn a_demoted_master_answering_readonly_sends_the_operation_to_the_new_master() {
        let set = SentinelSet::start();
        let old = set.master_port();
        let new = set.other_than(old);
        // One sentinel, behind a proxy that can freeze the watch's subscription. The watch then
        // finds out only after its PING goes unanswered: 1 s + the 10 s command timeout. (Had it
        // found out first, no operation would meet READONLY, and the last check would fail.)
        let proxy = FreezingProxy::start(set.sentinels[0].port);
        let config = RedisConfig::sentinel(MASTER_NAME, [proxy.url()])
            .command_timeout(10)
            .unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let shared = backend.shared();
        let names: Vec<String> = (0..32).map(|i| key(&format!("readonly-{i}"))).collect();
        for name in &names {
            let lock = Lock::with_backend(name.as_str(), &shared).exp(30);
            lock.acquire_blocking().unwrap().release_blocking().unwrap();
        }
        let start = Instant::now();
        while proxy.live_subscribers() == 0 {
            assert!(
                start.elapsed() < LIVENESS,
                "the switch watch never subscribed"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(proxy.freeze_subscribers(), 1);

        set.failover();
        set.wait_until_sentinels_name(new);
        let _: () = redis::cmd("REPLICAOF")
            .arg("127.0.0.1")
            .arg(new)
            .query(&mut set.server_conn(old))
            .unwrap();
        let mut new_master = set.server_conn(new);
        let commands_before: HashMap<String, String> = readonly_errors(&set, old);
        for name in &names {
            let guard = Lock::with_backend(name.as_str(), &shared)
                .exp(30)
                .acquire_blocking()
                .unwrap_or_else(|err| panic!("{name} after the demotion: {err:?}"));
            assert!(exists(&mut new_master, &backend.lock_key(name)));
            guard.release_blocking().unwrap();
        }
        let commands_after = readonly_errors(&set, old);
        assert_ne!(
            commands_before, commands_after,
            "no operation met READONLY on the demoted master: the path was not taken"
        );
    }

    /// The `errorstat_READONLY` line of the server's `INFO errorstats` (how many READONLY
    /// errors it answered).
    fn readonly_errors(set: &SentinelSet, port: u16) -> HashMap<String, String> {
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query(&mut set.server_conn(port))
            .unwrap();
        info.lines()
            .filter(|line| line.starts_with("errorstat_READONLY"))
            .filter_map(|line| line.trim().split_once(':'))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    /// One acquire or its failure, as a load task saw it.
    #[derive(Clone, Debug)]
    struct Attempt {
        key: usize,
        started: Instant,
        done: Instant,
        fence: Option<u64>,
    }

    /// kill -9 of the master while tasks acquire and release contended keys: operations fail
    /// (typed) until the Sentinels promote the replica, then succeed there; a waiter blocked
    /// across the failover is woken by a release on the new master; each key's fences keep
    /// growing in acquisition order across the failover.
    #[test]
    fn a_hard_failover_under_load_recovers_on_the_new_master_with_fences_growing() {
        let mut set = SentinelSet::start();
        let old = set.master_port();
        let new = set.other_than(old);
        let config = set
            .config()
            .command_timeout(1)
            .unwrap()
            .connect_timeout(1)
            .unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let shared = backend.shared();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();

        // A waiter, blocked on a key held (and replicated) from before the failover.
        let contended_name = key("hard-contended");
        let contended = Lock::with_backend(contended_name.as_str(), &shared).exp(60);
        let holder = contended.acquire_blocking().unwrap();
        wait_for_key(&set, new, &backend.lock_key(&contended_name));
        // A waiting acquire returns the first backend error it meets (the subscriber wakes
        // every waiter on each reconnect attempt, and the retry finds no master): the waiter
        // waits again then, as a caller would.
        let waiter = {
            let lock = contended.clone().nowait(false).timeout(60);
            runtime.spawn(async move {
                let mut errors = 0;
                loop {
                    match lock.acquire().await {
                        Ok(guard) => return (guard.fence(), Instant::now(), errors),
                        Err(LockError::Backend { .. }) => errors += 1,
                        Err(err) => panic!("the waiter: {err:?}"),
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };

        const KEYS: usize = 4;
        const TASKS: usize = 4;
        let names: Arc<Vec<String>> =
            Arc::new((0..KEYS).map(|i| key(&format!("hard-{i}"))).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (shared, names, stop, attempts, errors) = (
                    shared.clone(),
                    Arc::clone(&names),
                    Arc::clone(&stop),
                    Arc::clone(&attempts),
                    Arc::clone(&errors),
                );
                runtime.spawn(async move {
                    let mut round = task;
                    while !stop.load(Ordering::Relaxed) {
                        round += 1;
                        let key = round % KEYS;
                        // A short lease: a hold whose release the failover cuts off keeps
                        // its key that long.
                        let lock = Lock::with_backend(names[key].as_str(), &shared)
                            .nowait(false)
                            .timeout(10)
                            .exp(3);
                        let started = Instant::now();
                        let outcome = lock.acquire().await;
                        let done = Instant::now();
                        let fence = match outcome {
                            Ok(guard) => {
                                let fence = guard.fence().0;
                                tokio::time::sleep(Duration::from_millis(2)).await;
                                if let Err(err) = guard.release().await {
                                    errors.lock().unwrap().push(format!("release: {err}"));
                                }
                                Some(fence)
                            }
                            Err(err) => {
                                // A hold whose release the failover cut off keeps its key
                                // until its lease ends: waiting for it may time out.
                                assert!(
                                    matches!(
                                        err,
                                        LockError::Backend { .. } | LockError::TimedOut { .. }
                                    ),
                                    "neither a backend error nor a timeout: {err:?}"
                                );
                                errors.lock().unwrap().push(format!("acquire: {err}"));
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                None
                            }
                        };
                        attempts.lock().unwrap().push(Attempt {
                            key,
                            started,
                            done,
                            fence,
                        });
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let killed_at = Instant::now();
        set.server(old).kill();
        // How long until operations work again: a probe acquires a fresh key every 20 ms (only
        // the new master can answer one sent after the kill).
        let recovered_at = runtime.block_on(async {
            let probe = async {
                let mut round = 0;
                loop {
                    round += 1;
                    let lock = Lock::with_backend(key(&format!("probe-{round}")), &shared);
                    if let Ok(guard) = lock.acquire().await {
                        let at = Instant::now();
                        guard.release().await.unwrap();
                        return at;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(SETTLE, probe)
                .await
                .expect("no operation succeeded within the liveness bound after the kill")
        });
        eprintln!(
            "hard failover: operations succeeded again {:?} after kill -9 of the master \
             ({} errors meanwhile)",
            recovered_at - killed_at,
            errors.lock().unwrap().len()
        );
        assert_eq!(set.wait_for_new_master(old), new);
        std::thread::sleep(Duration::from_secs(1));
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            runtime.block_on(task).unwrap();
        }

        // The hold from before is released by its owner on the new master, and wakes the
        // waiter there.
        let released_at = Instant::now();
        holder.release_blocking().unwrap();
        let (_, woken_at, waiter_errors) = runtime
            .block_on(async { tokio::time::timeout(LIVENESS, waiter).await })
            .expect("the waiter was not woken by the release on the new master")
            .unwrap();
        assert!(woken_at - released_at < LIVENESS);
        eprintln!("hard failover: the waiter met {waiter_errors} backend errors while it waited");

        // Per key, in acquisition order, fences never go back: across the failover too. (Equal
        // ones are a task re-entering its own hold whose release the failover cut off.)
        let attempts = attempts.lock().unwrap().clone();
        let mut crossed = 0;
        for key in 0..KEYS {
            let mut holds: Vec<&Attempt> = attempts
                .iter()
                .filter(|a| a.key == key && a.fence.is_some())
                .collect();
            holds.sort_by_key(|a| a.done);
            for pair in holds.windows(2) {
                assert!(
                    pair[1].fence >= pair[0].fence,
                    "key {key}: fence went from {:?} to {:?}",
                    pair[0],
                    pair[1]
                );
            }
            let before = holds
                .iter()
                .filter(|a| a.done < killed_at)
                .filter_map(|a| a.fence)
                .max();
            let after = holds
                .iter()
                .filter(|a| a.started > killed_at)
                .filter_map(|a| a.fence)
                .min();
            if let (Some(before), Some(after)) = (before, after) {
                assert!(
                    after >= before,
                    "key {key}: fence {after} after the failover, {before} before"
                );
                crossed += 1;
            }
        }
        assert_eq!(
            crossed, KEYS,
            "every key was held before and after the failover"
        );
    }

    /// Master and replica with `requirepass` and `masterauth`, sentinels with `sentinel
    /// auth-pass` and a `requirepass` of their own.
    fn auth_set() -> &'static SentinelSet {
        static SET: std::sync::OnceLock<SentinelSet> = std::sync::OnceLock::new();
        SET.get_or_init(|| {
            SentinelSet::start_with(SentinelOptions {
                server_password: Some("Server-Pw-42".into()),
                sentinel_password: Some("Sentinel-Pw-17".into()),
                ..SentinelOptions::default()
            })
        })
    }

    fn assert_hidden(shown: &str, secrets: &[&str]) {
        for secret in secrets {
            assert!(!shown.contains(secret), "{secret:?} shown: {shown}");
        }
    }

    #[test]
    fn the_masters_password_in_the_url_works_and_is_never_shown() {
        let set = auth_set();
        let config = set.config();
        assert!(set.url().contains("Server-Pw-42"));
        assert_hidden(
            &format!("{} {config:?}", config.redacted_url()),
            &["Server-Pw-42", "Sentinel-Pw-17"],
        );
        let backend = RedisBackend::connect_blocking(config).unwrap();
        assert_hidden(&format!("{backend:?}"), &["Server-Pw-42", "Sentinel-Pw-17"]);
        let name = key("auth");
        let guard = Lock::with_backend(name.as_str(), &backend.shared())
            .exp(30)
            .acquire_blocking()
            .unwrap();
        assert!(exists(
            &mut set.server_conn(set.master_port()),
            &backend.lock_key(&name)
        ));
        guard.release_blocking().unwrap();

        let wrong = set.url().replace("Server-Pw-42", "Wrong-Server-Pw");
        let config = RedisConfig::new(wrong).sentinel_credentials(None, "Sentinel-Pw-17");
        assert_hidden(
            &format!("{} {config:?}", config.redacted_url()),
            &["Wrong-Server-Pw"],
        );
        let err = RedisBackend::connect_blocking(config).unwrap_err();
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
        assert_hidden(
            &crate::support::everything_shown(&err),
            &["Wrong-Server-Pw", "Sentinel-Pw-17"],
        );
        // And with the password given apart from the URL.
        let config = RedisConfig::sentinel(MASTER_NAME, set.sentinel_urls())
            .sentinel_master_credentials(None, "Server-Pw-42")
            .sentinel_credentials(None, "Sentinel-Pw-17");
        let backend = RedisBackend::connect_blocking(config).unwrap();
        drop(
            Lock::with_backend(key("auth-apart"), &backend.shared())
                .acquire_blocking()
                .unwrap(),
        );
    }

    #[test]
    fn sentinels_requiring_a_password_need_sentinel_credentials() {
        let set = auth_set();
        let config = RedisConfig::sentinel(MASTER_NAME, set.sentinel_urls())
            .sentinel_master_credentials(None, "Server-Pw-42")
            .sentinel_credentials(None, "Sentinel-Pw-17");
        assert_hidden(&format!("{config:?}"), &["Server-Pw-42", "Sentinel-Pw-17"]);
        let backend = RedisBackend::connect_blocking(config).unwrap();
        drop(
            Lock::with_backend(key("sentinel-auth"), &backend.shared())
                .acquire_blocking()
                .unwrap(),
        );
        for config in [
            RedisConfig::new(set.url()),
            RedisConfig::new(set.url()).sentinel_credentials(None, "Wrong-Sentinel-Pw"),
        ] {
            let config = config.connect_timeout(2).unwrap();
            let err = RedisBackend::connect_blocking(config).unwrap_err();
            assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
            assert_hidden(
                &crate::support::everything_shown(&err),
                &["Server-Pw-42", "Sentinel-Pw-17", "Wrong-Sentinel-Pw"],
            );
        }
    }

    #[test]
    fn a_bad_master_name_or_no_sentinel_is_a_typed_connection_error_within_the_connect_timeout() {
        let set = shared_sentinel();
        let closed = format!("redis://127.0.0.1:{}", free_port());
        for config in [
            RedisConfig::sentinel("no-such-master", set.sentinel_urls()),
            RedisConfig::new(set.url().replace(MASTER_NAME, "no-such-master")),
            RedisConfig::sentinel(MASTER_NAME, [closed]),
        ] {
            let config = config.connect_timeout(2).unwrap();
            let start = Instant::now();
            let err = RedisBackend::connect_blocking(config).unwrap_err();
            assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
            assert!(
                start.elapsed() < Duration::from_secs(2) + LIVENESS,
                "{:?}",
                start.elapsed()
            );
        }
    }

    /// The pattern of the test of that name in tests/redis.rs, on Sentinel: the guard's task
    /// runs on the runtime the backend's I/O runs on; its shutdown leaves the release to the
    /// synchronous path, which goes to the master last found.
    #[test]
    fn a_guard_dropped_by_the_shutdown_of_the_backends_given_runtime_still_releases() {
        let set = shared_sentinel();
        let observer = crate::support::sentinel::shared_sentinel_backend();
        for shutdown in ["drop", "shutdown_background"].repeat(3) {
            crate::support::assert_the_given_runtimes_shutdown_releases(
                set.config(),
                &observer,
                shutdown,
                &key("given-runtime-shutdown-guard"),
            );
        }
    }
}

mod wait_replicas {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use lock_core::{Lock, LockError, RedisBackend, RedisConfig};

    use crate::conformance::{key, LIVENESS};
    use crate::support::sentinel::{shared_sentinel, SentinelOptions, SentinelSet};
    use crate::support::RedisServer;

    fn exists(conn: &mut redis::Connection, name: &str) -> bool {
        redis::cmd("EXISTS").arg(name).query::<i64>(conn).unwrap() == 1
    }

    fn raw(url: &str) -> redis::Connection {
        redis::Client::open(url).unwrap().get_connection().unwrap()
    }

    #[test]
    fn zero_replicas_or_a_bad_timeout_are_invalid_arguments() {
        for config in [
            RedisConfig::new("redis://x").wait_replicas(0, 1),
            RedisConfig::new("redis://x").wait_replicas(1, 0),
            RedisConfig::new("redis://x").wait_replicas(1, -1.0),
        ] {
            let err = config.unwrap_err();
            assert!(matches!(err, LockError::InvalidArgument { .. }), "{err:?}");
        }
    }

    /// With the replica up, every confirmed write is on the replica when the call returns.
    #[test]
    fn with_a_replica_up_holds_are_on_it_when_acquire_and_extend_return() {
        let set = shared_sentinel();
        let config = set.config().wait_replicas(1, 1).unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let replica = set.other_than(set.master_port());
        let mut on_replica = set.server_conn(replica);
        let name = key("confirmed");
        let lock = Lock::with_backend(name.as_str(), &backend.shared()).exp(30);
        let mut guard = lock.acquire_blocking().unwrap();
        // Not polled: WAIT returned only once the replica had it.
        assert!(exists(&mut on_replica, &backend.lock_key(&name)));
        guard.extend_blocking(60).unwrap();
        let ttl: i64 = redis::cmd("PTTL")
            .arg(backend.lock_key(&name))
            .query(&mut on_replica)
            .unwrap();
        assert!(
            ttl > 30_000,
            "the extension is not on the replica: {ttl} ms"
        );
        guard.release_blocking().unwrap();
        // Renewed holds stay held past their lease.
        let renewed = Lock::with_backend(key("confirmed-renewed"), &backend.shared())
            .renewed_lease(0.6)
            .acquire_blocking()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(!renewed.is_lease_lost());
        assert!(renewed.is_held_blocking().unwrap());
    }

    /// A master with one replica (no Sentinel: `wait_replicas` works on any topology).
    fn master_and_replica() -> (RedisServer, RedisServer) {
        let master = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let port = master.port.to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
        let mut admin = raw(&master.url());
        let start = Instant::now();
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut admin)
                .unwrap();
            // Online, and answering WAIT: the replica acknowledges what it has received.
            let acknowledged: i64 =
                if info.contains("connected_slaves:1") && info.contains("state=online") {
                    redis::cmd("WAIT")
                        .arg(1)
                        .arg(1000)
                        .query(&mut admin)
                        .unwrap()
                } else {
                    0
                };
            if acknowledged == 1 {
                break;
            }
            assert!(
                start.elapsed() < LIVENESS,
                "the replica never synced: {info}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (master, replica)
    }

    /// With the replica gone, an acquire fails typed after about the WAIT timeout, and leaves
    /// nothing held; a re-entry loses only its own count; extend is refused; renewals fail, so
    /// the watchdog declares a renewed hold lost.
    #[test]
    fn with_the_replica_gone_an_acquire_fails_typed_and_leaves_nothing_held() {
        let (master, mut replica) = master_and_replica();
        // Generous: a loaded 2-core machine must still confirm the holds taken before the kill.
        let wait = Duration::from_millis(1000);
        let config = RedisConfig::new(master.url())
            .wait_replicas(1, wait)
            .unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let shared = backend.shared();
        let mut admin = raw(&master.url());
        let reentered_name = key("unconfirmed-reentry");
        let reentered = Lock::with_backend(reentered_name.as_str(), &shared).exp(30);
        let first = reentered.acquire_blocking().unwrap();
        let mut extended = Lock::with_backend(key("unconfirmed-extend"), &shared)
            .exp(30)
            .acquire_blocking()
            .unwrap();
        let renewed = Lock::with_backend(key("unconfirmed-renewed"), &shared)
            .renewed_lease(1)
            .acquire_blocking()
            .unwrap();

        replica.kill();
        let name = key("unconfirmed");
        let lock = Lock::with_backend(name.as_str(), &shared).exp(30);
        let start = Instant::now();
        let err = lock.acquire_blocking().map(drop).unwrap_err();
        let took = start.elapsed();
        eprintln!("wait_replicas: an acquire with the replica gone failed after {took:?}");
        assert!(
            matches!(
                err,
                LockError::NotReplicated {
                    acknowledged: 0,
                    wanted: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.key(), Some(name.as_str()));
        assert!(took >= wait, "{took:?}");
        assert!(took < wait + LIVENESS, "{took:?}");
        assert!(
            !exists(&mut admin, &backend.lock_key(&name)),
            "the unconfirmed acquire was left held"
        );

        // A re-entry gives back only the count it added.
        let err = reentered.acquire_blocking().map(drop).unwrap_err();
        assert!(matches!(err, LockError::NotReplicated { .. }), "{err:?}");
        assert_eq!(reentered.lock_count_blocking().unwrap(), 1);
        first.release_blocking().unwrap();
        assert!(!exists(&mut admin, &backend.lock_key(&reentered_name)));

        let err = extended.extend_blocking(60).unwrap_err();
        assert!(matches!(err, LockError::NotReplicated { .. }), "{err:?}");

        let start = Instant::now();
        while !renewed.is_lease_lost() {
            assert!(
                start.elapsed() < LIVENESS,
                "unconfirmed renewals did not count as failed"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One run of the failover measurement: tasks acquire holds (each its own key, a long lease)
    /// while the replica's replication link is first open, then held back (a frozen proxy
    /// between replica and master: the master still acknowledges writes), then the master is
    /// killed and Sentinel promotes the replica. Returns (holds acknowledged, of them missing on
    /// the new master, acquires refused as unconfirmed, of them found held on the new master).
    fn holds_lost_in_a_failover(wait: bool) -> (usize, usize, usize, usize) {
        let mut set = SentinelSet::start_with(SentinelOptions {
            replicate_through_proxy: true,
            // The sentinels would otherwise re-point the replica at the master's own address
            // (it replicates from the proxy's) a failover timeout after they first see it.
            failover_timeout_ms: 60_000,
            ..SentinelOptions::default()
        });
        let old = set.master_port();
        let new = set.other_than(old);
        let mut config = set.config().command_timeout(2).unwrap();
        if wait {
            config = config.wait_replicas(1, 0.2).unwrap();
        }
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let shared = backend.shared();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged: Arc<Mutex<Vec<(String, lock_core::LockGuard)>>> = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let tasks: Vec<_> = (0..8)
            .map(|task| {
                let (shared, stop, acknowledged, refused) = (
                    shared.clone(),
                    Arc::clone(&stop),
                    Arc::clone(&acknowledged),
                    Arc::clone(&refused),
                );
                runtime.spawn(async move {
                    let mut round = 0;
                    while !stop.load(Ordering::Relaxed) {
                        round += 1;
                        let name = key(&format!("measure-{task}-{round}"));
                        let lock = Lock::with_backend(name.as_str(), &shared).exp(120);
                        match lock.acquire().await {
                            Ok(guard) => acknowledged.lock().unwrap().push((name, guard)),
                            Err(LockError::NotReplicated { .. }) => {
                                refused.lock().unwrap().push(name)
                            }
                            // The master is gone.
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let frozen = set.proxy.as_ref().unwrap().freeze_all();
        assert!(frozen >= 1, "no replication link to hold back");
        std::thread::sleep(Duration::from_millis(700));
        set.server(old).kill();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            runtime.block_on(task).unwrap();
        }
        assert_eq!(set.wait_for_new_master(old), new);
        let mut on_new = set.server_conn(new);
        let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
        let refused = std::mem::take(&mut *refused.lock().unwrap());
        let lost = acknowledged
            .iter()
            .filter(|(name, _)| !exists(&mut on_new, &backend.lock_key(name)))
            .count();
        let resurrected = refused
            .iter()
            .filter(|name| exists(&mut on_new, &backend.lock_key(name)))
            .count();
        let counts = (acknowledged.len(), lost, refused.len(), resurrected);
        // The guards' releases go to the new master (or find their hold gone).
        drop(acknowledged);
        counts
    }

    /// Prints how many acknowledged holds a failover loses without and with `wait_replicas`;
    /// asserts only that with it none is lost.
    #[test]
    fn acknowledged_holds_lost_in_a_failover_without_and_with_wait_replicas() {
        let (acknowledged, lost, _, _) = holds_lost_in_a_failover(false);
        eprintln!(
            "failover without wait_replicas: {lost} of {acknowledged} acknowledged holds missing \
             on the new master"
        );
        let (acknowledged, lost, refused, resurrected) = holds_lost_in_a_failover(true);
        eprintln!(
            "failover with wait_replicas(1, 200 ms): {lost} of {acknowledged} acknowledged holds \
             missing on the new master; {refused} acquires refused as unconfirmed (undone), \
             {resurrected} of them held on the new master anyway (the acquire reached the \
             replica, its undo did not: a hold nobody owns until its lease ends)"
        );
        assert!(acknowledged > 0, "nothing was acknowledged");
        assert_eq!(lost, 0, "wait_replicas let acknowledged holds be lost");
    }
}
