//! The conformance suite and the Redis-only guarantees, against a real redis-server.

mod conformance;
mod support;

conformance_suite!(
    support::shared_redis_backend(),
    pool_entries = redis_pool_entries
);

/// What the shared server keeps for the pool `pool` that it should not: its slots' sorted set
/// (gone with the last slot), and its meta key if it has no TTL (the meta outlives the slots
/// only for the fence counter TTL, for the slot tokens). The names are the key layout's
/// (`RedisBackend`'s rustdoc): the lock's name and `:pool`, `:pool-meta`.
fn redis_pool_entries(_backend: &lock_core::SharedBackend, pool: &str) -> Option<usize> {
    let (server, redis) = support::shared_redis();
    let mut conn = redis::Client::open(server.url())
        .and_then(|client| client.get_connection())
        .expect("raw redis connection");
    let slots = format!("{}:pool", redis.lock_key(pool));
    let meta = format!("{}:pool-meta", redis.lock_key(pool));
    let slots_left: usize = redis::cmd("EXISTS").arg(&slots).query(&mut conn).unwrap();
    let meta_ttl: i64 = redis::cmd("PTTL").arg(&meta).query(&mut conn).unwrap();
    // PTTL: -2 no key, -1 no expiry.
    Some(slots_left + usize::from(meta_ttl == -1))
}

mod redis_only {
    use std::time::{Duration, Instant};

    use lock_core::{Lock, LockError, RedisBackend, RedisConfig};

    use crate::conformance::key;
    use crate::support::{shared_redis, RedisServer};

    fn redis_client(url: &str) -> redis::Connection {
        redis::Client::open(url)
            .and_then(|client| client.get_connection())
            .expect("raw redis connection")
    }

    /// The harness's own start-up: a port found free that another process binds before the
    /// server does (seen in CI: a cluster node's bus port taken) is picked again, instead of
    /// failing the test.
    #[test]
    fn the_harness_picks_another_port_when_a_picked_one_was_taken_meanwhile() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_port = taken.local_addr().unwrap().port();
        let picks = std::sync::atomic::AtomicUsize::new(0);
        let server = RedisServer::start_on_picked(
            || match picks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) {
                0 => taken_port,
                _ => crate::support::free_port(),
            },
            |_| Vec::new(),
        );
        assert_ne!(server.port, taken_port);
        assert_eq!(picks.load(std::sync::atomic::Ordering::Relaxed), 2);
        drop(taken);
    }

    /// Any handle on the key and backend may unlock a `lock()` (as any Hazelcast proxy of a
    /// name may): one taken through one `shared()` handle of a backend is renewed, seen and
    /// unlocked through another, and leaves nothing to renew behind.
    #[test]
    fn a_handle_lock_is_renewed_and_unlocked_through_another_handle_of_the_same_backend() {
        let config = RedisConfig::new(shared_redis().0.url())
            .default_lease(0.3)
            .unwrap();
        let redis = RedisBackend::connect_blocking(config).unwrap();
        let (one, two) = (redis.shared(), redis.shared());
        assert!(!std::sync::Arc::ptr_eq(&one, &two));
        let name = key("hz-other-handle");
        Lock::with_backend(name.as_str(), &one)
            .lock_blocking()
            .unwrap();
        let through_two = Lock::with_backend(name.as_str(), &two);
        assert!(through_two.is_renewed());
        assert_eq!(lock_core::watched_holds(&two), 1);
        std::thread::sleep(Duration::from_millis(1000));
        let other = through_two.clone();
        let taken = std::thread::spawn(move || other.try_acquire_blocking().unwrap().is_some());
        assert!(!taken.join().unwrap(), "the renewed hold expired");
        through_two.unlock_blocking().unwrap();
        assert!(!Lock::with_backend(name.as_str(), &one)
            .is_locked_blocking()
            .unwrap());
        assert_eq!(lock_core::watched_holds(&one), 0);
    }

    #[test]
    fn unreachable_server_is_a_fast_typed_connection_error() {
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = RedisConfig::new(format!("redis://127.0.0.1:{closed_port}"))
            .connect_timeout(2)
            .unwrap();
        let start = Instant::now();
        let err = RedisBackend::connect_blocking(config).unwrap_err();
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn malformed_urls_are_typed_connection_errors() {
        for url in [
            "",
            "not a url",
            "http://127.0.0.1:6379",
            "redis://:99999999",
        ] {
            let err = RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap_err();
            assert!(
                matches!(err, LockError::Connection { .. }),
                "{url}: {err:?}"
            );
        }
    }

    #[test]
    fn a_rediss_url_where_no_tls_server_listens_is_a_typed_connection_error() {
        // TLS is built in (tests/redis_tls.rs): a `rediss://` URL is read, and connecting fails
        // for what is at the other end. Nothing listening:
        let closed = format!("rediss://127.0.0.1:{}", closed_loopback_port());
        let err = RedisBackend::connect_blocking(RedisConfig::new(closed.as_str())).unwrap_err();
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
        assert!(
            crate::support::everything_shown(&err).contains("refused"),
            "{err}"
        );
        // A plain server does not answer the handshake (it waits for the end of an inline
        // command): no answer within the connect timeout.
        let plain = format!("rediss://127.0.0.1:{}", shared_redis().0.port);
        let config = RedisConfig::new(plain.as_str()).connect_timeout(1).unwrap();
        let start = Instant::now();
        let err = RedisBackend::connect_blocking(config).unwrap_err();
        assert!(start.elapsed() < crate::conformance::LIVENESS);
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
    }

    #[test]
    fn a_password_in_the_query_of_a_list_url_never_shows() {
        // The query goes with each data node's URL: never into a host, the master's name, or
        // an error message (it did, before: `"0?password=…" is not a database number`).
        for url in [
            "redis+sentinel://127.0.0.1:1/mymaster/0?password=hunter2",
            "redis+sentinel://127.0.0.1:1/mymaster?password=hunter2",
            "redis+sentinel://127.0.0.1:1/mymaster/x?password=hunter2",
            "redis+cluster://127.0.0.1:1,127.0.0.1:2?password=hunter2",
            "redis+sentinel://127.0.0.1:1/my?password=hunter2/0",
        ] {
            let config = RedisConfig::new(url).connect_timeout(1).unwrap();
            let err = RedisBackend::connect_blocking(config).unwrap_err();
            let shown = format!("{err} | {err:?}");
            assert!(!shown.contains("hunter2"), "{url}: {shown}");
        }
    }

    #[test]
    fn pool_sizes_out_of_range_are_invalid_arguments() {
        let (server, _) = shared_redis();
        for size in [0, RedisConfig::MAX_POOL_SIZE + 1, usize::MAX] {
            let config = RedisConfig::new(server.url()).pool_size(size);
            let err = RedisBackend::connect_blocking(config).unwrap_err();
            assert!(
                matches!(err, LockError::InvalidArgument { .. }),
                "{size}: {err:?}"
            );
        }
        let config = RedisConfig::new(server.url()).pool_size(1);
        assert!(RedisBackend::connect_blocking(config).is_ok());
    }

    #[test]
    fn a_given_runtime_must_be_multi_threaded_with_io_and_time() {
        let (server, _) = shared_redis();
        let current = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = RedisConfig::new(server.url()).runtime(current.handle().clone());
        let err = RedisBackend::connect_blocking(config).unwrap_err();
        assert!(matches!(err, LockError::InvalidArgument { .. }), "{err:?}");
        // No `enable_io` / `enable_time`: tokio panics inside the connect task; we report it.
        let bare = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let config = RedisConfig::new(server.url()).runtime(bare.handle().clone());
        let err = RedisBackend::connect_blocking(config).unwrap_err();
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
    }

    #[test]
    fn tasks_on_the_given_runtime_lock_and_wake_each_other() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let config = RedisConfig::new(shared_redis().0.url()).runtime(runtime.handle().clone());
        runtime.block_on(async {
            let backend = RedisBackend::connect(config).await.unwrap().shared();
            let lock = Lock::with_backend(key("given-runtime"), &backend)
                .exp(30)
                .nowait(false);
            let guard = lock.acquire().await.unwrap();
            let waiter = {
                let lock = lock.clone();
                tokio::spawn(async move {
                    let guard = lock.acquire().await.unwrap();
                    (Instant::now(), guard.fence())
                })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            let fence = guard.fence();
            let released_at = Instant::now();
            guard.release().await.unwrap();
            let (acquired_at, next_fence) = waiter.await.unwrap();
            assert!(next_fence > fence);
            // Woken by the release, not by the 30 s lease running out.
            assert!(acquired_at - released_at < crate::conformance::LIVENESS);
        });
    }

    #[test]
    fn the_blocking_api_works_inside_a_task_of_the_given_runtime() {
        // A sync `#[locked]` function called from async code does this. Parking that worker used
        // to strand the connection's driver task, queued on the same worker: every call ran into
        // the command timeout.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let config = RedisConfig::new(shared_redis().0.url())
            .runtime(runtime.handle().clone())
            .command_timeout(3)
            .unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap().shared();
        let name = key("blocking-in-task");
        runtime.block_on(async move {
            let lock = Lock::with_backend(name.as_str(), &backend).exp(30);
            tokio::spawn(async move {
                for _ in 0..20 {
                    let start = Instant::now();
                    let guard = lock.acquire_blocking().unwrap();
                    assert!(lock.is_locked_blocking().unwrap());
                    guard.release_blocking().unwrap();
                    assert!(
                        start.elapsed() < Duration::from_secs(2),
                        "{:?}",
                        start.elapsed()
                    );
                }
            })
            .await
            .unwrap();
        });
    }

    #[test]
    fn operations_fail_typed_once_the_given_runtime_has_shut_down() {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let config = RedisConfig::new(shared_redis().0.url()).runtime(runtime.handle().clone());
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let lock = Lock::with_backend(key("runtime-gone"), &backend.shared()).exp(30);
        drop(lock.acquire_blocking().unwrap());
        assert!(!lock.is_locked_blocking().unwrap());
        let held = lock.acquire_blocking().unwrap();
        drop(runtime);
        // The guard's release cannot run any more; it must not leave later operations on the
        // key waiting for it.
        drop(held);
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let errors = [
                lock.acquire_blocking().map(drop).unwrap_err(),
                lock.is_locked_blocking().map(drop).unwrap_err(),
                lock.force_unlock_blocking().map(drop).unwrap_err(),
            ];
            sender.send(errors).unwrap();
        });
        let errors = receiver
            .recv_timeout(crate::conformance::LIVENESS)
            .expect("operations after the runtime shut down must fail, not hang");
        for err in errors {
            assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
        }
    }

    /// The clients of a dedicated server other than `admin` itself, from `CLIENT LIST`.
    fn other_clients(admin: &mut redis::Connection) -> Vec<String> {
        let me: i64 = redis::cmd("CLIENT").arg("ID").query(admin).unwrap();
        let list: String = redis::cmd("CLIENT").arg("LIST").query(admin).unwrap();
        list.lines()
            .filter(|line| !line.starts_with(&format!("id={me} ")))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_dropped_backend_on_a_given_runtime_closes_its_subscriber_and_connections() {
        // The runtime keeps running after the backend is dropped: nothing of the backend may
        // stay on it (its PSUBSCRIBE task awaited messages forever).
        let server = RedisServer::start();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let mut admin = redis_client(&server.url());
        let config = RedisConfig::new(server.url()).runtime(runtime.handle().clone());
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let lock = Lock::with_backend(key("dropped-backend"), &backend.shared()).exp(30);
        drop(lock.acquire_blocking().unwrap());
        let start = Instant::now();
        while !other_clients(&mut admin)
            .iter()
            .any(|client| client.contains("cmd=psubscribe"))
        {
            assert!(
                start.elapsed() < crate::conformance::LIVENESS,
                "no subscriber"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(lock);
        drop(backend);
        let start = Instant::now();
        loop {
            let left = other_clients(&mut admin);
            if left.is_empty() {
                break;
            }
            assert!(
                start.elapsed() < crate::conformance::LIVENESS,
                "connections of a dropped backend still open: {left:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_guard_dropped_by_the_shutdown_of_the_backends_given_runtime_still_releases() {
        // The guard's task runs on the runtime the backend's I/O runs on: when it shuts down,
        // the drop release finds no live runtime to run on, and must still happen (the hold
        // never expires). Rounds of each way a runtime shuts down: the order in which it drops
        // its tasks varies, so the backend either already knows its runtime is gone or finds it
        // only when its release, spawned there, is dropped at once (both are taken in 20 rounds).
        let observer = shared_redis().1.shared();
        for shutdown in ["drop", "shutdown_background"].repeat(10) {
            crate::support::assert_the_given_runtimes_shutdown_releases(
                RedisConfig::new(shared_redis().0.url()),
                &observer,
                shutdown,
                &key("given-runtime-shutdown-guard"),
            );
        }
    }

    #[test]
    fn wrong_password_is_a_typed_error_that_never_shows_the_password() {
        let server = RedisServer::start_with(&["--requirepass", "right-password"]);
        let url = format!("redis://:wrong-password@127.0.0.1:{}", server.port);
        let err = RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap_err();
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("wrong-password"), "{shown}");

        let url = format!("redis://:right-password@127.0.0.1:{}", server.port);
        let backend = RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap();
        assert!(!format!("{backend:?}").contains("right-password"));
        let lock = Lock::with_backend(key("auth"), &backend.shared());
        let guard = lock.acquire_blocking().unwrap();
        // The handle and its guard show their backend too (through the key and backend they
        // share): redacted there as well.
        let shown = format!("{lock:?} {guard:?}");
        assert!(shown.contains("RedisBackend"), "{shown}");
        assert!(!shown.contains("right-password"), "{shown}");
        drop(guard);
    }

    /// A port on the loopback interface that nothing listens on (connecting is refused at once).
    fn closed_loopback_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// What a config and a failed connect with `url` show: `redacted_url()`, `Debug` of the config
    /// and, when connecting cannot reach anything but `closed_port` on the loopback interface or a
    /// Unix socket, the connect error's Display, Debug and source chain.
    fn shown_for(url: &str, closed_port: u16) -> Vec<(&'static str, String)> {
        let config = RedisConfig::new(url)
            .connect_timeout(Duration::from_millis(500))
            .unwrap();
        let mut shown = vec![
            ("redacted_url()", config.redacted_url()),
            ("Debug of the config", format!("{config:?}")),
        ];
        // Never connect anywhere else (a password with `@` can move the host part).
        let reachable = match redis::IntoConnectionInfo::into_connection_info(url) {
            Ok(info) => match info.addr {
                redis::ConnectionAddr::Tcp(host, port) => {
                    port == closed_port
                        && host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                }
                redis::ConnectionAddr::Unix(_) => true,
                _ => false,
            },
            Err(_) => true, // the backend refuses it before connecting
        };
        if reachable {
            match RedisBackend::connect_blocking(config) {
                Err(err) => {
                    assert!(
                        matches!(err, LockError::Connection { .. }),
                        "{url}: {err:?}"
                    );
                    shown.push(("the connect error", crate::support::everything_shown(&err)));
                }
                Ok(backend) => panic!("{url}: connected to {backend:?}"),
            }
        }
        shown
    }

    #[test]
    fn passwords_that_stop_url_parsing_are_still_hidden() {
        let closed_port = closed_loopback_port();
        for (url, expected) in [
            ("redis://:s3c?ret@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://app:pa/ss@h:6379", "redis://app:***@h:6379"),
            // Ordinary URLs keep everything but the password.
            ("redis://app:pw@h:6379/0", "redis://app:***@h:6379/0"),
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("unix:///run/redis.sock?db=1", "unix:///run/redis.sock?db=1"),
            // Over-redacted rather than parsed: a user alone, a query password's `@`.
            ("redis://app@h", "redis://***@h"),
            ("redis+unix:///s?pass=a@b", "redis+unix://***"),
        ] {
            assert_eq!(RedisConfig::new(url).redacted_url(), expected);
        }
        for (url, secrets) in [
            (
                format!("redis://:s3c?ret@127.0.0.1:{closed_port}/0"),
                ["s3c?ret", "s3c"],
            ),
            (
                format!("redis://app:pa/ss@127.0.0.1:{closed_port}"),
                ["pa/ss", "pa/"],
            ),
            (
                "redis+unix:///tmp/lockwright-no.sock?db=0&pass=s3c&ret#x".to_owned(),
                ["s3c&ret#x", "s3c"],
            ),
            // redis-rs quotes a bad `protocol` value in its error: here it holds the password.
            (
                format!("redis://127.0.0.1:{closed_port}/?protocol=resp3?pass=s3c"),
                ["pass=s3c", "s3c"],
            ),
        ] {
            for (what, shown) in shown_for(&url, closed_port) {
                for secret in secrets {
                    assert!(
                        !shown.contains(secret),
                        "{url}: {what} shows {secret:?}: {shown}"
                    );
                }
            }
        }
        assert_eq!(
            RedisConfig::new("redis+unix:///s?db=0&pass=a&b#c").redacted_url(),
            "redis+unix:///s?db=0&pass=***"
        );
    }

    #[test]
    fn passwords_never_appear_whatever_characters_they_contain() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let closed_port = closed_loopback_port();
        let alphabet: Vec<char> = "?/#@:% é日aZ09&=".chars().collect();
        let generated = proptest::collection::vec(proptest::sample::select(alphabet), 1..12)
            .prop_map(|chars| chars.into_iter().collect::<String>());
        let mut runner = TestRunner::new(Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        });
        runner
            .run(&generated, |generated| {
                // Distinctive ends: no other text shows `Pw` or `Zz`, so seeing either means
                // some of the password leaked, in whatever encoding.
                let password = format!("Pw{generated}Zz");
                for url in [
                    format!("redis://user:{password}@127.0.0.1:{closed_port}/0"),
                    format!("redis://:{password}@127.0.0.1:{closed_port}"),
                    format!("redis+unix:///tmp/lockwright-no-such.sock?pass={password}"),
                ] {
                    for (what, shown) in shown_for(&url, closed_port) {
                        for secret in [password.as_str(), "Pw", "Zz"] {
                            prop_assert!(
                                !shown.contains(secret),
                                "{url}: {what} shows {secret:?}: {shown}"
                            );
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn unix_socket_urls_work() {
        let dir = std::env::temp_dir().join(format!("lockwright-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let socket_arg = socket.display().to_string();
        let _server = RedisServer::start_with(&["--unixsocket", &socket_arg]);
        for scheme in ["unix", "redis+unix"] {
            let url = format!("{scheme}://{}", socket.display());
            let backend = RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap();
            let lock = Lock::with_backend(key("unix"), &backend.shared());
            let guard = lock.acquire_blocking().unwrap();
            assert!(lock.is_locked_blocking().unwrap());
            drop(guard);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn passwords_in_a_unix_socket_urls_query_are_never_shown() {
        let dir = std::env::temp_dir().join(format!("lockwright-sock-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("redis.sock");
        let socket_arg = socket.display().to_string();
        let _server = RedisServer::start_with(&[
            "--unixsocket",
            &socket_arg,
            "--requirepass",
            "query-secret",
        ]);
        let url = format!("redis+unix://{}?db=0&pass=wrong-secret", socket.display());
        let config = RedisConfig::new(url);
        assert!(!format!("{config:?}").contains("wrong-secret"));
        let err = RedisBackend::connect_blocking(config).unwrap_err();
        assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
        assert!(
            !format!("{err} {err:?}").contains("wrong-secret"),
            "{err:?}"
        );

        let url = format!("redis+unix://{}?pass=query-secret", socket.display());
        let backend = RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap();
        assert!(!format!("{backend:?}").contains("query-secret"));
        drop(
            Lock::with_backend(key("unix-pw"), &backend.shared())
                .acquire_blocking()
                .unwrap(),
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Re-entry is the owner's, whichever backend instance on the same server (and prefix) it
    /// goes through: the holds a backend knows of (which tell a re-entry from a hold Redis
    /// brought back) are shared by every backend of the process.
    #[test]
    fn an_owner_re_enters_through_another_backend_instance_on_the_same_server() {
        let (server, _) = shared_redis();
        let first = RedisBackend::connect_blocking(RedisConfig::new(server.url()))
            .unwrap()
            .shared();
        let second = RedisBackend::connect_blocking(RedisConfig::new(server.url()))
            .unwrap()
            .shared();
        let name = key("two-instances");
        let outer = Lock::with_backend(name.as_str(), &first)
            .acquire_blocking()
            .unwrap();
        let inner = Lock::with_backend(name.as_str(), &second)
            .acquire_blocking()
            .unwrap();
        assert_eq!(inner.hold_count_at_acquire(), 2, "not a re-entry");
        assert_eq!(inner.fence(), outer.fence());
        inner.release_blocking().unwrap();
        outer.release_blocking().unwrap();
    }

    #[test]
    fn keys_follow_the_documented_layout_with_one_hash_tag_per_lock() {
        let (server, backend) = shared_redis();
        let name = key("layout");
        let lock = Lock::with_backend(name.as_str(), &backend.shared()).never_expires();
        let guard = lock.acquire_blocking().unwrap();
        let mut raw = redis_client(&server.url());
        let lock_key = format!("lockwright:{{{name}}}");
        assert_eq!(backend.lock_key(&name), lock_key);
        let fence: u64 = redis::cmd("GET")
            .arg(format!("{lock_key}:fence"))
            .query(&mut raw)
            .unwrap();
        assert_eq!(fence, guard.fence().0);
        let owner = lock_core::Owner::current();
        let value: String = redis::cmd("GET").arg(&lock_key).query(&mut raw).unwrap();
        assert_eq!(value, format!("{owner}:{fence}:1"));
        let again = lock.acquire_blocking().unwrap();
        let value: String = redis::cmd("GET").arg(&lock_key).query(&mut raw).unwrap();
        assert_eq!(
            value,
            format!("{owner}:{fence}:2"),
            "re-entry counts in the value"
        );
        drop(again);
        // Another owner's failed try marks the lock as waited on, so the release publishes.
        let other = std::thread::scope(|scope| {
            scope
                .spawn(|| lock.try_acquire_blocking().unwrap().is_none())
                .join()
                .unwrap()
        });
        assert!(other);
        let value: String = redis::cmd("GET").arg(&lock_key).query(&mut raw).unwrap();
        assert_eq!(value, format!("{owner}:{fence}:1:w"));
        drop(guard);
        let exists: bool = redis::cmd("EXISTS").arg(&lock_key).query(&mut raw).unwrap();
        assert!(!exists, "a released lock leaves no lock key");
    }

    #[test]
    fn releases_publish_the_wake_up_only_when_an_acquire_found_the_lock_held() {
        let (server, backend) = shared_redis();
        let name = key("publish");
        let channel = format!("lockwright:{{{name}}}:free");
        let mut subscriber = redis_client(&server.url());
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(&channel).unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let lock = Lock::with_backend(name.as_str(), &backend.shared()).exp(30);
        // Uncontended: no message.
        lock.acquire_blocking().unwrap().release_blocking().unwrap();
        assert!(
            pubsub.get_message().is_err(),
            "an uncontended release published"
        );
        // Someone found it held: the release publishes.
        let guard = lock.acquire_blocking().unwrap();
        let other = lock.clone();
        let refused = std::thread::spawn(move || other.try_acquire_blocking().unwrap())
            .join()
            .unwrap();
        assert!(refused.is_none());
        guard.release_blocking().unwrap();
        let message = pubsub
            .get_message()
            .expect("the release published a wake-up");
        assert_eq!(message.get_channel_name(), channel);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn script_cache_flushed_mid_run_is_reloaded() {
        // Its own server: a flush makes the first call of each script retry, which would
        // disturb the ordering other tests rely on.
        let server = RedisServer::start();
        let backend = RedisBackend::connect(RedisConfig::new(server.url()))
            .await
            .unwrap();
        let lock = Lock::with_backend(key("flush"), &backend.shared());
        drop(lock.acquire().await.unwrap().release().await);
        let _: () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query(&mut redis_client(&server.url()))
            .unwrap();
        let guard = lock.acquire().await.unwrap();
        assert!(lock.is_locked().await.unwrap());
        assert_eq!(lock.lock_count().await.unwrap(), 1);
        guard.release().await.unwrap();
        assert!(!lock.force_unlock().await.unwrap());
    }

    #[test]
    fn blocking_api_works_inside_a_current_thread_runtime() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (_, backend) = shared_redis();
        let lock = Lock::with_backend(key("nested"), &backend.shared());
        runtime.block_on(async {
            let guard = lock.acquire_blocking().unwrap();
            assert!(lock.is_locked_blocking().unwrap());
            guard.release_blocking().unwrap();
            let guard = lock.acquire().await.unwrap();
            drop(guard);
        });
        // The drop above ran inside the runtime, so its release may still be in flight: the next
        // operation on the key is ordered after it.
        assert!(!lock.is_locked_blocking().unwrap());
    }

    #[test]
    fn server_restart_gives_typed_errors_then_recovers() {
        let mut server = RedisServer::start();
        let config = RedisConfig::new(server.url())
            .command_timeout(1)
            .unwrap()
            .connect_timeout(1)
            .unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let lock = Lock::with_backend(key("restart"), &backend.shared());
        drop(lock.acquire_blocking().unwrap());
        server.kill();
        let start = Instant::now();
        let err = lock.acquire_blocking().unwrap_err();
        assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(10);
        let guard = loop {
            match lock.acquire_blocking() {
                Ok(guard) => break guard,
                Err(err) if Instant::now() < deadline => {
                    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => panic!("no recovery after restart: {err}"),
            }
        };
        assert!(lock.is_locked_blocking().unwrap());
        drop(guard);
        assert!(!lock.is_locked_blocking().unwrap());
    }

    /// Waiters share the backend's one subscriber connection: twenty waiters on twenty keys
    /// open no connection of their own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiters_share_one_subscriber_connection() {
        let server = RedisServer::start();
        let backend = RedisBackend::connect(RedisConfig::new(server.url()))
            .await
            .unwrap()
            .shared();
        let mut held = Vec::new();
        let mut waiters = Vec::new();
        for i in 0..20 {
            let lock = Lock::with_backend(key(&format!("sub-{i}")), &backend).exp(30);
            held.push(lock.acquire().await.unwrap());
            let waiter = lock.nowait(false).timeout(30);
            waiters.push(tokio::spawn(
                async move { waiter.acquire().await.map(drop) },
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut raw = redis_client(&server.url());
        let clients: String = redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut raw)
            .unwrap();
        assert_eq!(clients.lines().count(), 1, "{clients}");
        for guard in held {
            guard.release().await.unwrap();
        }
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
    }

    /// A server that hangs (SIGSTOP) instead of dying: operations fail with a typed error
    /// within the command timeout, never hang, and work again once it resumes. An acquire that
    /// timed out may still run when the server resumes; its hold then ends with its lease.
    #[test]
    fn hung_server_gives_typed_errors_within_the_command_timeout_then_recovers() {
        let server = RedisServer::start();
        let config = RedisConfig::new(server.url()).command_timeout(0.5).unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap();
        let lock = Lock::with_backend(key("hung"), &backend.shared()).exp(1);
        drop(lock.acquire_blocking().unwrap());
        let signal = |signal| {
            // SAFETY: kill(2) on the pid of a child process we started.
            assert_eq!(unsafe { libc::kill(server.pid() as i32, signal) }, 0);
        };
        signal(libc::SIGSTOP);
        for attempt in 0..3 {
            let start = Instant::now();
            let err = match attempt {
                0 => lock.acquire_blocking().map(drop).unwrap_err(),
                1 => lock.is_locked_blocking().map(drop).unwrap_err(),
                _ => lock.force_unlock_blocking().map(drop).unwrap_err(),
            };
            assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
            let waited = start.elapsed();
            assert!(
                waited < Duration::from_secs(2),
                "failed after {waited:?} with a 0.5 s command timeout"
            );
        }
        signal(libc::SIGCONT);
        let deadline = Instant::now() + Duration::from_secs(10);
        let guard = loop {
            match lock.acquire_blocking() {
                Ok(guard) => break guard,
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(err) => panic!("no recovery after SIGCONT: {err}"),
            }
        };
        drop(guard);
        // Whatever the timed-out acquire left behind ends with its 1 s lease.
        let deadline = Instant::now() + Duration::from_secs(3);
        while lock.is_locked_blocking().unwrap() {
            assert!(Instant::now() < deadline, "a hold outlived its lease");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Worker process for `locks_exclude_across_processes`: not a test of its own.
    #[test]
    #[ignore = "run as a child process by locks_exclude_across_processes"]
    fn cross_process_worker() {
        let url = std::env::var("LOCKWRIGHT_WORKER_URL").expect("started by the parent test");
        let name = std::env::var("LOCKWRIGHT_WORKER_KEY").unwrap();
        let rounds: u32 = std::env::var("LOCKWRIGHT_WORKER_ROUNDS")
            .unwrap()
            .parse()
            .unwrap();
        let backend = RedisBackend::connect_blocking(RedisConfig::new(url.as_str())).unwrap();
        let lock = Lock::with_backend(name.as_str(), &backend.shared())
            .nowait(false)
            .timeout(30)
            .exp(30);
        let mut raw = redis_client(&url);
        let counter = format!("{name}:counter");
        for _ in 0..rounds {
            let guard = lock.acquire_blocking().unwrap();
            // Read, then write: two round trips that lose updates unless the lock excludes.
            let value: u64 = redis::cmd("GET")
                .arg(&counter)
                .query::<Option<u64>>(&mut raw)
                .unwrap()
                .unwrap_or(0);
            let _: () = redis::cmd("SET")
                .arg(&counter)
                .arg(value + 1)
                .query(&mut raw)
                .unwrap();
            guard.release_blocking().unwrap();
        }
    }

    #[test]
    fn locks_exclude_across_processes() {
        let (server, _) = shared_redis();
        let name = key("cross-process");
        const PROCESSES: u32 = 3;
        const ROUNDS: u32 = 200;
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--ignored",
                        "--exact",
                        "redis_only::cross_process_worker",
                        "--test-threads=1",
                    ])
                    .env("LOCKWRIGHT_WORKER_URL", server.url())
                    .env("LOCKWRIGHT_WORKER_KEY", &name)
                    .env("LOCKWRIGHT_WORKER_ROUNDS", ROUNDS.to_string())
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for mut child in children {
            assert!(child.wait().unwrap().success(), "a worker process failed");
        }
        let total: u64 = redis::cmd("GET")
            .arg(format!("{name}:counter"))
            .query(&mut redis_client(&server.url()))
            .unwrap();
        assert_eq!(total, u64::from(PROCESSES * ROUNDS));
    }
}

mod redis_watchdog {
    use std::time::Duration;

    use lock_core::Lock;

    use crate::conformance::{key, LIVENESS};
    use crate::support::shared_redis;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lost_lease_signal_fires_when_the_key_is_deleted_behind_its_back() {
        let (server, backend) = shared_redis();
        let name = key("deleted");
        let lock = Lock::with_backend(name.as_str(), &backend.shared()).renewed_lease(0.3);
        let guard = lock.acquire().await.unwrap();
        let mut raw = redis::Client::open(server.url())
            .unwrap()
            .get_connection()
            .unwrap();
        let deleted: u32 = redis::cmd("DEL")
            .arg(backend.lock_key(&name))
            .query(&mut raw)
            .unwrap();
        assert_eq!(deleted, 1);
        tokio::time::timeout(LIVENESS, guard.lease_lost())
            .await
            .expect("the lost-lease signal did not fire");
        assert!(guard.is_lease_lost());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renewal_keeps_the_redis_ttl_topped_up() {
        let (_, backend) = shared_redis();
        let lock = Lock::with_backend(key("ttl"), &backend.shared()).renewed_lease(0.6);
        let _guard = lock.acquire().await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let left = lock
                .remaining_lease()
                .await
                .unwrap()
                .as_millis_or_minus_one();
            assert!(left > 0 && left <= 600, "remaining lease {left} ms");
        }
    }

    fn evalsha_calls(url: &str) -> u64 {
        let mut raw = redis::Client::open(url).unwrap().get_connection().unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut raw)
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("cmdstat_evalsha:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse().unwrap())
    }

    #[test]
    fn many_renewed_locks_are_renewed_in_batches_and_stay_held() {
        use lock_core::{RedisBackend, RedisConfig};
        let server = crate::support::RedisServer::start();
        let backend = RedisBackend::connect_blocking(RedisConfig::new(server.url())).unwrap();
        const LOCKS: u64 = 300;
        // Each through its own `shared()` handle: still one backend, one batch.
        let guards: Vec<_> = (0..LOCKS)
            .map(|i| {
                Lock::with_backend(format!("batch-{i}"), &backend.shared())
                    .renewed_lease(0.6)
                    .acquire_blocking()
                    .unwrap()
            })
            .collect();
        let after_acquire = evalsha_calls(&server.url());
        // About six renewal rounds (every 200 ms), well past the 600 ms lease.
        std::thread::sleep(Duration::from_millis(1300));
        let renewal_calls = evalsha_calls(&server.url()) - after_acquire;
        for guard in &guards {
            assert!(guard.is_held_blocking().unwrap(), "{} expired", guard.key());
        }
        // One call per hold per round would be ~1800; batches of up to 256 need ~2 per round.
        assert!(
            renewal_calls < LOCKS,
            "{renewal_calls} renewal calls for {LOCKS} locks"
        );
        assert!(renewal_calls >= 2, "no renewals at all ({renewal_calls})");
    }

    #[test]
    fn backend_default_lease_applies_to_holds_without_exp() {
        use lock_core::{RedisBackend, RedisConfig, RemainingLease};
        let (server, _) = shared_redis();
        let config = RedisConfig::new(server.url()).default_lease(0.5).unwrap();
        let backend = RedisBackend::connect_blocking(config).unwrap().shared();
        let lock = Lock::with_backend(key("backend-default"), &backend);
        let guard = lock.acquire_blocking().unwrap();
        assert!(guard.is_renewed());
        let RemainingLease::Remaining(left) = lock.remaining_lease_blocking().unwrap() else {
            panic!("expected a lease");
        };
        assert!(left <= Duration::from_millis(500), "{left:?}");
        assert!(RedisConfig::new("redis://x").default_lease(0).is_err());
    }
}
