//! Safety under faults, against a real redis-server: killed and paused holders (of locks and of
//! pool slots), a killed and a frozen subscriber connection, start-up errors, and a walk of
//! awkward keys. (The multi-process history checkers have files of their own: `history.rs`,
//! `pool_history.rs`.)

mod conformance;
mod support;

use std::collections::HashMap;
use std::io::BufRead;
use std::time::{Duration, Instant};

use lock_core::{Lock, LockError, Pool, RedisBackend, RedisConfig, SharedBackend};

use conformance::{key, LIVENESS};
use support::fenced::{fenced_write, read_counter};
use support::logs;
use support::processes::{env, Worker};
use support::{raw, shared_redis, RedisServer};

/// Entry point of the worker processes: not a test of its own.
#[test]
#[ignore = "run as a child process by the fault tests"]
fn fault_worker() {
    match env("LOCKWRIGHT_ROLE").as_str() {
        "holder" => holder_worker(),
        "slot-holder" => slot_holder_worker(),
        role => panic!("unknown role {role}"),
    }
}

/// Holds a lock until told to write or release, printing what happens:
/// `@ held <fence>`, then on `write <value>`: `@ write accepted|rejected`, on `release`:
/// `@ release ok|lease-lost`. The lease comes from `LOCKWRIGHT_EXP` (fixed),
/// `LOCKWRIGHT_RENEWED`, or else the backend's default lease (`LOCKWRIGHT_DEFAULT_LEASE`). With
/// `LOCKWRIGHT_HANDLE` set it holds through the handle (`lock()` … `unlock()`, no guard).
fn holder_worker() {
    let url = env("LOCKWRIGHT_URL");
    let name = env("LOCKWRIGHT_KEY");
    let mut config = RedisConfig::new(url.as_str());
    if let Ok(lease) = std::env::var("LOCKWRIGHT_DEFAULT_LEASE") {
        config = config.default_lease(lease.parse::<f64>().unwrap()).unwrap();
    }
    let backend = RedisBackend::connect_blocking(config).unwrap();
    let mut lock = Lock::with_backend(name.as_str(), &backend.shared());
    if let Ok(exp) = std::env::var("LOCKWRIGHT_EXP") {
        lock = lock.exp(exp.parse::<f64>().unwrap());
    } else if let Ok(lease) = std::env::var("LOCKWRIGHT_RENEWED") {
        lock = lock.renewed_lease(lease.parse::<f64>().unwrap());
    }
    let (guard, fence) = if std::env::var("LOCKWRIGHT_HANDLE").is_ok() {
        (None, lock.lock_blocking().unwrap())
    } else {
        let guard = lock.acquire_blocking().unwrap();
        let fence = guard.fence();
        (Some(guard), fence)
    };
    println!("@ held {fence}");
    let mut conn = raw(&url);
    let stdin = std::io::stdin();
    for command in stdin.lock().lines() {
        let command = command.unwrap();
        if let Some(value) = command.strip_prefix("write ") {
            let accepted = fenced_write(
                &mut conn,
                &format!("{name}:counter"),
                fence.0,
                value.parse().unwrap(),
            );
            println!("@ write {}", if accepted { "accepted" } else { "rejected" });
        } else if command == "release" {
            let released = match guard {
                Some(guard) => guard.release_blocking(),
                None => lock.unlock_blocking(),
            };
            match released {
                Ok(()) => println!("@ release ok"),
                Err(LockError::LeaseLost { .. }) => println!("@ release lease-lost"),
                Err(err) => println!("@ release error {err}"),
            }
            return;
        }
    }
}

/// Takes a slot of the pool `LOCKWRIGHT_KEY` (of one slot) and holds it until killed,
/// printing `@ slot <token>`. The lease comes from `LOCKWRIGHT_EXP` (fixed), else
/// `LOCKWRIGHT_DEFAULT_LEASE` (the backend's default lease, renewed by the watchdog).
fn slot_holder_worker() {
    let url = env("LOCKWRIGHT_URL");
    let name = env("LOCKWRIGHT_KEY");
    let mut config = RedisConfig::new(url.as_str());
    if let Ok(lease) = std::env::var("LOCKWRIGHT_DEFAULT_LEASE") {
        config = config.default_lease(lease.parse::<f64>().unwrap()).unwrap();
    }
    let backend = RedisBackend::connect_blocking(config).unwrap();
    let mut pool = Pool::with_backend(name.as_str(), 1, &backend.shared());
    if let Ok(exp) = std::env::var("LOCKWRIGHT_EXP") {
        pool = pool.exp(exp.parse::<f64>().unwrap());
    }
    let slot = pool.acquire_blocking().unwrap();
    println!("@ slot {}", slot.slot());
    loop {
        std::thread::park();
    }
}

/// A slot holder in another process, once it holds its slot.
fn slot_holder(url: &str, name: &str, lease: (&str, &str)) -> Worker {
    let env = [
        ("LOCKWRIGHT_URL", url.to_owned()),
        ("LOCKWRIGHT_KEY", name.to_owned()),
        (lease.0, lease.1.to_owned()),
    ];
    let mut worker = Worker::start("fault_worker", "slot-holder", &env);
    let held = worker.line();
    assert!(held.starts_with("slot "), "unexpected {held:?}");
    worker
}

/// Waits (from another process's point of view) for a slot of the one-slot pool, returning how
/// long it took.
fn time_to_take_the_slot(backend: &SharedBackend, name: &str) -> Duration {
    let pool = Pool::with_backend(name, 1, backend)
        .nowait(false)
        .timeout(20)
        .exp(30);
    let start = Instant::now();
    let slot = pool
        .acquire_blocking()
        .expect("the waiter never got the slot");
    let waited = start.elapsed();
    drop(slot);
    waited
}

fn holder(url: &str, name: &str, lease: &[(&str, &str)]) -> (Worker, u64) {
    let mut env = vec![
        ("LOCKWRIGHT_URL", url.to_owned()),
        ("LOCKWRIGHT_KEY", name.to_owned()),
    ];
    env.extend(
        lease
            .iter()
            .map(|(name, value)| (*name, (*value).to_owned())),
    );
    let mut worker = Worker::start("fault_worker", "holder", &env);
    let held = worker.line();
    let fence = held
        .strip_prefix("held ")
        .unwrap_or_else(|| panic!("unexpected {held:?}"))
        .parse()
        .unwrap();
    (worker, fence)
}

/// Waits (from another process's point of view) for the key, returning how long it took.
fn time_to_acquire(backend: &SharedBackend, name: &str) -> Duration {
    let lock = Lock::with_backend(name, backend)
        .nowait(false)
        .timeout(20)
        .exp(30);
    let start = Instant::now();
    let guard = lock
        .acquire_blocking()
        .expect("the waiter never got the lock");
    let waited = start.elapsed();
    drop(guard);
    waited
}

#[test]
fn killed_holder_with_a_lease_frees_the_key_after_the_lease() {
    let (server, backend) = shared_redis();
    let name = key("kill-fixed");
    let (worker, _) = holder(&server.url(), &name, &[("LOCKWRIGHT_EXP", "1.0")]);
    worker.signal("-KILL");
    let waited = time_to_acquire(&backend.shared(), &name);
    assert!(
        waited > Duration::from_millis(500),
        "freed before its lease: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn killed_holder_under_the_watchdog_frees_the_key_after_one_watchdog_lease() {
    let (server, backend) = shared_redis();
    let name = key("kill-watchdog");
    let (worker, _) = holder(&server.url(), &name, &[("LOCKWRIGHT_RENEWED", "1.0")]);
    // Let the watchdog renew a few times, so the lock outlives its first lease...
    std::thread::sleep(Duration::from_millis(1500));
    let probe = Lock::with_backend(name.as_str(), &backend.shared());
    assert!(
        probe.is_locked_blocking().unwrap(),
        "the watchdog did not renew"
    );
    // ...then the process dies and nobody renews: the key frees within one lease.
    worker.signal("-KILL");
    let waited = time_to_acquire(&backend.shared(), &name);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// Hazelcast's `lock()` without a lease, in another process: renewed (with a short default
/// lease) for several leases, it keeps this process out until its `unlock()`.
#[test]
fn a_handle_lock_in_another_process_keeps_the_key_for_several_leases_until_unlock() {
    let (server, backend) = shared_redis();
    let name = key("handle-lock-held");
    let (mut worker, _) = holder(
        &server.url(),
        &name,
        &[
            ("LOCKWRIGHT_HANDLE", "1"),
            ("LOCKWRIGHT_DEFAULT_LEASE", "0.5"),
        ],
    );
    let probe = Lock::with_backend(name.as_str(), &backend.shared()).exp(30);
    // Four default leases: without renewal the key would be free after the first.
    assert!(
        !probe.try_lock_for_blocking(2).unwrap(),
        "another process got in while the handle lock was held"
    );
    worker.say("release");
    assert_eq!(worker.line(), "release ok");
    assert!(probe.try_lock_for_blocking(LIVENESS).unwrap());
    probe.unlock_blocking().unwrap();
}

/// The same holder killed: nobody renews, and the key frees within one default lease.
#[test]
fn a_killed_handle_lock_holder_frees_the_key_within_one_watchdog_lease() {
    let (server, backend) = shared_redis();
    let name = key("handle-lock-killed");
    let (worker, _) = holder(
        &server.url(),
        &name,
        &[
            ("LOCKWRIGHT_HANDLE", "1"),
            ("LOCKWRIGHT_DEFAULT_LEASE", "1.0"),
        ],
    );
    // Let the watchdog renew a few times, so the lock outlives its first lease...
    std::thread::sleep(Duration::from_millis(2500));
    let probe = Lock::with_backend(name.as_str(), &backend.shared());
    assert!(
        probe.is_locked_blocking().unwrap(),
        "the watchdog did not renew the handle lock"
    );
    // ...then the process dies: the key frees within one lease.
    worker.signal("-KILL");
    let waited = time_to_acquire(&backend.shared(), &name);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn a_killed_slot_holder_with_a_lease_frees_the_slot_after_the_lease() {
    let (server, backend) = shared_redis();
    let name = key("kill-slot-fixed");
    let worker = slot_holder(&server.url(), &name, ("LOCKWRIGHT_EXP", "1.0"));
    worker.signal("-KILL");
    let waited = time_to_take_the_slot(&backend.shared(), &name);
    assert!(
        waited > Duration::from_millis(500),
        "freed before its lease: {waited:?}"
    );
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

/// A slot taken without `exp` in another process: renewed past several default leases, it keeps
/// this process out; once the process is killed, the slot frees within one lease.
#[test]
fn a_killed_slot_holder_under_the_watchdog_frees_the_slot_within_one_lease() {
    let (server, backend) = shared_redis();
    let name = key("kill-slot-watchdog");
    let worker = slot_holder(&server.url(), &name, ("LOCKWRIGHT_DEFAULT_LEASE", "1.0"));
    std::thread::sleep(Duration::from_millis(2500));
    let probe = Pool::with_backend(name.as_str(), 1, &backend.shared());
    assert_eq!(
        probe.size_blocking().unwrap(),
        1,
        "the watchdog did not renew the slot"
    );
    assert!(
        probe.try_acquire_blocking().unwrap().is_none(),
        "another process got into the full pool"
    );
    worker.signal("-KILL");
    let waited = time_to_take_the_slot(&backend.shared(), &name);
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}

#[test]
fn paused_holder_loses_its_lease_and_its_stale_fence_is_refused() {
    let (server, backend) = shared_redis();
    let name = key("sigstop");
    let counter = format!("{name}:counter");
    let (mut paused, stale_fence) = holder(&server.url(), &name, &[("LOCKWRIGHT_EXP", "0.5")]);
    paused.signal("-STOP");
    // Meanwhile the lease runs out and this process takes the lock.
    let lock = Lock::with_backend(name.as_str(), &backend.shared())
        .nowait(false)
        .timeout(10)
        .exp(30);
    let guard = lock.acquire_blocking().unwrap();
    assert!(guard.fence().0 > stale_fence);
    let mut conn = raw(&server.url());
    assert!(fenced_write(&mut conn, &counter, guard.fence().0, 1));
    paused.signal("-CONT");
    // The paused process wakes up believing it holds the lock: its write is refused and its
    // release reports the lost lease, while the new holder keeps its lock and data.
    paused.say("write 99");
    assert_eq!(paused.line(), "write rejected");
    paused.say("release");
    assert_eq!(paused.line(), "release lease-lost");
    assert!(guard.is_held_blocking().unwrap());
    assert_eq!(read_counter(&mut conn, &counter), 1);
    guard.release_blocking().unwrap();
}

#[test]
fn killed_subscriber_connection_still_lets_waiters_in_within_one_lease() {
    // A server of its own: `CLIENT KILL TYPE pubsub` kills every subscriber on it, which on the
    // shared server included other tests' (the frozen-subscriber test then found two).
    let server = RedisServer::start();
    let backend = RedisBackend::connect_blocking(RedisConfig::new(server.url()))
        .unwrap()
        .shared();
    let lock = Lock::with_backend(key("pubsub-kill"), &backend)
        .nowait(false)
        .timeout(20)
        .exp(2);
    for round in 0..3 {
        let held = lock.acquire_blocking().unwrap();
        let waiter = lock.clone();
        let waiting = std::thread::spawn(move || {
            let start = Instant::now();
            waiter.acquire_blocking().map(|_| start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query(&mut raw(&server.url()))
            .unwrap();
        assert!(killed >= 1, "round {round}: no subscriber to kill");
        held.release_blocking().unwrap();
        let waited = waiting.join().unwrap().unwrap();
        // Bounded by the holder's 2 s lease even if the release message was lost.
        assert!(waited < Duration::from_secs(4), "round {round}: {waited:?}");
        std::thread::sleep(Duration::from_millis(300)); // let the subscriber reconnect
    }
}

/// A waiter on a holder that never expires sleeps on pub/sub alone (no lease end to wake it):
/// when its backend's subscriber connection silently stops delivering (half-open TCP, a frozen
/// NAT entry), the subscriber's keepalive notices, reconnects and wakes everyone to re-check.
/// Bound: keepalive interval (1 s) + command timeout (2 s here) + reconnect (ms on loopback,
/// at most the 2 s connect timeout) = 5 s; asserted < 10 s for a loaded machine, against the
/// waiter's own 30 s deadline.
#[test]
fn a_waiter_behind_a_frozen_subscriber_connection_still_wakes_after_the_release() {
    let (server, direct) = shared_redis();
    let proxy = support::FreezingProxy::start(server.port);
    let behind_proxy = RedisBackend::connect_blocking(
        RedisConfig::new(proxy.url())
            .command_timeout(2)
            .unwrap()
            .connect_timeout(2)
            .unwrap(),
    )
    .unwrap()
    .shared();
    let start = Instant::now();
    while proxy.live_subscribers() == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "no subscriber");
        std::thread::sleep(Duration::from_millis(10));
    }
    let name = key("frozen-subscriber");
    let held = Lock::with_backend(name.as_str(), &direct.shared())
        .never_expires()
        .acquire_blocking()
        .unwrap();
    let waiter = Lock::with_backend(name.as_str(), &behind_proxy)
        .nowait(false)
        .timeout(30)
        .exp(30);
    let waiting = std::thread::spawn(move || {
        let guard = waiter.acquire_blocking()?;
        let acquired_at = Instant::now();
        drop(guard);
        Ok::<_, LockError>(acquired_at)
    });
    // The waiter has tried, found the key held without a lease end, and sleeps on pub/sub.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        proxy.freeze_subscribers(),
        1,
        "one subscriber connection to freeze"
    );
    let released_at = Instant::now();
    held.release_blocking().unwrap();
    let acquired_at = waiting
        .join()
        .unwrap()
        .expect("the waiter slept through the release");
    let woken = acquired_at - released_at;
    println!("frozen subscriber: waiter acquired {woken:?} after the release (bound 5 s)");
    assert!(
        woken < Duration::from_secs(10),
        "woken {woken:?} after the release"
    );
}

/// A backend whose I/O runs on `runtime`, connected through a proxy that can freeze its
/// connections, with a command timeout far beyond the tests' waits.
fn backend_behind_proxy_on(
    runtime: &tokio::runtime::Runtime,
) -> (support::FreezingProxy, SharedBackend) {
    let proxy = support::FreezingProxy::start(shared_redis().0.port);
    let config = RedisConfig::new(proxy.url())
        .runtime(runtime.handle().clone())
        .command_timeout(60)
        .unwrap();
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    (proxy, backend)
}

fn two_worker_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What cannot be fixed fails loudly: a guard's release already sent when the runtime shuts
/// down (the only runtime there is: the guard's and the backend's) may or may not have reached
/// Redis, and repeating it could take away another hold of the same owner. The hold then stays
/// (here it never expires), and the backend logs an error naming the key. Once for a dropped
/// guard, once for an explicit `release().await` cut off with its task.
#[test]
fn a_release_cut_off_in_flight_by_a_runtime_shutdown_is_logged_as_an_error() {
    logs::capture();
    for explicit in [false, true] {
        let runtime = two_worker_runtime();
        let (proxy, backend) = backend_behind_proxy_on(&runtime);
        let name = key(if explicit {
            "cut-off-release"
        } else {
            "cut-off-drop"
        });
        let lock = Lock::with_backend(name.as_str(), &backend).never_expires();
        let (acquired, is_acquired) = std::sync::mpsc::channel();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(async move {
            let guard = lock.acquire().await.unwrap();
            acquired.send(()).unwrap();
            let _ = released.await;
            if explicit {
                let _ = guard.release().await;
            } else {
                drop(guard);
            }
            std::future::pending::<()>().await;
        });
        is_acquired.recv_timeout(conformance::LIVENESS).unwrap();
        assert!(proxy.freeze_all() >= 1);
        release.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(300)); // the release is sent, and unanswered
        drop(runtime);
        let logged = logs::error_naming(&name, conformance::LIVENESS);
        assert!(logged.is_some(), "no error naming {name} was logged");
        println!("logged: {}", logged.unwrap());
        let probe = Lock::with_backend(name.as_str(), &shared_redis().1.shared());
        assert!(
            probe.is_locked_blocking().unwrap(),
            "the frozen release cannot have landed"
        );
        assert!(probe.force_unlock_blocking().unwrap());
    }
}

/// A runtime shutting down drops many guards, whose releases then run synchronously: with the
/// server answering nothing, one failed attempt (at most connect + command timeout, 2 s here)
/// must not be paid again by every other guard (10 guards: 10 s or more). Each release that did
/// not happen is logged as an error naming its key.
#[test]
fn a_shutdown_dropping_many_guards_with_redis_silent_is_not_held_up_by_each_release() {
    logs::capture();
    let runtime = two_worker_runtime();
    let proxy = support::FreezingProxy::start(shared_redis().0.port);
    let config = RedisConfig::new(proxy.url())
        .runtime(runtime.handle().clone())
        .command_timeout(1)
        .unwrap()
        .connect_timeout(1)
        .unwrap();
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    let names: Vec<String> = (0..10).map(|_| key("silent-at-shutdown")).collect();
    let (acquired, is_acquired) = std::sync::mpsc::channel();
    for name in &names {
        let lock = Lock::with_backend(name.as_str(), &backend).never_expires();
        let acquired = acquired.clone();
        runtime.spawn(async move {
            let _guard = lock.acquire().await.unwrap();
            acquired.send(()).unwrap();
            std::future::pending::<()>().await;
        });
    }
    for _ in &names {
        is_acquired.recv_timeout(conformance::LIVENESS).unwrap();
    }
    proxy.freeze_everything();
    let start = Instant::now();
    drop(runtime);
    let took = start.elapsed();
    println!("runtime shutdown dropping 10 guards, Redis silent: {took:?}");
    for name in &names {
        assert!(
            logs::error_naming(name, Duration::ZERO).is_some(),
            "no error naming {name}"
        );
    }
    assert!(took < Duration::from_secs(5), "the shutdown took {took:?}");
    let cleanup = shared_redis().1.shared();
    for name in &names {
        Lock::with_backend(name.as_str(), &cleanup)
            .force_unlock_blocking()
            .unwrap();
    }
}

/// Where the I/O of a runtime's tasks runs, in the cut-off tests.
#[derive(Clone, Copy, Debug)]
enum CallerIo {
    /// On the runtime given to the backend (`RedisConfig::runtime`), the only one there is.
    GivenRuntime,
    /// On the caller's own runtime, with a default backend (whose own runtime outlives it): the
    /// lane the backend gives a multi-thread runtime's tasks.
    CallersLane,
}

/// A backend behind a freezing proxy, whose I/O for `runtime`'s tasks runs on `runtime` as
/// `io` says, and how many connections the proxy took before `runtime`'s first operation.
fn backend_for_cut_off(
    runtime: &tokio::runtime::Runtime,
    io: CallerIo,
) -> (support::FreezingProxy, SharedBackend, usize) {
    match io {
        CallerIo::GivenRuntime => {
            let (proxy, backend) = backend_behind_proxy_on(runtime);
            (proxy, backend, 0)
        }
        CallerIo::CallersLane => {
            let proxy = support::FreezingProxy::start(shared_redis().0.port);
            let config = RedisConfig::new(proxy.url()).command_timeout(60).unwrap();
            let backend = RedisBackend::connect_blocking(config).unwrap().shared();
            let before = proxy.connections_taken();
            (proxy, backend, before)
        }
    }
}

/// Likewise an acquire already sent when the runtime carrying it shuts down: if it took the
/// lock, the reply with its fence is lost with the runtime, so the hold cannot be given back.
/// The backend logs an error naming the key. Both where that runtime was given to the backend
/// and where it is a caller's own (its lane's connections are the ones frozen; the backend's
/// own are not).
#[test]
fn an_acquire_cut_off_in_flight_by_a_runtime_shutdown_is_logged_as_an_error() {
    logs::capture();
    for io in [CallerIo::GivenRuntime, CallerIo::CallersLane] {
        let runtime = two_worker_runtime();
        let (proxy, backend, before) = backend_for_cut_off(&runtime, io);
        let name = key("cut-off-acquire");
        let lock = Lock::with_backend(name.as_str(), &backend).never_expires();
        // Opens the key's connection on that runtime, which is then frozen (once the release on
        // drop has landed: `is_locked` waits for it).
        let opening = lock.clone();
        let still_held = runtime.block_on(runtime.spawn(async move {
            drop(opening.acquire().await.unwrap());
            opening.is_locked().await.unwrap()
        }));
        assert!(!still_held.unwrap());
        assert!(proxy.freeze_taken_after(before) >= 1, "{io:?}");
        runtime.spawn(async move {
            let _guard = lock.acquire().await;
        });
        std::thread::sleep(Duration::from_millis(300)); // the acquire is sent, and unanswered
        drop(runtime);
        let logged = logs::error_naming(&name, conformance::LIVENESS);
        let logged = logged.unwrap_or_else(|| panic!("{io:?}: no error naming {name} was logged"));
        assert!(logged.contains("abandoned acquire"), "{io:?}: {logged}");
        println!("{io:?}: logged: {logged}");
    }
}

/// As for a lock: a pool acquire already sent when the runtime carrying it shuts down may
/// have taken a slot whose token came with the lost reply, so it cannot be given back (here it
/// never expires). The backend logs an error naming the pool's key.
#[test]
fn a_pool_acquire_cut_off_in_flight_by_a_runtime_shutdown_is_logged_as_an_error() {
    logs::capture();
    for io in [CallerIo::GivenRuntime, CallerIo::CallersLane] {
        let runtime = two_worker_runtime();
        let (proxy, backend, before) = backend_for_cut_off(&runtime, io);
        let name = key("cut-off-pool-acquire");
        let pool = lock_core::Pool::with_backend(name.as_str(), 1, &backend).never_expires();
        let opening = pool.clone();
        let still_taken = runtime.block_on(runtime.spawn(async move {
            drop(opening.acquire().await.unwrap());
            opening.state().await.unwrap().size
        }));
        assert_eq!(still_taken.unwrap(), 0);
        assert!(proxy.freeze_taken_after(before) >= 1, "{io:?}");
        runtime.spawn(async move {
            let _slot = pool.acquire().await;
        });
        std::thread::sleep(Duration::from_millis(300)); // the acquire is sent, and unanswered
        drop(runtime);
        let logged = logs::error_naming(&name, conformance::LIVENESS);
        let logged = logged.unwrap_or_else(|| panic!("{io:?}: no error naming {name} was logged"));
        assert!(
            logged.contains("abandoned pool acquire"),
            "{io:?}: {logged}"
        );
        println!("{io:?}: logged: {logged}");
    }
}

/// A default backend (no runtime given) runs the Redis I/O of a multi-thread runtime's tasks
/// on that runtime (a lane of its own: no hop to the backend's thread and back). When that
/// runtime shuts down with releases in flight and more queued behind them: those in flight
/// (here frozen: they never reach Redis) cannot safely be sent again, so each is logged as an
/// error naming its key, and its lock stays held; those only queued have not been sent and
/// still go out, through the backend's own runtime. The backend serves its other callers on,
/// and a new runtime gets a lane of its own.
#[test]
fn a_callers_runtime_shutting_down_cuts_off_only_what_it_had_in_flight() {
    logs::capture();
    let runtime = two_worker_runtime();
    let (proxy, backend, before) = backend_for_cut_off(&runtime, CallerIo::CallersLane);
    let names: Vec<String> = (0..8).map(|_| key("lane-cut-off")).collect();
    let (acquired, is_acquired) = std::sync::mpsc::channel();
    let (go, release) = tokio::sync::watch::channel(false);
    for name in &names {
        let lock = Lock::with_backend(name.as_str(), &backend).never_expires();
        let (acquired, mut release) = (acquired.clone(), release.clone());
        runtime.spawn(async move {
            let guard = lock.acquire().await.unwrap();
            acquired.send(()).unwrap();
            let _ = release.wait_for(|go| *go).await;
            let _ = guard.release().await;
            std::future::pending::<()>().await;
        });
    }
    for _ in &names {
        is_acquired.recv_timeout(LIVENESS).unwrap();
    }
    // The lane's connection drivers (and its watch) are tasks of the caller's runtime.
    let alive = runtime.metrics().num_alive_tasks();
    assert!(
        alive > names.len(),
        "{alive} tasks: the I/O does not run on the caller's runtime"
    );
    assert!(
        proxy.freeze_taken_after(before) >= 1,
        "the lane made no connection of its own"
    );
    go.send(true).unwrap();
    std::thread::sleep(Duration::from_millis(300)); // the first releases are sent, the rest queued
    drop(runtime);
    let probe = shared_redis().1.shared();
    let (mut freed, mut held_and_logged) = (0, 0);
    let deadline = Instant::now() + LIVENESS;
    for name in &names {
        let lock = Lock::with_backend(name.as_str(), &probe);
        loop {
            if !lock.is_locked_blocking().unwrap() {
                freed += 1;
                break;
            }
            if let Some(logged) = logs::error_naming(name, Duration::ZERO) {
                assert!(
                    logged.contains("a release whose caller had left failed"),
                    "{logged}"
                );
                held_and_logged += 1;
                assert!(lock.force_unlock_blocking().unwrap());
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name} is still held and no error names it"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    println!(
        "{freed} released through the backend's runtime, {held_and_logged} cut off and logged"
    );
    assert!(held_and_logged >= 1, "no release was in flight");
    assert!(freed >= 1, "no queued release went out after the shutdown");
    // The backend serves on: a blocking caller, and a new runtime's task on a lane of its own.
    let after = Lock::with_backend(key("after-lane-cut-off").as_str(), &backend);
    drop(after.acquire_blocking().unwrap());
    let runtime = two_worker_runtime();
    let lock = after.clone();
    runtime
        .block_on(runtime.spawn(async move { lock.acquire().await.unwrap().release().await }))
        .unwrap()
        .unwrap();
    assert!(
        runtime.metrics().num_alive_tasks() >= 1,
        "no lane on the new runtime"
    );
    assert!(!after.is_locked_blocking().unwrap());
}

#[test]
fn wrong_database_and_unreachable_server_fail_fast_with_typed_errors() {
    let (server, _) = shared_redis();
    let start = Instant::now();
    let err = RedisBackend::connect_blocking(RedisConfig::new(format!("{}/99999", server.url())))
        .unwrap_err();
    assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
    let mut stopped = RedisServer::start();
    let url = stopped.url();
    stopped.kill();
    let err = RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap_err();
    assert!(matches!(err, LockError::Connection { .. }), "{err:?}");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn restarted_server_lets_blocked_waiters_progress() {
    let mut server = RedisServer::start();
    let backend = RedisBackend::connect_blocking(
        RedisConfig::new(server.url())
            .command_timeout(1)
            .unwrap()
            .connect_timeout(1)
            .unwrap(),
    )
    .unwrap()
    .shared();
    let name = key("restart-waiters");
    let held = Lock::with_backend(name.as_str(), &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let held_fence = held.fence();
    let waiter = Lock::with_backend(name.as_str(), &backend)
        .nowait(false)
        .timeout(20)
        .exp(5);
    let waiting = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        // Errors while the server is down are typed; the waiter retries, as an application would.
        loop {
            match waiter.acquire_blocking() {
                Ok(guard) => return Ok(guard.fence()),
                Err(LockError::Backend { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(err) => return Err(err),
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    server.restart(); // no persistence: the holder's lock is gone with the old server
    std::mem::forget(held);
    let fence = waiting
        .join()
        .unwrap()
        .expect("the waiter never progressed");
    // The restart lost the fence counter with the holder's lock: the fence still grew.
    assert!(fence > held_fence, "{fence} after {held_fence}");

    // Pub/sub recovered too: a waiter is woken by the release, not by the 30 s lease or its
    // 20 s deadline. (The first operation on each pooled connection still open to the old
    // server fails with a typed error and replaces it: retried here, as an application would.)
    let name = key("restart-wakeup");
    let holder = Lock::with_backend(name.as_str(), &backend).exp(30);
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        match holder.acquire_blocking() {
            Ok(guard) => break guard,
            Err(LockError::Backend { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(err) => panic!("no recovery after the restart: {err}"),
        }
    };
    let waiter = Lock::with_backend(name.as_str(), &backend)
        .nowait(false)
        .timeout(20);
    let waiting = std::thread::spawn(move || waiter.acquire_blocking().map(drop));
    std::thread::sleep(Duration::from_millis(500));
    let released_at = Instant::now();
    held.release_blocking().unwrap();
    waiting.join().unwrap().unwrap();
    assert!(
        released_at.elapsed() < Duration::from_secs(3),
        "woken {:?} after the release",
        released_at.elapsed()
    );
}

mod awkward_keys {
    use super::*;

    const KEYS: &[&str] = &[
        "a",
        "a:fence",
        "a}:fence",
        "a:free",
        "{a}",
        "{a}:fence",
        "a}",
        "{",
        "}",
        ":",
        "lockwright:{a}",
        "lockwright:",
        "ключ-замка",
        "🔒 lock with spaces",
        "tab\tand\nnewline",
    ];

    fn walk(backend: SharedBackend, prefix: &str) {
        // Every awkward key is its own lock: held all at once, none disturbs another.
        let guards: Vec<_> = KEYS
            .iter()
            .map(|name| {
                Lock::with_backend(format!("{prefix}{name}"), &backend)
                    .acquire_blocking()
                    .unwrap_or_else(|err| panic!("{name:?}: {err}"))
            })
            .collect();
        for guard in &guards {
            let lock = Lock::with_backend(guard.key(), &backend);
            assert_eq!(lock.lock_count_blocking().unwrap(), 1, "{:?}", guard.key());
            assert_eq!(lock.state_blocking().unwrap().fence, Some(guard.fence()));
        }
        // Freeing one leaves the others held.
        let first = Lock::with_backend(guards[0].key(), &backend);
        assert!(first.force_unlock_blocking().unwrap());
        for guard in &guards[1..] {
            assert!(guard.is_held_blocking().unwrap(), "{:?}", guard.key());
        }
        drop(guards);
        // Rejected keys: empty and oversized (a 1 MB key).
        for bad in [String::new(), "x".repeat(1 << 20)] {
            let err = Lock::with_backend(bad, &backend)
                .acquire_blocking()
                .unwrap_err();
            assert!(
                matches!(err, LockError::InvalidArgument { name: "key", .. }),
                "{err:?}"
            );
        }
        // The longest accepted key works.
        let longest = Lock::with_backend("k".repeat(lock_core::MAX_KEY_LEN), &backend);
        drop(longest.acquire_blocking().unwrap());
    }

    #[test]
    fn awkward_keys_are_distinct_locks_in_memory() {
        walk(lock_core::MemoryBackend::shared(), &key("k"));
    }

    #[test]
    fn awkward_keys_are_distinct_locks_on_redis_and_miss_internal_keys() {
        let (server, backend) = shared_redis();
        let prefix = key("k");
        walk(backend.shared(), &prefix);
        // Nothing is left behind but fence counters (one per key, by design).
        let mut conn = raw(&server.url());
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("lockwright:{{{prefix}*"))
            .query(&mut conn)
            .unwrap();
        assert!(left.iter().all(|k| k.ends_with(":fence")), "{left:?}");
    }

    /// Keys as given (not behind a nonce) that start with, end with and contain braces, the
    /// internal suffixes, the escape character and the prefix itself.
    const EDGE_KEYS: &[&str] = &[
        "{", "}", "{}", "}{", "{a", "}a", "a{", "a}", "a}x{b", "b", "x{b", ":fence", ":free",
        "}:fence", "a}:fence", "a:fence}", "{a}:free", "\\", "\\)", "a\\)", "a\\}", "P", "P:",
        "P:{a}",
    ];

    /// Redis Cluster's hash tag: what lies between the first `{` and the next `}`, when not
    /// empty; otherwise the whole name is hashed.
    fn hash_tag(name: &str) -> &str {
        name.find('{')
            .and_then(|open| {
                let rest = &name[open + 1..];
                rest.find('}').map(|close| &rest[..close])
            })
            .filter(|tag| !tag.is_empty())
            .unwrap_or(name)
    }

    #[test]
    fn prefixes_with_braces_are_refused() {
        let (server, _) = shared_redis();
        for prefix in ["P{a}x", "{", "}", "app:{locks}:"] {
            let err = RedisBackend::connect_blocking(RedisConfig::new(server.url()).prefix(prefix))
                .unwrap_err();
            assert!(
                matches!(err, LockError::InvalidArgument { name: "prefix", .. }),
                "{prefix:?}: {err:?}"
            );
        }
    }

    /// (prefix, key) -> Redis names is injective, and each lock's names (lock key, fence
    /// counter, channel) share one hash tag, so one Cluster slot.
    #[test]
    fn every_prefix_and_key_has_its_own_redis_names_in_one_hash_slot() {
        let (server, _) = shared_redis();
        let nonce = key("edge");
        let prefixes = [
            format!("{nonce}:"),
            format!("{nonce}:P"),
            format!("{nonce}:P:"),
            format!("{nonce}:fence"),
        ];
        let backends: Vec<RedisBackend> = prefixes
            .iter()
            .map(|prefix| {
                RedisBackend::connect_blocking(RedisConfig::new(server.url()).prefix(prefix))
                    .unwrap()
            })
            .collect();
        let mut names = HashMap::new();
        let mut guards = Vec::new();
        for backend in &backends {
            let shared = backend.shared();
            for edge in EDGE_KEYS {
                let lock_key = backend.lock_key(edge);
                for name in [
                    lock_key.clone(),
                    format!("{lock_key}:fence"),
                    format!("{lock_key}:free"),
                ] {
                    assert_eq!(
                        hash_tag(&name),
                        hash_tag(&lock_key),
                        "{name:?} is not in the slot of {lock_key:?}"
                    );
                    assert_ne!(hash_tag(&name), name, "{name:?} has no hash tag");
                    if let Some(other) =
                        names.insert(name.clone(), (backend.config().redacted_url(), *edge))
                    {
                        panic!("{name:?} is named by {edge:?} and by {other:?}");
                    }
                }
                guards.push(
                    Lock::with_backend(*edge, &shared)
                        .acquire_blocking()
                        .unwrap(),
                );
            }
        }
        // Every one is its own lock on the server: all held at once, each alone on its key.
        for (guard, backend) in guards.iter().zip(
            backends
                .iter()
                .flat_map(|b| std::iter::repeat_n(b, EDGE_KEYS.len())),
        ) {
            let lock = Lock::with_backend(guard.key(), &backend.shared());
            assert_eq!(lock.lock_count_blocking().unwrap(), 1, "{:?}", guard.key());
            assert_eq!(lock.state_blocking().unwrap().fence, Some(guard.fence()));
        }
        let mut conn = raw(&server.url());
        let stored: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{nonce}*"))
            .query(&mut conn)
            .unwrap();
        let lock_keys = stored
            .iter()
            .filter(|name| !name.ends_with(":fence"))
            .count();
        assert_eq!(
            lock_keys,
            guards.len(),
            "two locks share a Redis key: {stored:?}"
        );
    }
}

#[test]
fn dropped_acquires_free_their_key_promptly_for_other_clients() {
    // Thousands of acquire+hold futures cut off at swept deadlines. For each, measure how long
    // another client (a separate connection, as another process would be) still sees the lock.
    // Once with the default backend (its I/O on a runtime of its own, the futures on another),
    // once with a backend whose I/O runs on the very runtime that polls and drops the futures.
    let (server, backend) = shared_redis();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    sweep_dropped_acquires(server, &runtime, backend, "own I/O runtime");
    let (given_runtime, given_backend) = support::redis_on_given_runtime();
    sweep_dropped_acquires(
        server,
        given_runtime,
        given_backend,
        "I/O on the callers' runtime",
    );
}

fn sweep_dropped_acquires(
    server: &RedisServer,
    runtime: &tokio::runtime::Runtime,
    backend: &RedisBackend,
    label: &str,
) {
    let name = key("cancel-bound");
    // A lease far longer than the bound asserted below: expiry cannot hide a leaked hold.
    let lock = Lock::with_backend(name.as_str(), &backend.shared()).exp(30);
    let lock_key = backend.lock_key(&name);
    const BOUND: Duration = Duration::from_secs(1);
    let mut other_client = raw(&server.url());
    let iterations: u64 = std::env::var("LOCKWRIGHT_CANCEL_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let (mut still_held, mut worst) = (0u64, Duration::ZERO);
    let (mut cut_while_acquiring, mut cut_while_holding) = (0u64, 0u64);
    for i in 0..iterations {
        let holder = lock.clone();
        let acquired = runtime.block_on(async {
            let cut_off = Duration::from_micros((i % 200) * 5);
            let acquired = std::sync::atomic::AtomicBool::new(false);
            let _ = tokio::time::timeout(cut_off, async {
                let _guard = holder.acquire().await.unwrap();
                acquired.store(true, std::sync::atomic::Ordering::Relaxed);
                // Hold across a few polls, so the cut-off can land while holding too.
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            })
            .await;
            acquired.into_inner()
        });
        if acquired {
            cut_while_holding += 1;
        } else {
            cut_while_acquiring += 1;
        }
        let dropped_at = Instant::now();
        loop {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&lock_key)
                .query(&mut other_client)
                .unwrap();
            if !exists {
                break;
            }
            assert!(
                dropped_at.elapsed() < BOUND,
                "a dropped hold lived on for over {BOUND:?} (lease 30 s)"
            );
        }
        let visible = dropped_at.elapsed();
        worst = worst.max(visible);
        // The same process sees its own drop at once (tested in the conformance suite);
        // here count how often another client caught the hold still in flight.
        if visible > Duration::from_millis(1) {
            still_held += 1;
        }
    }
    println!(
        "cancellation ({label}): {iterations} dropped futures ({cut_while_acquiring} while acquiring, \
         {cut_while_holding} while holding); another client saw the key held for at most \
         {worst:?} after the drop ({still_held} times more than 1 ms); lease 30 s"
    );
    assert!(
        cut_while_acquiring > 0 && cut_while_holding > 0,
        "the sweep must cut futures off in both phases"
    );
}
