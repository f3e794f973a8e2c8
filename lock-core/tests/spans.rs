//! The `tracing` spans and events of lock operations (see `lock_core::telemetry`): an acquire's
//! span carries its key, backend, fence, wait and outcome; a release's its key, fence and
//! outcome; a lost lease is one `WARN` event; a backend error a `DEBUG` event; no password
//! reaches any field. Spans and events are captured by the harness's global subscriber.
//!
//! Every test uses its own keys: the capture is shared by the whole binary.

use std::time::{Duration, Instant};

use lock_core::{Lock, LockError, MemoryBackend, SharedBackend};

#[cfg(feature = "redis")]
mod support;
#[cfg(feature = "redis")]
use support::logs;

#[cfg(not(feature = "redis"))]
#[path = "support/logs.rs"]
#[allow(dead_code)]
mod logs;

/// Generous bound for what the watchdog reports from its own thread.
const LIVENESS: Duration = Duration::from_secs(20);

const ACQUIRE: &str = lock_core::telemetry::ACQUIRE_SPAN;
const RELEASE: &str = lock_core::telemetry::RELEASE_SPAN;

/// The one captured span named `name` with every one of `fields`.
fn the_span(name: &str, fields: &[&str]) -> String {
    let spans = logs::spans_containing_all(name, fields);
    assert_eq!(
        spans.len(),
        1,
        "want one {name} span with {fields:?}, found: {spans:#?}\nall:\n{}",
        logs::everything_captured()
    );
    spans.into_iter().next().unwrap()
}

/// The number in `field=N` of a captured span.
fn number_field(span: &str, field: &str) -> u64 {
    let start = span
        .find(&format!(" {field}="))
        .unwrap_or_else(|| panic!("no {field} in {span}"))
        + field.len()
        + 2;
    span[start..]
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{field} is not a number in {span}"))
}

/// Holds `key` on another thread until the returned sender is dropped.
fn held_elsewhere(key: &str, backend: &SharedBackend) -> std::sync::mpsc::Sender<()> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel();
    let lock = Lock::with_backend(key, backend).exp(30);
    std::thread::spawn(move || {
        let _guard = lock.acquire_blocking().unwrap();
        held.send(()).unwrap();
        let _ = stopped.recv();
    });
    is_held.recv().unwrap();
    stop
}

#[test]
fn an_acquire_span_carries_key_backend_fence_wait_and_outcome() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let guard = Lock::with_backend("spans-acquired", &backend)
        .acquire_blocking()
        .unwrap();
    let fence = guard.fence();
    let span = the_span(
        ACQUIRE,
        &[
            "key=\"spans-acquired\"",
            "backend=\"memory\"",
            &format!("fence={fence}"),
            "waited_ms=0",
            "outcome=\"acquired\"",
        ],
    );
    assert!(span.starts_with("DEBUG "), "{span}");
    // Dropping the guard is its release: a span of its own, with the same fence.
    drop(guard);
    the_span(
        RELEASE,
        &[
            "key=\"spans-acquired\"",
            "backend=\"memory\"",
            &format!("fence={fence}"),
            "outcome=\"dropped\"",
        ],
    );
    let events = logs::events_containing_all("DEBUG", &["outcome=\"acquired\""]);
    assert!(
        !events.is_empty(),
        "no DEBUG event with the acquire's outcome"
    );
    assert!(
        logs::events_containing_all("INFO", &["outcome="]).is_empty(),
        "nothing is logged at INFO per operation"
    );
}

#[tokio::test]
async fn async_acquires_and_explicit_releases_have_their_spans_too() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let guard = Lock::with_backend("spans-async", &backend)
        .exp(10)
        .acquire()
        .await
        .unwrap();
    let fence = format!("fence={}", guard.fence());
    the_span(
        ACQUIRE,
        &["key=\"spans-async\"", &fence, "outcome=\"acquired\""],
    );
    guard.release().await.unwrap();
    the_span(
        RELEASE,
        &["key=\"spans-async\"", &fence, "outcome=\"released\""],
    );
}

#[test]
fn refused_and_timed_out_acquires_say_so_and_how_long_they_waited() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let _holder = held_elsewhere("spans-contended", &backend);
    let err = Lock::with_backend("spans-contended", &backend)
        .acquire_blocking()
        .unwrap_err();
    assert!(matches!(err, LockError::Locked { .. }), "{err:?}");
    the_span(
        ACQUIRE,
        &[
            "key=\"spans-contended\"",
            "outcome=\"refused\"",
            "waited_ms=0",
        ],
    );
    assert!(
        logs::spans_containing_all(
            ACQUIRE,
            &["key=\"spans-contended\"", "outcome=\"refused\"", "fence="]
        )
        .is_empty(),
        "a refused acquire has no fence"
    );

    let start = Instant::now();
    let err = Lock::with_backend("spans-contended", &backend)
        .nowait(false)
        .timeout(0.05)
        .acquire_blocking()
        .unwrap_err();
    let elapsed = start.elapsed();
    assert!(matches!(err, LockError::TimedOut { .. }), "{err:?}");
    let span = the_span(
        ACQUIRE,
        &["key=\"spans-contended\"", "outcome=\"timed_out\""],
    );
    assert!(
        Duration::from_millis(number_field(&span, "waited_ms")) <= elapsed,
        "waited more than the call took: {span}, call {elapsed:?}"
    );
}

#[test]
fn an_unlock_without_a_hold_is_a_release_span_saying_not_owner() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let lock = Lock::with_backend("spans-not-owner", &backend);
    assert!(matches!(
        lock.unlock_blocking(),
        Err(LockError::NotOwner { .. })
    ));
    the_span(
        RELEASE,
        &["key=\"spans-not-owner\"", "outcome=\"not_owner\""],
    );
}

#[test]
fn a_lease_lost_under_the_watchdog_is_one_warning_with_key_and_fence() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let lock = Lock::with_backend("spans-lost-watchdog", &backend).renewed_lease(0.3);
    let guard = lock.acquire_blocking().unwrap();
    let fence = format!("fence={}", guard.fence());
    lock.force_unlock_blocking().unwrap();
    guard.lease_lost_blocking();
    let err = guard.release_blocking().unwrap_err();
    assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
    // The watchdog reports the loss right after it fires the signal (outside its lock).
    let texts = ["key=\"spans-lost-watchdog\"", "lease lost"];
    assert!(logs::event_containing_all("WARN", &texts, LIVENESS).is_some());
    let warnings = logs::events_containing_all("WARN", &texts);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains(&fence), "{}", warnings[0]);
    assert!(
        warnings[0].contains("found_by=\"watchdog\""),
        "{}",
        warnings[0]
    );
    the_span(
        RELEASE,
        &[
            "key=\"spans-lost-watchdog\"",
            &fence,
            "outcome=\"lease_lost\"",
        ],
    );
}

#[test]
fn a_lease_lost_found_by_the_guard_itself_is_one_warning_too() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let lock = Lock::with_backend("spans-lost-guard", &backend).exp(30);
    let guard = lock.acquire_blocking().unwrap();
    lock.force_unlock_blocking().unwrap();
    assert!(matches!(
        guard.release_blocking(),
        Err(LockError::LeaseLost { .. })
    ));
    let warnings = logs::events_containing_all("WARN", &["key=\"spans-lost-guard\"", "lease lost"]);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(
        warnings[0].contains("found_by=\"guard\""),
        "{}",
        warnings[0]
    );
}

/// On Redis, with a password in the URL: the spans name the backend, a backend error is a
/// `DEBUG` event naming the operation, and the password appears in no span or event.
#[cfg(feature = "redis")]
#[test]
fn redis_spans_and_backend_errors_carry_no_password() {
    use lock_core::{RedisBackend, RedisConfig};

    const PASSWORD: &str = "spans-secret-pw-4417";
    logs::capture_spans();
    let mut server = support::RedisServer::start_with(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", server.port);
    let config = RedisConfig::new(url)
        .command_timeout(1)
        .unwrap()
        .connect_timeout(1)
        .unwrap();
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    let lock = Lock::with_backend("spans-redis", &backend).exp(30);
    let guard = lock.acquire_blocking().unwrap();
    let fence = format!("fence={}", guard.fence());
    the_span(
        ACQUIRE,
        &[
            "key=\"spans-redis\"",
            "backend=\"redis\"",
            &fence,
            "outcome=\"acquired\"",
        ],
    );
    guard.release_blocking().unwrap();
    the_span(
        RELEASE,
        &["key=\"spans-redis\"", &fence, "outcome=\"released\""],
    );

    server.kill();
    let err = Lock::with_backend("spans-redis-down", &backend)
        .acquire_blocking()
        .unwrap_err();
    assert!(matches!(err, LockError::Backend { .. }), "{err:?}");
    the_span(ACQUIRE, &["key=\"spans-redis-down\"", "outcome=\"error\""]);
    let errors = logs::events_containing_all(
        "DEBUG",
        &[
            "key=\"spans-redis-down\"",
            "operation=\"acquire\"",
            "backend error",
        ],
    );
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let captured = logs::everything_captured();
    assert!(
        !captured.contains(PASSWORD),
        "the password reached a span or event:\n{captured}"
    );
}

#[test]
fn pool_acquires_and_releases_have_spans_of_their_own() {
    logs::capture_spans();
    let backend = MemoryBackend::shared();
    let pool = lock_core::Pool::with_backend("spans-pool", 1, &backend).exp(10);
    let slot = pool.acquire_blocking().unwrap();
    let token = format!("fence={}", slot.slot());
    const POOL_ACQUIRE: &str = lock_core::telemetry::POOL_ACQUIRE_SPAN;
    const POOL_RELEASE: &str = lock_core::telemetry::POOL_RELEASE_SPAN;
    let span = the_span(
        POOL_ACQUIRE,
        &[
            "key=\"spans-pool\"",
            "backend=\"memory\"",
            &token,
            "waited_ms=0",
            "outcome=\"acquired\"",
        ],
    );
    assert!(span.starts_with("DEBUG "), "{span}");
    let err = pool.acquire_blocking().unwrap_err();
    assert!(matches!(err, LockError::PoolFull { .. }), "{err:?}");
    the_span(POOL_ACQUIRE, &["key=\"spans-pool\"", "outcome=\"refused\""]);
    slot.release_blocking().unwrap();
    the_span(
        POOL_RELEASE,
        &["key=\"spans-pool\"", &token, "outcome=\"released\""],
    );
    drop(pool.acquire_blocking().unwrap());
    the_span(POOL_RELEASE, &["key=\"spans-pool\"", "outcome=\"dropped\""]);
    assert!(
        logs::spans_containing_all(ACQUIRE, &["key=\"spans-pool\""]).is_empty(),
        "a pool's acquire is not a lock's"
    );
}
