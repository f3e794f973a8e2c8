//! The lease watchdog under failing backends: one backend that panics, hangs or fails affects only
//! its own holds, which are then declared lost in time; the others keep being renewed. Runs a
//! real `redis-server` for the hung and paused cases.

mod conformance;
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lock_core::{Lock, MemoryBackend, RedisBackend, RedisConfig, SharedBackend};

use conformance::{key, CountingBackend};
use support::RedisServer;

/// SIGSTOPs a server; SIGCONTs it when dropped, whatever the test did in between.
struct Paused(u32);

impl Paused {
    fn new(server: &RedisServer) -> Self {
        signal(server.pid(), libc::SIGSTOP);
        Paused(server.pid())
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal(self.0, libc::SIGCONT);
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill() only sends a signal to a process id we started.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// A healthy backend's renewed hold next to one whose renewals panic: the panic costs only the
/// panicking backend's holds, which are declared lost; the healthy one stays held.
#[test]
fn a_backend_whose_renewals_panic_loses_only_its_own_holds() {
    let panicking: SharedBackend =
        Arc::new(CountingBackend::with_hook(MemoryBackend::shared(), || {
            panic!("a custom backend's renewal panicked")
        }));
    let healthy = MemoryBackend::shared();
    let doomed = Lock::with_backend(key("panicking"), &panicking)
        .renewed_lease(0.3)
        .acquire_blocking()
        .unwrap();
    let kept = Lock::with_backend(key("healthy"), &healthy)
        .renewed_lease(0.3)
        .acquire_blocking()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) && !doomed.is_lease_lost() {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        doomed.is_lease_lost(),
        "the panicking backend's hold was never declared lost"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        kept.is_held_blocking().unwrap(),
        "the healthy backend's hold expired"
    );
    assert!(!kept.is_lease_lost());
}

/// A renewed hold on a server that stops answering (SIGSTOP) is declared lost before the server
/// could have expired it: no later than the send time of its last successful renewal plus the
/// lease (the watchdog takes a tenth of the lease off as a safety margin). A renewed hold on a
/// healthy backend, whose lease is shorter than the hung server's command timeout, is renewed
/// all along.
#[test]
fn a_hung_server_costs_only_its_own_holds_which_are_lost_before_their_lease_could_end() {
    const LEASE: Duration = Duration::from_secs(2);
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url()).command_timeout(4).unwrap();
    let redis = RedisBackend::connect_blocking(config).unwrap().shared();
    let recorded = Arc::new(CountingBackend::new(redis));
    let on_redis: SharedBackend = recorded.clone();
    let healthy = MemoryBackend::shared();
    let hold = Lock::with_backend(key("hung"), &on_redis)
        .renewed_lease(LEASE)
        .acquire_blocking()
        .unwrap();
    let kept = Lock::with_backend(key("beside-hung"), &healthy)
        .renewed_lease(0.6)
        .acquire_blocking()
        .unwrap();
    // Let a renewal or two succeed first.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        recorded.last_successful_renewal_sent().is_some(),
        "no renewal reached Redis"
    );
    {
        let _paused = Paused::new(&server);
        let stopped = Instant::now();
        while !hold.is_lease_lost() && stopped.elapsed() < 2 * LEASE {
            std::thread::sleep(Duration::from_millis(5));
        }
        let lost_at = Instant::now();
        assert!(
            hold.is_lease_lost(),
            "lease_lost did not fire within two leases of the server hanging"
        );
        // Read while the server is still stopped: a renewal stuck in it cannot count.
        let deadline = recorded.last_successful_renewal_sent().unwrap() + LEASE;
        assert!(
            lost_at < deadline,
            "declared lost {:?} after the server could already have expired the hold",
            lost_at - deadline
        );
        // The healthy backend kept renewing while the hung one's renewal waited.
        std::thread::sleep(Duration::from_millis(2500));
        assert!(
            kept.is_held_blocking().unwrap(),
            "the healthy backend's hold expired"
        );
        assert!(!kept.is_lease_lost());
    }
    drop(hold);
}

/// A hold registered while the watchdog is planning (scanning its shards, here made long by
/// 40,000 other watched holds spread over them) must still be renewed in time: the watchdog may
/// have scanned the new hold's shard already, and would otherwise sleep up to a second on the
/// older holds' far renewals. Lone short-lease holds, one after another, each registered from a
/// thread of its own (threads are given shards in turn, so each lands at another place in the
/// scan) and kept past its validity.
#[test]
fn a_hold_registered_while_the_watchdog_plans_is_renewed_in_time() {
    // On a backend of their own, with a lease long past the test: never renewed in it (a
    // renewal batch of them all would take the lone holds along, and hold them up).
    let bulk_backend = MemoryBackend::shared();
    let bulk: Vec<Vec<_>> = (0..16)
        .map(|thread| {
            let backend = Arc::clone(&bulk_backend);
            std::thread::spawn(move || {
                (0..2_500)
                    .map(|i| {
                        Lock::with_backend(format!("{}-{thread}-{i}", key("bulk")), &backend)
                            .renewed_lease(600)
                            .acquire_blocking()
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .map(|thread| thread.join().unwrap())
        .collect();
    let backend = MemoryBackend::shared();
    let lease = Duration::from_millis(250);
    for round in 0..64 {
        let lock = Lock::with_backend(key("lone"), &backend).renewed_lease(lease);
        std::thread::spawn(move || {
            let guard = lock.acquire_blocking().unwrap();
            // Past the validity of the acquire alone (lease less a tenth): only a renewal
            // keeps it.
            std::thread::sleep(lease + lease / 4);
            assert!(
                !guard.is_lease_lost() && guard.is_held_blocking().unwrap(),
                "round {round}: a hold registered while the watchdog planned was not renewed"
            );
        })
        .join()
        .unwrap();
    }
    drop(bulk);
}

/// A hold on one backend, dropped while its renewal is on its way, and an equal hold (same key,
/// owner, fence, kind) then taken by the same thread on another backend: the second reuses the
/// first's slot in the watchdog's books, and the first's renewal answer ("gone") must not be
/// settled on it. (Found by a review; it failed before the watchdog compared backends too.)
#[test]
fn an_equal_hold_on_another_backend_is_not_declared_lost_by_the_first_ones_renewal() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let entered = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&entered);
    let name = key("same-hold");
    // Two memory backends whose next fences for the key are equal: each backend counts fences
    // per shard of its table, and its hasher (so the key's shard) is seeded apart, so a pair
    // agrees about once in 64.
    let (slow_memory, other) = (0..10_000)
        .map(|_| (MemoryBackend::shared(), MemoryBackend::shared()))
        .find(|(a, b)| {
            let fence = |backend: &SharedBackend| {
                let guard = Lock::with_backend(name.as_str(), backend)
                    .exp(60)
                    .acquire_blocking()
                    .unwrap();
                guard.fence()
            };
            fence(a) == fence(b)
        })
        .expect("two backends whose fences for the key agree");
    let slow: SharedBackend = Arc::new(CountingBackend::with_hook(slow_memory, move || {
        seen.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(300));
    }));
    std::thread::spawn(move || {
        let first = Lock::with_backend(name.as_str(), &slow)
            .renewed_lease(0.6)
            .acquire_blocking()
            .unwrap();
        while !entered.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let first_fence = first.fence();
        drop(first);
        let second = Lock::with_backend(name.as_str(), &other)
            .renewed_lease(0.6)
            .acquire_blocking()
            .unwrap();
        assert_eq!(
            second.fence(),
            first_fence,
            "fences differ: no collision to test"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(second.is_held_blocking().unwrap(), "really gone");
        assert!(
            !second.is_lease_lost(),
            "a healthy hold on another backend was declared lost"
        );
    })
    .join()
    .unwrap();
}

/// An acquire answered only after its lease could have ended on the server (a slow server, a
/// client paused mid-call) gives a hold the watchdog counts as lost at once: a hold's validity
/// counts from its acquire's send time, whatever the server did. Also as the process's first
/// watched hold, whose acquire was sent before the watchdog (and the epoch its books count
/// from) existed: run in a child process, where no other test came first.
#[test]
fn a_hold_whose_acquire_answered_after_its_lease_could_end_is_lost_at_once() {
    a_late_answered_acquire_is_lost_at_once();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "first_watched_hold_worker",
            "--test-threads=1",
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "as the process's first watched hold: {status}"
    );
}

#[test]
#[ignore = "run as a child process by a_hold_whose_acquire_answered_after_its_lease_could_end_is_lost_at_once"]
fn first_watched_hold_worker() {
    a_late_answered_acquire_is_lost_at_once();
}

fn a_late_answered_acquire_is_lost_at_once() {
    let slow: SharedBackend = Arc::new(
        CountingBackend::new(MemoryBackend::shared())
            .with_acquire_delay(Duration::from_millis(600)),
    );
    let guard = Lock::with_backend(key("late-answer"), &slow)
        .renewed_lease(0.3)
        .acquire_blocking()
        .unwrap();
    assert!(
        guard.is_lease_lost(),
        "a hold whose acquire was sent a whole lease ago looks live"
    );
}
