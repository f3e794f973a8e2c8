//! lockwright's metrics, scraped as Prometheus text (`metrics-exporter-prometheus`, installed as
//! the global recorder of this binary) after known locking, on the memory backend and on a real
//! Redis server: every counter holds the exact count of what was done, every histogram the exact
//! number of samples. And `cargo run --example prometheus` prints them too.
//!
//! The backends' series are told apart by their `backend` label, so the two tests share the
//! recorder without sharing a series.

use std::sync::mpsc;
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use lockwright::telemetry::{
    ACQUIRED, ACQUIRE_ATTEMPTS, ACQUIRE_REFUSED, ACQUIRE_TIMED_OUT, ACQUIRE_WAIT_SECONDS,
    BACKEND_ERRORS, HOLD_SECONDS, LEASE_LOST, POOL_ACQUIRED, POOL_ACQUIRE_ATTEMPTS,
    POOL_ACQUIRE_REFUSED, POOL_ACQUIRE_TIMED_OUT, POOL_ACQUIRE_WAIT_SECONDS, POOL_HOLD_SECONDS,
    RENEWALS, RENEWAL_FAILURES,
};
use lockwright::{Lock, LockError, MemoryBackend, Pool, SharedBackend};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

#[cfg(feature = "redis")]
#[path = "../lock-core/tests/support/mod.rs"]
mod support;

/// Generous bound for what the watchdog does on its own (a renewal every third of 0.3 s).
const LIVENESS: Duration = Duration::from_secs(20);

fn recorder() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .install_recorder()
            .expect("the only recorder of this binary");
        lockwright::telemetry::describe_metrics();
        handle
    })
}

/// The value of the series `name{labels}` in a Prometheus text scrape (labels in any order);
/// `None` when there is no such series.
fn sample(scrape: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut wanted = labels.to_vec();
    wanted.sort_unstable();
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            let mut found = series_labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (label, value) = pair.split_once('=')?;
                    Some((label, value.trim_matches('"')))
                })
                .collect::<Option<Vec<_>>>()?;
            found.sort_unstable();
            (found == wanted).then(|| value.parse().ok()).flatten()
        })
}

/// What the scrape says for `name` on backend `kind` (with `extra` labels); 0 when absent.
fn value(scrape: &str, name: &str, kind: &str, extra: &[(&str, &str)]) -> f64 {
    let mut labels = vec![("backend", kind)];
    labels.extend_from_slice(extra);
    sample(scrape, name, &labels).unwrap_or(0.0)
}

/// Scrapes until `name` on `kind` reaches `at_least` (the watchdog works on its own time).
fn wait_for(name: &str, kind: &str, extra: &[(&str, &str)], at_least: f64) {
    let start = Instant::now();
    while value(&recorder().render(), name, kind, extra) < at_least {
        assert!(
            start.elapsed() < LIVENESS,
            "{name} on {kind} never reached {at_least}:\n{}",
            recorder().render()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Holds `key` on another thread (another owner) until the returned sender is used or dropped.
fn held_elsewhere(
    key: &str,
    backend: &SharedBackend,
) -> (mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (release, released) = mpsc::channel::<()>();
    let (held, is_held) = mpsc::channel();
    let lock = Lock::with_backend(key, backend).exp(30);
    let holder = thread::spawn(move || {
        let guard = lock.acquire_blocking().unwrap();
        held.send(()).unwrap();
        let _ = released.recv();
        drop(guard);
    });
    is_held.recv().unwrap();
    (release, holder)
}

/// The locking both backends get, and the counts it must leave behind.
///
/// 7 acquired (3 uncontended, a holder, a waiter, a hold that is then lost, a renewed hold),
/// 3 refused, 2 timed out, 1 lease lost, and every guard released.
fn lock_and_check(backend: &SharedBackend, kind: &str, prefix: &str) {
    let key = |name: &str| format!("{prefix}-{name}");
    recorder();
    for id in 0..3 {
        let guard = Lock::with_backend(key(&format!("job-{id}")), backend)
            .exp(10)
            .acquire_blocking()
            .unwrap();
        drop(guard);
    }

    let (release, holder) = held_elsewhere(&key("held"), backend);
    let contender = Lock::with_backend(key("held"), backend).exp(10);
    assert!(matches!(
        contender.acquire_blocking(),
        Err(LockError::Locked { .. })
    ));
    assert!(contender.try_acquire_blocking().unwrap().is_none());
    assert!(!contender.try_lock_blocking().unwrap());
    assert!(matches!(
        contender
            .clone()
            .nowait(false)
            .timeout(0.05)
            .acquire_blocking(),
        Err(LockError::TimedOut { .. })
    ));
    assert!(!contender.try_lock_for_blocking(0.05).unwrap());
    let waiter = contender.nowait(false).timeout(30);
    let waiting = thread::spawn(move || waiter.acquire_blocking().map(drop));
    thread::sleep(Duration::from_millis(30));
    release.send(()).unwrap();
    holder.join().unwrap();
    waiting.join().unwrap().unwrap();

    let lost = Lock::with_backend(key("lost"), backend).renewed_lease(0.3);
    let guard = lost.acquire_blocking().unwrap();
    lost.force_unlock_blocking().unwrap();
    guard.lease_lost_blocking();
    drop(guard);
    // Counted by the watchdog right after it fires the guard's signal.
    wait_for(LEASE_LOST, kind, &[], 1.0);

    let renewed = Lock::with_backend(key("renewed"), backend).renewed_lease(0.3);
    let guard = renewed.acquire_blocking().unwrap();
    wait_for(RENEWALS, kind, &[], 1.0);
    drop(guard);

    let scrape = recorder().render();
    let count = |name: &str, extra: &[(&str, &str)]| value(&scrape, name, kind, extra);
    assert_eq!(count(ACQUIRED, &[]), 7.0, "{scrape}");
    assert_eq!(count(ACQUIRE_REFUSED, &[]), 3.0, "{scrape}");
    assert_eq!(count(ACQUIRE_TIMED_OUT, &[]), 2.0, "{scrape}");
    assert_eq!(count(ACQUIRE_ATTEMPTS, &[]), 12.0, "{scrape}");
    assert_eq!(count(LEASE_LOST, &[]), 1.0, "{scrape}");
    assert!(count(RENEWALS, &[]) >= 1.0, "{scrape}");
    assert_eq!(count(RENEWAL_FAILURES, &[]), 0.0, "{scrape}");
    let wait_count = format!("{ACQUIRE_WAIT_SECONDS}_count");
    assert_eq!(
        count(&wait_count, &[("outcome", "acquired")]),
        7.0,
        "{scrape}"
    );
    assert_eq!(
        count(&wait_count, &[("outcome", "timed_out")]),
        2.0,
        "{scrape}"
    );
    assert_eq!(
        count(&format!("{HOLD_SECONDS}_count"), &[]),
        7.0,
        "{scrape}"
    );
    assert!(
        !scrape.contains(prefix),
        "a key reached the metrics:\n{scrape}"
    );
    assert!(
        scrape.contains(&format!("# HELP {ACQUIRED} ")),
        "no description:\n{scrape}"
    );
    pool_and_check(backend, kind, prefix);
}

/// The pools' metrics, beside the locks' (which they leave alone): 3 slots taken (2 at once,
/// then a waiter), 2 refused, 1 timed out, every slot given back.
fn pool_and_check(backend: &SharedBackend, kind: &str, prefix: &str) {
    let pool = Pool::with_backend(format!("{prefix}-pool"), 2, backend).exp(10);
    let first = pool.acquire_blocking().unwrap();
    // The async path too.
    let second = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(pool.acquire())
        .unwrap();
    assert!(matches!(
        pool.acquire_blocking(),
        Err(LockError::PoolFull { .. })
    ));
    assert!(pool.try_acquire_blocking().unwrap().is_none());
    assert!(matches!(
        pool.clone().nowait(false).timeout(0.05).acquire_blocking(),
        Err(LockError::TimedOut { .. })
    ));
    let waiter = pool.clone().nowait(false).timeout(30);
    let waiting = thread::spawn(move || waiter.acquire_blocking().map(drop));
    thread::sleep(Duration::from_millis(30));
    drop(first);
    waiting.join().unwrap().unwrap();
    drop(second);

    let scrape = recorder().render();
    let count = |name: &str, extra: &[(&str, &str)]| value(&scrape, name, kind, extra);
    assert_eq!(count(POOL_ACQUIRED, &[]), 3.0, "{scrape}");
    assert_eq!(count(POOL_ACQUIRE_REFUSED, &[]), 2.0, "{scrape}");
    assert_eq!(count(POOL_ACQUIRE_TIMED_OUT, &[]), 1.0, "{scrape}");
    assert_eq!(count(POOL_ACQUIRE_ATTEMPTS, &[]), 6.0, "{scrape}");
    let wait_count = format!("{POOL_ACQUIRE_WAIT_SECONDS}_count");
    assert_eq!(
        count(&wait_count, &[("outcome", "acquired")]),
        3.0,
        "{scrape}"
    );
    assert_eq!(
        count(&wait_count, &[("outcome", "timed_out")]),
        1.0,
        "{scrape}"
    );
    assert_eq!(
        count(&format!("{POOL_HOLD_SECONDS}_count"), &[]),
        3.0,
        "{scrape}"
    );
    assert!(
        scrape.contains(&format!("# HELP {POOL_ACQUIRED} ")),
        "no description:\n{scrape}"
    );
}

#[test]
fn memory_backend_metrics_count_every_outcome() {
    let backend = MemoryBackend::shared();
    lock_and_check(&backend, "memory", "metrics-memory");
    let scrape = recorder().render();
    assert_eq!(
        value(
            &scrape,
            BACKEND_ERRORS,
            "memory",
            &[("operation", "acquire")]
        ),
        0.0
    );
}

/// On Redis also the failures: with the server gone, an acquire is a backend error, and the
/// watchdog's renewals fail until it declares the hold lost.
#[cfg(feature = "redis")]
#[test]
fn redis_backend_metrics_count_every_outcome_and_its_failures() {
    use lockwright::{RedisBackend, RedisConfig};

    let mut server = support::RedisServer::start();
    let config = RedisConfig::new(server.url())
        .command_timeout(1)
        .unwrap()
        .connect_timeout(1)
        .unwrap();
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    lock_and_check(&backend, "redis", "metrics-redis");

    let doomed = Lock::with_backend("metrics-redis-doomed", &backend)
        .renewed_lease(0.6)
        .acquire_blocking()
        .unwrap();
    server.kill();
    let err = Lock::with_backend("metrics-redis-down", &backend)
        .acquire_blocking()
        .unwrap_err();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
    wait_for(RENEWAL_FAILURES, "redis", &[], 1.0);
    let start = Instant::now();
    while !doomed.is_lease_lost() {
        assert!(
            start.elapsed() < LIVENESS,
            "the hold was never declared lost"
        );
        thread::sleep(Duration::from_millis(20));
    }
    wait_for(LEASE_LOST, "redis", &[], 2.0);
    let scrape = recorder().render();
    let count = |name: &str, extra: &[(&str, &str)]| value(&scrape, name, "redis", extra);
    assert_eq!(
        count(BACKEND_ERRORS, &[("operation", "acquire")]),
        1.0,
        "{scrape}"
    );
    assert!(
        count(BACKEND_ERRORS, &[("operation", "renew")]) >= 1.0,
        "{scrape}"
    );
    // The attempts of the first part, the doomed hold, and the one that failed.
    assert_eq!(count(ACQUIRE_ATTEMPTS, &[]), 14.0, "{scrape}");
    assert_eq!(count(ACQUIRED, &[]), 8.0, "{scrape}");
    assert_eq!(count(LEASE_LOST, &[]), 2.0, "{scrape}");
    drop(doomed);
}

/// `cargo run --example prometheus` prints the scrape of its own locking: 5 acquired (3 jobs,
/// the holder, the waiter), 1 refused, 1 timed out, and a histogram sample per acquire and hold.
#[test]
fn prometheus_example_prints_the_counters_of_its_locking() {
    let example = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("examples").join("prometheus")))
        .filter(|path| path.exists())
        .expect(
            "build the examples first (`cargo test --workspace` does, or `cargo build --examples`)",
        );
    let output = std::process::Command::new(example)
        .output()
        .expect("run the example");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let count = |name: &str, extra: &[(&str, &str)]| value(&stdout, name, "memory", extra);
    assert_eq!(count(ACQUIRED, &[]), 5.0, "{stdout}");
    assert_eq!(count(ACQUIRE_REFUSED, &[]), 1.0, "{stdout}");
    assert_eq!(count(ACQUIRE_TIMED_OUT, &[]), 1.0, "{stdout}");
    assert_eq!(count(ACQUIRE_ATTEMPTS, &[]), 7.0, "{stdout}");
    let wait_count = format!("{ACQUIRE_WAIT_SECONDS}_count");
    assert_eq!(
        count(&wait_count, &[("outcome", "acquired")]),
        5.0,
        "{stdout}"
    );
    assert_eq!(
        count(&wait_count, &[("outcome", "timed_out")]),
        1.0,
        "{stdout}"
    );
    assert_eq!(
        count(&format!("{HOLD_SECONDS}_count"), &[]),
        5.0,
        "{stdout}"
    );
    for line in [
        "refused at once: report-7 is held",
        "timed out after 50 ms: report-7 is held",
        &format!("# TYPE {HOLD_SECONDS} histogram"),
        &format!("# HELP {ACQUIRED} "),
    ] {
        assert!(stdout.contains(line), "no {line:?} in:\n{stdout}");
    }
}
