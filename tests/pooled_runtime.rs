//! `#[pooled]` and `pool_size!` at run time, on the in-memory backend and on Redis:
//! py-cachify's example of four workers on a pool of two, `on_full` and the error without it,
//! waiting for a slot, pools isolated by the key's arguments, `pool_size!` inside and outside the
//! body, the slot given back on panic, `?` and a dropped future, functions that return a future,
//! sizes from constants, `backend = ...`.
//!
//! Sync tests contend from threads, async tests from tasks. Every test uses its own keys: tests
//! share the process-wide global backend. With the `redis` feature the binary runs its tests
//! again against a real `redis-server` it starts (the global backend is then Redis; the
//! `backend = ...` test's other backend stays in memory).

use std::panic;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::LazyLock;
use std::thread;
use std::time::{Duration, Instant};

use lockwright::{pool_size, pooled, LockError, MemoryBackend, Pool, SharedBackend};

#[cfg(feature = "redis")]
#[path = "../lock-core/tests/support/mod.rs"]
mod support;

#[cfg(feature = "redis")]
/// Set by `the_same_tests_pass_on_the_redis_backend` when it re-runs this binary.
const REDIS_RUN: &str = "LOCKWRIGHT_POOLED_TESTS_REDIS";

/// Every test starts here: the global backend is the in-memory default, or a real Redis server
/// when this binary is the Redis re-run. One source, both backends.
fn setup() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        #[cfg(feature = "redis")]
        if let Ok(url) = std::env::var(REDIS_RUN) {
            let backend =
                lockwright::RedisBackend::connect_blocking(lockwright::RedisConfig::new(url))
                    .expect("connect to the test redis-server");
            lockwright::set_global_backend(backend.shared());
        }
    });
}

#[cfg(feature = "redis")]
#[test]
fn the_same_tests_pass_on_the_redis_backend() {
    if std::env::var_os(REDIS_RUN).is_some() {
        return; // this is the re-run itself
    }
    let server = support::RedisServer::start();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--skip", "the_same_tests_pass_on_the_redis_backend"])
        .env(REDIS_RUN, server.url())
        .output()
        .expect("re-run this test binary");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "on Redis:\n{stdout}\n{stderr}");
    let passed: usize = stdout
        .lines()
        .find_map(|line| line.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a libtest summary line");
    assert!(passed >= 14, "only {passed} tests ran on Redis:\n{stdout}");
}

/// How long a test waits for something that must happen soon: a liveness bound only.
const LIVENESS: Duration = Duration::from_secs(30);

/// Waits until `size()` reads `expected` (a slot dropped mid-flight may be given back in the
/// background on some backends), failing after [`LIVENESS`].
fn settles_at(expected: u32, size: impl Fn() -> Result<u32, LockError>) {
    let start = Instant::now();
    loop {
        let now = size().expect("pool_size!");
        if now == expected {
            return;
        }
        assert!(
            start.elapsed() < LIVENESS,
            "the pool still has {now} slots, expected {expected}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// py-cachify's example: four workers on a pool of two

/// Works until told to leave (py-cachify's `@pooled(key='user-limit-{user_id}', max_size=2)`).
#[pooled(key = "user-limit-{user_id}", max_size = 2)]
fn worker(
    user_id: u32,
    entered: mpsc::Sender<()>,
    leave: mpsc::Receiver<()>,
) -> Result<&'static str, LockError> {
    entered.send(()).unwrap();
    leave.recv_timeout(LIVENESS).unwrap();
    Ok("worked")
}

/// The same pool, with py-cachify's `on_full` (and `raise_on_full=False`).
#[pooled(key = "user-limit-{user_id}", max_size = 2, on_full = "refused", on_error = |_| "failed")]
fn worker_or_refused(user_id: u32) -> &'static str {
    let _ = user_id;
    "worked"
}

/// A worker parked inside `worker(user_id, ..)` on another thread; `leave` lets it finish.
fn park_in_worker(user_id: u32) -> (mpsc::Sender<()>, thread::JoinHandle<&'static str>) {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (leave_tx, leave_rx) = mpsc::channel();
    let thread = thread::spawn(move || worker(user_id, entered_tx, leave_rx).unwrap());
    entered_rx
        .recv_timeout(LIVENESS)
        .expect("the worker entered");
    (leave_tx, thread)
}

#[test]
fn four_workers_on_a_pool_of_two_two_work_and_two_are_refused() {
    setup();
    let first = park_in_worker(1);
    let second = park_in_worker(1);
    assert_eq!(pool_size!(worker_or_refused(1)).blocking().unwrap(), 2);

    // Without `on_full`: py-cachify's `CachifyPoolFullError`.
    let (entered_tx, _entered_rx) = mpsc::channel();
    let (_leave_tx, leave_rx) = mpsc::channel();
    match worker(1, entered_tx, leave_rx) {
        Err(LockError::PoolFull { key, max_size }) => {
            assert_eq!((&*key, max_size), ("user-limit-1", 2));
        }
        other => panic!("expected PoolFull, got {other:?}"),
    }
    // With `on_full`: its value, and the body does not run.
    assert_eq!(worker_or_refused(1), "refused");

    for (leave, thread) in [first, second] {
        leave.send(()).unwrap();
        assert_eq!(thread.join().unwrap(), "worked");
    }
    settles_at(0, || pool_size!(worker_or_refused(1)).blocking());
    assert_eq!(worker_or_refused(1), "worked");
}

#[pooled(key = "async-user-limit-{user_id}", max_size = 2, on_full = Err("refused"), on_error = |_| Err("failed"))]
async fn async_worker(
    user_id: u32,
    entered: tokio::sync::mpsc::Sender<()>,
    leave: tokio::sync::oneshot::Receiver<()>,
) -> Result<&'static str, &'static str> {
    entered.send(()).await.unwrap();
    // Bounded, so a broken pool fails the test instead of hanging it.
    match tokio::time::timeout(LIVENESS, leave).await {
        Ok(Ok(())) => Ok("worked"),
        _ => Err("never told to leave"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_four_workers_on_a_pool_of_two_two_work_and_two_are_refused() {
    setup();
    let (entered_tx, mut entered_rx) = tokio::sync::mpsc::channel(4);
    let mut leaves = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (leave_tx, leave_rx) = tokio::sync::oneshot::channel();
        leaves.push(leave_tx);
        tasks.push(tokio::spawn(async_worker(7, entered_tx.clone(), leave_rx)));
        tokio::time::timeout(LIVENESS, entered_rx.recv())
            .await
            .expect("the worker entered");
    }
    assert_eq!(
        pool_size!(async_worker(
            7,
            entered_tx.clone(),
            tokio::sync::oneshot::channel().1
        ))
        .await
        .unwrap(),
        2
    );
    for _ in 0..2 {
        let (_leave_tx, leave_rx) = tokio::sync::oneshot::channel();
        assert_eq!(
            async_worker(7, entered_tx.clone(), leave_rx).await,
            Err("refused")
        );
    }
    for leave in leaves {
        leave.send(()).unwrap();
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok("worked"));
    }
    let (leave_tx, leave_rx) = tokio::sync::oneshot::channel();
    leave_tx.send(()).unwrap();
    assert_eq!(async_worker(7, entered_tx, leave_rx).await, Ok("worked"));
}

// ---------------------------------------------------------------------------------------------
// Waiting

#[pooled(key = "wait-{case}", max_size = 1, nowait = false, timeout = 30)]
fn waits_for_a_slot(case: &str, holder_left: &AtomicBool) -> Result<bool, LockError> {
    Ok(holder_left.load(Ordering::SeqCst))
}

#[pooled(key = "wait-{case}", max_size = 1, timeout = 0.2)]
fn waits_briefly(case: &str) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn waiting_with_nowait_false_and_a_timeout_gets_a_slot_when_one_frees() {
    setup();
    static HOLDER_LEFT: AtomicBool = AtomicBool::new(false);
    let holder = Pool::new("wait-frees", 1).acquire_blocking().unwrap();
    let waiter = thread::spawn(|| waits_for_a_slot("frees", &HOLDER_LEFT));
    // The waiter cannot have run yet: the only slot is taken.
    thread::sleep(Duration::from_millis(50));
    assert!(!waiter.is_finished());
    HOLDER_LEFT.store(true, Ordering::SeqCst);
    drop(holder);
    assert!(
        waiter.join().unwrap().unwrap(),
        "it ran after the slot freed"
    );
}

#[test]
fn a_timeout_alone_waits_and_then_times_out() {
    setup();
    let _holder = Pool::new("wait-times-out", 1).acquire_blocking().unwrap();
    match waits_briefly("times-out") {
        Err(LockError::TimedOut { key, waited }) => {
            assert_eq!(&*key, "wait-times-out");
            assert_eq!(waited, Duration::from_millis(200));
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Keys, `pool_size!`

#[pooled(key = "isolated-{user_id}", max_size = 2)]
fn isolated(user_id: u32) -> Result<u32, LockError> {
    Ok(user_id)
}

#[test]
fn the_key_from_arguments_isolates_pools() {
    setup();
    let _one = Pool::new("isolated-1", 2).acquire_blocking().unwrap();
    let _two = Pool::new("isolated-1", 2).acquire_blocking().unwrap();
    assert_eq!(pool_size!(isolated(1)).blocking().unwrap(), 2);
    assert_eq!(pool_size!(isolated(2)).blocking().unwrap(), 0);
    assert!(matches!(isolated(1), Err(LockError::PoolFull { .. })));
    assert_eq!(isolated(2).unwrap(), 2);
}

#[pooled(key = "inside-{id}", max_size = 3)]
fn reports_its_pool(id: u32) -> Result<u32, LockError> {
    pool_size!(reports_its_pool(id)).blocking()
}

#[pooled(key = "async-inside-{id}", max_size = 3)]
async fn async_reports_its_pool(id: u32) -> Result<u32, LockError> {
    pool_size!(async_reports_its_pool(id)).await
}

#[test]
fn pool_size_counts_the_calls_inside_and_none_outside() {
    setup();
    assert_eq!(pool_size!(reports_its_pool(1)).blocking().unwrap(), 0);
    assert_eq!(reports_its_pool(1).unwrap(), 1);
    let _other = Pool::new("inside-1", 3).acquire_blocking().unwrap();
    assert_eq!(reports_its_pool(1).unwrap(), 2);
    assert_eq!(pool_size!(reports_its_pool(1)).blocking().unwrap(), 1);
}

#[tokio::test]
async fn async_pool_size_counts_the_calls_inside_and_none_outside() {
    setup();
    assert_eq!(pool_size!(async_reports_its_pool(1)).await.unwrap(), 0);
    assert_eq!(async_reports_its_pool(1).await.unwrap(), 1);
    assert_eq!(pool_size!(async_reports_its_pool(1)).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// The slot is given back on every way out

#[pooled(key = "exit-panic-{id}", max_size = 1)]
fn panics(id: u32) -> Result<(), LockError> {
    panic!("worker {id} failed");
}

#[derive(Debug, PartialEq)]
enum AppError {
    Pool,
    Parse,
}

impl From<LockError> for AppError {
    fn from(_: LockError) -> Self {
        AppError::Pool
    }
}

#[pooled(key = "exit-question-{text}", max_size = 1)]
fn parses(text: &str) -> Result<u32, AppError> {
    let n = text.parse::<u32>().map_err(|_| AppError::Parse)?;
    Ok(n)
}

#[pooled(key = "exit-dropped-{id}", max_size = 1)]
async fn never_finishes(
    id: u32,
    entered: tokio::sync::oneshot::Sender<()>,
) -> Result<(), LockError> {
    let _ = (id, entered.send(()));
    std::future::pending().await
}

#[test]
fn the_slot_is_given_back_when_the_body_panics() {
    setup();
    let result = panic::catch_unwind(|| panics(1));
    assert!(result.is_err(), "the body panicked");
    settles_at(0, || pool_size!(panics(1)).blocking());
}

#[test]
fn the_slot_is_given_back_when_the_body_returns_by_question_mark() {
    setup();
    assert_eq!(parses("x"), Err(AppError::Parse));
    assert_eq!(pool_size!(parses("x")).blocking().unwrap(), 0);
    assert_eq!(
        parses("x"),
        Err(AppError::Parse),
        "not refused: the slot is free"
    );
}

#[tokio::test]
async fn the_slot_is_given_back_when_the_future_is_dropped() {
    setup();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(never_finishes(1, entered_tx));
    tokio::time::timeout(LIVENESS, entered_rx)
        .await
        .expect("the body started")
        .unwrap();
    let (sender, _) = tokio::sync::oneshot::channel();
    assert_eq!(pool_size!(never_finishes(1, sender)).await.unwrap(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    let start = Instant::now();
    loop {
        let (sender, _) = tokio::sync::oneshot::channel();
        if pool_size!(never_finishes(1, sender)).await.unwrap() == 0 {
            break;
        }
        assert!(
            start.elapsed() < LIVENESS,
            "the dropped future kept its slot"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Functions that return a future: the slot is held while the future runs

/// Live slots of the pool `key` (of 1 slot) right now.
async fn slots_of(key: &str) -> u32 {
    Pool::new(key, 1).size().await.unwrap()
}

#[pooled(key = "future-impl-{id}", max_size = 1)]
#[allow(clippy::manual_async_fn)]
fn returns_impl_future(id: u32) -> impl std::future::Future<Output = Result<u32, LockError>> {
    async move {
        tokio::task::yield_now().await;
        Ok(slots_of(&format!("future-impl-{id}")).await)
    }
}

#[async_trait::async_trait]
trait Export {
    async fn export(&self, id: u32) -> Result<u32, LockError>;
}

struct PooledAbove;
struct PooledBelow;

// Above `#[async_trait]`: `#[pooled]` sees the `async fn`.
#[pooled]
#[async_trait::async_trait]
impl Export for PooledAbove {
    #[pooled(key = "export-above-{id}", max_size = 1)]
    async fn export(&self, id: u32) -> Result<u32, LockError> {
        tokio::task::yield_now().await;
        Ok(slots_of(&format!("export-above-{id}")).await)
    }
}

// Below `#[async_trait]`: `#[pooled]` sees the boxed future it made, and holds the slot in it.
#[async_trait::async_trait]
#[pooled]
impl Export for PooledBelow {
    #[pooled(key = "export-below-{id}", max_size = 1)]
    async fn export(&self, id: u32) -> Result<u32, LockError> {
        tokio::task::yield_now().await;
        Ok(slots_of(&format!("export-below-{id}")).await)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_future_runs_in_a_slot_and_gives_it_back_when_done() {
    setup();
    assert_eq!(
        returns_impl_future(1).await.unwrap(),
        1,
        "ran without a slot"
    );
    assert_eq!(slots_of("future-impl-1").await, 0);
    assert_eq!(
        PooledAbove.export(1).await.unwrap(),
        1,
        "ran without a slot"
    );
    assert_eq!(slots_of("export-above-1").await, 0);
    assert_eq!(
        PooledBelow.export(1).await.unwrap(),
        1,
        "ran without a slot"
    );
    assert_eq!(slots_of("export-below-1").await, 0);
    // Building the future takes no slot: it is taken when the future first runs.
    let pending = returns_impl_future(2);
    assert_eq!(slots_of("future-impl-2").await, 0);
    assert_eq!(pending.await.unwrap(), 1);
}

// ---------------------------------------------------------------------------------------------
// Sizes, errors, backends

const SLOTS: u32 = 2;
const NO_SLOTS: u32 = 0;

#[pooled(key = "sized-{id}", max_size = SLOTS)]
fn sized_by_a_constant(id: u32) -> Result<(), LockError> {
    let _ = id;
    Ok(())
}

#[pooled(key = "sized-{id}", max_size = SLOTS + 1, on_full = Ok(false))]
fn sized_otherwise(id: u32) -> Result<bool, LockError> {
    let _ = id;
    Ok(true)
}

#[pooled(key = "broken", max_size = NO_SLOTS)]
fn zero_slots() -> Result<(), LockError> {
    unreachable!("no slot is ever taken")
}

#[test]
fn a_constant_size_is_the_pools_size_and_a_zero_one_is_an_invalid_argument() {
    setup();
    let _held = Pool::new("sized-1", 2).acquire_blocking().unwrap();
    assert_eq!(sized_by_a_constant(1).unwrap(), ());
    assert!(matches!(
        zero_slots(),
        Err(LockError::InvalidArgument {
            name: "max_size",
            ..
        })
    ));
}

#[test]
fn a_size_mismatch_is_an_error_not_on_full() {
    setup();
    let _held = Pool::new("sized-2", 2).acquire_blocking().unwrap();
    match sized_otherwise(2) {
        Err(LockError::PoolSizeMismatch { live, given, .. }) => assert_eq!((live, given), (2, 3)),
        other => panic!("expected PoolSizeMismatch, got {other:?}"),
    }
}

static OTHER_BACKEND: LazyLock<SharedBackend> = LazyLock::new(MemoryBackend::shared);

#[pooled(key = "elsewhere-{id}", max_size = 1, backend = OTHER_BACKEND)]
fn elsewhere(id: u32) -> Result<u32, LockError> {
    pool_size!(elsewhere(id)).blocking()
}

#[test]
fn a_backend_option_is_used_by_the_call_and_by_pool_size() {
    setup();
    let _global = Pool::new("elsewhere-1", 1).acquire_blocking().unwrap();
    assert_eq!(
        elsewhere(1).unwrap(),
        1,
        "the global pool's slot is not this backend's"
    );
    let _there = Pool::with_backend("elsewhere-1", 1, &OTHER_BACKEND)
        .acquire_blocking()
        .unwrap();
    assert_eq!(pool_size!(elsewhere(1)).blocking().unwrap(), 1);
    assert!(matches!(elsewhere(1), Err(LockError::PoolFull { .. })));
}
