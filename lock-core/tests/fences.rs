//! Fences when Redis loses the counter, and what Redis keeps: every way a server can lose a key's
//! fence counter (restart without persistence, restart from an older snapshot, `FLUSHALL`,
//! eviction, failover to a replica that lagged), and the bound on the state locks leave behind.
//! Each test runs its own real `redis-server`.

mod conformance;
mod support;

use std::time::{Duration, Instant};

use lock_core::{Fence, Lock, LockError, RedisBackend, RedisConfig, SharedBackend};

use conformance::key;
use support::{raw, RedisServer};

fn backend(url: &str) -> SharedBackend {
    let config = RedisConfig::new(url)
        .command_timeout(1)
        .unwrap()
        .connect_timeout(1)
        .unwrap();
    RedisBackend::connect_blocking(config).unwrap().shared()
}

/// Acquires `name` from a new thread (a new owner), retrying typed backend errors while a
/// restarted server's stale pooled connections are replaced, as an application would.
fn fence_of_next_acquire(backend: &SharedBackend, name: &str) -> Fence {
    let lock = Lock::with_backend(name, backend).exp(30);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match lock.try_acquire_blocking() {
                        Ok(Some(guard)) => return guard.fence(),
                        Ok(None) => panic!("{name} is held by someone else"),
                        Err(LockError::Backend { .. }) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        Err(err) => panic!("no acquire after the fault: {err}"),
                    }
                }
            })
            .join()
            .unwrap()
    })
}

/// Takes and releases `name` a few times, then takes it once more and keeps that hold live (its
/// guard forgotten, as a process that still believes it holds the lock): returns every fence.
fn history_with_a_live_hold(backend: &SharedBackend, name: &str) -> Vec<Fence> {
    let mut fences = Vec::new();
    for _ in 0..3 {
        let guard = Lock::with_backend(name, backend)
            .exp(30)
            .acquire_blocking()
            .unwrap();
        fences.push(guard.fence());
        guard.release_blocking().unwrap();
    }
    let live = Lock::with_backend(name, backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    fences.push(live.fence());
    std::mem::forget(live);
    fences
}

/// The fence counter of `name` on the default prefix (test keys contain no braces).
fn counter_key(name: &str) -> String {
    format!("lockwright:{{{name}}}:fence")
}

fn assert_above_all(fence: Fence, earlier: &[Fence], how: &str) {
    let highest = earlier.iter().max().unwrap();
    assert!(
        fence > *highest,
        "after {how} the next fence was {fence}, not above every earlier fence {earlier:?}"
    );
}

#[test]
fn fences_keep_growing_after_a_restart_without_persistence() {
    let mut server = RedisServer::start();
    let backend = backend(&server.url());
    let name = key("restart");
    let earlier = history_with_a_live_hold(&backend, &name);
    server.restart();
    assert_above_all(
        fence_of_next_acquire(&backend, &name),
        &earlier,
        "a restart",
    );
}

#[test]
fn fences_keep_growing_after_a_restart_from_an_older_snapshot() {
    let mut server = RedisServer::start();
    let backend = backend(&server.url());
    let name = key("snapshot");
    let mut earlier = history_with_a_live_hold(&backend, &name);
    Lock::with_backend(name.as_str(), &backend)
        .force_unlock_blocking()
        .unwrap();
    // The snapshot holds the counter as it is now; more fences are handed out after it.
    let _: () = redis::cmd("SAVE").query(&mut raw(&server.url())).unwrap();
    earlier.extend(history_with_a_live_hold(&backend, &name));
    server.restart(); // kill -9, then start from the snapshot in the same directory
    let counter: Option<u64> = redis::cmd("GET")
        .arg(counter_key(&name))
        .query(&mut raw(&server.url()))
        .unwrap();
    assert!(
        counter.is_some_and(|counter| counter < earlier.last().unwrap().0),
        "the server did not come back with the older counter: {counter:?}"
    );
    assert_above_all(
        fence_of_next_acquire(&backend, &name),
        &earlier,
        "a restart from an older snapshot",
    );
}

#[test]
fn fences_keep_growing_after_flushall() {
    let server = RedisServer::start();
    let backend = backend(&server.url());
    let name = key("flushall");
    let earlier = history_with_a_live_hold(&backend, &name);
    let _: () = redis::cmd("FLUSHALL")
        .query(&mut raw(&server.url()))
        .unwrap();
    assert_above_all(fence_of_next_acquire(&backend, &name), &earlier, "FLUSHALL");
}

#[test]
fn fences_keep_growing_after_the_counter_is_evicted_and_connect_warns_of_the_policy() {
    let server =
        RedisServer::start_with(&["--maxmemory", "4mb", "--maxmemory-policy", "allkeys-random"]);
    support::logs::capture();
    let backend = backend(&server.url());
    let warning =
        support::logs::event_containing("WARN", "maxmemory-policy allkeys-random", Duration::ZERO);
    assert!(
        warning.is_some_and(|warning| warning.contains("noeviction")),
        "no warning naming the eviction policy at connect"
    );

    let name = key("evicted");
    let lock = Lock::with_backend(name.as_str(), &backend).exp(30);
    let mut earlier = Vec::new();
    for _ in 0..3 {
        let guard = lock.acquire_blocking().unwrap();
        earlier.push(guard.fence());
        guard.release_blocking().unwrap();
    }
    let counter_key = counter_key(&name);
    let mut conn = raw(&server.url());
    let filler = "x".repeat(256 * 1024);
    let mut writes = 0;
    while redis::cmd("EXISTS")
        .arg(&counter_key)
        .query::<bool>(&mut conn)
        .unwrap()
    {
        assert!(writes < 5_000, "the counter was never evicted");
        let _: () = redis::cmd("SET")
            .arg(format!("filler-{writes}"))
            .arg(&filler)
            .query(&mut conn)
            .unwrap();
        writes += 1;
    }
    let _: () = redis::cmd("FLUSHDB").query(&mut conn).unwrap(); // room for the next acquire
    assert_above_all(
        fence_of_next_acquire(&backend, &name),
        &earlier,
        "the counter's eviction",
    );
}

#[test]
fn fences_keep_growing_after_failover_to_a_replica_that_lagged() {
    let primary = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    let on_primary = backend(&primary.url());
    let name = key("failover");
    let mut earlier = Vec::new();
    for _ in 0..3 {
        let guard = Lock::with_backend(name.as_str(), &on_primary)
            .exp(30)
            .acquire_blocking()
            .unwrap();
        earlier.push(guard.fence());
        guard.release_blocking().unwrap();
    }
    // Wait until the replica has the counter, then cut it off: it lags from here on.
    let counter_key = counter_key(&name);
    let mut replica_conn = raw(&replica.url());
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::cmd("GET")
        .arg(&counter_key)
        .query::<Option<u64>>(&mut replica_conn)
        .unwrap()
        != Some(earlier.last().unwrap().0)
    {
        assert!(Instant::now() < deadline, "the replica never synced");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica_conn)
        .unwrap();
    earlier.extend(history_with_a_live_hold(&on_primary, &name));
    // The failover: clients now talk to the promoted replica.
    let on_replica = backend(&replica.url());
    assert_above_all(
        fence_of_next_acquire(&on_replica, &name),
        &earlier,
        "a failover to a replica that lagged",
    );
}

fn used_memory(conn: &mut redis::Connection) -> i64 {
    let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("used_memory:"))
        .and_then(|value| value.trim().parse().ok())
        .expect("used_memory in INFO memory")
}

fn dbsize(conn: &mut redis::Connection) -> i64 {
    redis::cmd("DBSIZE").query(conn).unwrap()
}

/// Redisson keeps one fence counter per key ever locked; users who control key text could grow
/// Redis without bound. Here the counters expire after `fence_counter_ttl`: 100,000 distinct
/// keys locked and released leave nothing once that window has passed.
#[test]
fn what_redis_keeps_is_bounded_by_the_keys_locked_within_the_fence_counter_ttl() {
    const KEYS: usize = 100_000;
    const TASKS: usize = 50;
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url()).fence_counter_ttl(1).unwrap();
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    let mut conn = raw(&server.url());
    let baseline_keys = dbsize(&mut conn);
    let baseline_memory = used_memory(&mut conn);
    let prefix = key("bounded");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut last_fence = Fence(0);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (backend, prefix) = (backend.clone(), prefix.clone());
                tokio::spawn(async move {
                    let mut highest = Fence(0);
                    for i in (task..KEYS).step_by(TASKS) {
                        let lock = Lock::with_backend(format!("{prefix}-{i}"), &backend).exp(30);
                        let guard = lock.acquire().await.unwrap();
                        highest = highest.max(guard.fence());
                        guard.release().await.unwrap();
                    }
                    highest
                })
            })
            .collect();
        for task in tasks {
            last_fence = last_fence.max(task.await.unwrap());
        }
    });
    assert!(
        dbsize(&mut conn) > baseline_keys,
        "the counters were never written"
    );
    // Redis expires keys actively in the background: wait for it, within a liveness bound.
    let deadline = Instant::now() + Duration::from_secs(60);
    while dbsize(&mut conn) > baseline_keys {
        assert!(
            Instant::now() < deadline,
            "{} keys still in Redis 60 s after a 1 s fence counter TTL",
            dbsize(&mut conn) - baseline_keys
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let grown = used_memory(&mut conn) - baseline_memory;
    println!("fence counters: {KEYS} keys expired; used_memory {grown:+} bytes from baseline");
    assert!(
        grown < 512 * 1024,
        "used_memory is {grown} bytes above its baseline once the keys expired"
    );
    // And a key locked again after its counter expired still gets a larger fence.
    let again = Lock::with_backend(format!("{prefix}-{}", KEYS - 1), &backend)
        .acquire_blocking()
        .unwrap();
    assert!(
        again.fence() > last_fence,
        "{} after {last_fence}",
        again.fence()
    );
}

/// A restart from an older snapshot can bring back a hold its owner has since released (a
/// ghost). When that owner locks the key again, it must get a new hold with a new, larger fence,
/// not re-enter the ghost and be handed the ghost's old fence.
#[test]
fn an_owner_never_re_enters_its_own_hold_brought_back_by_an_older_snapshot() {
    let mut server = RedisServer::start();
    let backend = backend(&server.url());
    let name = key("ghost");
    let lock = Lock::with_backend(name.as_str(), &backend).exp(30);
    let ghost = lock.acquire_blocking().unwrap();
    let _: () = redis::cmd("SAVE").query(&mut raw(&server.url())).unwrap();
    let mut earlier = vec![ghost.fence()];
    ghost.release_blocking().unwrap();
    earlier.push(fence_of_next_acquire(&backend, &name)); // another owner, still holding
    server.restart(); // the snapshot has the first hold, by this thread
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        match lock.acquire_blocking() {
            Ok(guard) => break guard,
            Err(LockError::Backend { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(err) => panic!("no acquire after the restart: {err}"),
        }
    };
    assert_eq!(
        again.hold_count_at_acquire(),
        1,
        "re-entered a hold it had released"
    );
    assert_above_all(again.fence(), &earlier, "a ghost hold came back");
}

/// The same through the handle alone (`lock()` … `unlock()`, no guard), for every lease kind:
/// the unlock is fenced too, so the backend knows which hold ended and replaces its ghost.
#[test]
fn an_owner_never_re_enters_its_own_handle_lock_brought_back_by_an_older_snapshot() {
    let leases = [
        ("exp", lock_core::Lease::Fixed(Duration::from_secs(30))),
        ("never", lock_core::Lease::Never),
        ("default", lock_core::Lease::Default),
    ];
    for (kind, lease) in leases {
        let mut server = RedisServer::start();
        let backend = backend(&server.url());
        let name = key("ghost-handle");
        let lock = Lock::with_backend(name.as_str(), &backend).lease(lease);
        let ghost = lock.lock_blocking().unwrap();
        let _: () = redis::cmd("SAVE").query(&mut raw(&server.url())).unwrap();
        let mut earlier = vec![ghost];
        lock.unlock_blocking().unwrap();
        earlier.push(fence_of_next_acquire(&backend, &name));
        server.restart(); // the snapshot has the first hold, by this thread
        let deadline = Instant::now() + Duration::from_secs(10);
        let again = loop {
            match lock.try_lock_blocking() {
                Ok(true) => break lock.state_blocking().unwrap(),
                Ok(false) => panic!("{kind}: {name} is held by another owner"),
                Err(LockError::Backend { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(err) => panic!("{kind}: no lock after the restart: {err}"),
            }
        };
        assert_eq!(
            again.hold_count, 1,
            "{kind}: re-entered a handle hold it had unlocked"
        );
        assert_above_all(
            again.fence.unwrap(),
            &earlier,
            "a ghost handle hold came back",
        );
        lock.unlock_blocking().unwrap();
    }
}
