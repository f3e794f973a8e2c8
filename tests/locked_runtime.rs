//! `#[locked]`, `is_locked!` and `release!` at run time, on the in-memory backend: exclusion,
//! waiting, methods, `on_locked`, reentrancy, release on every exit, `backend = ...` (py-cachify
//! defect 6) and inner lock errors kept as they are (defect 7). Sync tests contend from threads,
//! async tests from tasks (the lock owner is the task, else the thread).
//!
//! Every test uses its own keys: tests share the process-wide global backend.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::LazyLock;
use std::thread;
use std::time::Duration;

use lockwright::{
    is_locked, locked, release, Lock, LockError, MemoryBackend, RemainingLease, SharedBackend,
};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Holds `lock` on another thread until dropped.
struct HeldElsewhere {
    release: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

#[cfg(feature = "redis")]
#[path = "../lock-core/tests/support/mod.rs"]
mod support;

#[cfg(feature = "redis")]
/// Set by `the_same_tests_pass_on_the_redis_backend` when it re-runs this binary.
const REDIS_RUN: &str = "LOCKWRIGHT_LOCKED_TESTS_REDIS";

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
    assert!(passed >= 30, "only {passed} tests ran on Redis:\n{stdout}");
}

fn hold_elsewhere(lock: Lock) -> HeldElsewhere {
    let (acquired_tx, acquired_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let thread = thread::spawn(move || {
        let guard = lock
            .acquire_blocking()
            .expect("the helper thread takes the lock");
        acquired_tx.send(()).unwrap();
        let _ = release_rx.recv();
        drop(guard);
    });
    acquired_rx.recv().expect("the helper thread took the lock");
    HeldElsewhere {
        release: Some(release_tx),
        thread: Some(thread),
    }
}

impl HeldElsewhere {
    /// Releases after `delay` without blocking the caller.
    fn release_after(mut self, delay: Duration) {
        let release = self.release.take().unwrap();
        thread::spawn(move || {
            thread::sleep(delay);
            let _ = release.send(());
        });
        self.thread.take();
    }
}

impl Drop for HeldElsewhere {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

fn locked_now(key: &str) -> bool {
    Lock::new(key).is_locked_blocking().unwrap()
}

/// The application error of most tests: a lock failure, or a failure of the body.
#[derive(Debug)]
enum AppError {
    Lock(LockError),
    Failed(&'static str),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        AppError::Lock(err)
    }
}

/// An alias, as applications write them: the macro must see through it.
type AppResult<T> = std::result::Result<T, AppError>;

fn is_locked_error(result: &AppResult<impl fmt::Debug>, key: &str) -> bool {
    matches!(result, Err(AppError::Lock(LockError::Locked { key: k })) if &**k == key)
}

// ---------------------------------------------------------------------------------------------
// Exclusion by formatted key, sync

/// Signals when it is inside, then stays until told to leave.
#[locked(key = "gate-{id}")]
fn gated(id: u32, entered: mpsc::Sender<()>, leave: mpsc::Receiver<()>) -> AppResult<u32> {
    entered.send(()).unwrap();
    leave.recv().unwrap();
    Ok(id)
}

/// Runs `gated(id)` on a thread and returns once it is inside, with the means to let it go.
fn park_in_gated(id: u32) -> (mpsc::Sender<()>, thread::JoinHandle<AppResult<u32>>) {
    let (entered_tx, entered_rx) = mpsc::channel();
    let (leave_tx, leave_rx) = mpsc::channel();
    let thread = thread::spawn(move || gated(id, entered_tx, leave_rx));
    entered_rx.recv().unwrap();
    (leave_tx, thread)
}

#[test]
fn same_arguments_exclude_and_different_arguments_do_not() {
    setup();
    let (leave, parked) = park_in_gated(1);
    assert!(is_locked!(gated(1, mpsc::channel().0, mpsc::channel().1))
        .blocking()
        .unwrap());

    // Same id from another thread: refused at once (nowait is the default, as in py-cachify).
    let (entered, _) = mpsc::channel();
    let (_, never) = mpsc::channel();
    assert!(is_locked_error(&gated(1, entered, never), "gate-1"));

    // Another id runs while id 1 is held.
    let (other_leave, other) = park_in_gated(2);
    other_leave.send(()).unwrap();
    assert_eq!(other.join().unwrap().unwrap(), 2);

    leave.send(()).unwrap();
    assert_eq!(parked.join().unwrap().unwrap(), 1);
    assert!(!locked_now("gate-1"));
}

#[test]
fn a_lock_handle_and_a_locked_function_share_the_key_namespace() {
    setup();
    #[locked(key = "ledger-{account}")]
    fn post(account: u64) -> Result<(), LockError> {
        Ok(())
    }

    let held = hold_elsewhere(Lock::new("ledger-7"));
    assert!(matches!(post(7), Err(LockError::Locked { .. })));
    assert!(is_locked!(post(7)).blocking().unwrap());
    drop(held);
    post(7).unwrap();

    // And the other way round: inside the function, a handle on the same key is refused.
    #[locked(key = "journal-{account}")]
    fn inside(account: u64) -> Result<bool, LockError> {
        let other = thread::spawn(move || {
            Lock::new(format!("journal-{account}"))
                .acquire_blocking()
                .map(drop)
        });
        Ok(matches!(
            other.join().unwrap(),
            Err(LockError::Locked { .. })
        ))
    }
    assert!(inside(3).unwrap());
}

// ---------------------------------------------------------------------------------------------
// Exclusion, async

#[locked(key = "async-gate-{id}")]
async fn async_gated(
    id: u32,
    entered: tokio::sync::oneshot::Sender<()>,
    leave: tokio::sync::oneshot::Receiver<()>,
) -> AppResult<u32> {
    entered.send(()).unwrap();
    leave.await.unwrap();
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_same_arguments_exclude_and_different_arguments_do_not() {
    setup();
    use tokio::sync::oneshot;
    let (entered_tx, entered_rx) = oneshot::channel();
    let (leave_tx, leave_rx) = oneshot::channel();
    let parked = tokio::spawn(async_gated(1, entered_tx, leave_rx));
    entered_rx.await.unwrap();

    assert!(
        is_locked!(async_gated(1, oneshot::channel().0, oneshot::channel().1))
            .await
            .unwrap()
    );
    // Another task, same id: refused.
    let refused = tokio::spawn(async_gated(1, oneshot::channel().0, oneshot::channel().1))
        .await
        .unwrap();
    assert!(is_locked_error(&refused, "async-gate-1"));

    // Another task, another id: runs.
    let (other_entered_tx, other_entered_rx) = oneshot::channel();
    let (other_leave_tx, other_leave_rx) = oneshot::channel();
    let other = tokio::spawn(async_gated(2, other_entered_tx, other_leave_rx));
    other_entered_rx.await.unwrap();
    other_leave_tx.send(()).unwrap();
    assert_eq!(other.await.unwrap().unwrap(), 2);

    leave_tx.send(()).unwrap();
    assert_eq!(parked.await.unwrap().unwrap(), 1);
    assert!(
        !is_locked!(async_gated(1, oneshot::channel().0, oneshot::channel().1))
            .await
            .unwrap()
    );
}

// ---------------------------------------------------------------------------------------------
// Waiting: nowait / timeout matrix

#[locked(key = "matrix-{case}")]
fn by_default(case: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "matrix-{case}", nowait)]
fn flag_nowait(case: &str) -> Result<(), LockError> {
    Ok(())
}

// The design card's form: nowait wins, the timeout is unused (py-cachify).
#[locked(key = "matrix-{case}", nowait, timeout = 4, exp = 2)]
fn card_form(case: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "matrix-{case}", nowait = true, timeout = 4)]
fn nowait_true(case: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "matrix-{case}", nowait = false, timeout = 0.2)]
fn waits_with_timeout(case: &str) -> Result<(), LockError> {
    Ok(())
}

// `timeout` alone waits (without it, py-cachify's default nowait would ignore the timeout).
#[locked(key = "matrix-{case}", timeout = 0.25)]
fn timeout_alone(case: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "matrix-{case}", nowait = false)]
fn waits_forever(case: &str) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn nowait_fails_at_once_whatever_the_timeout() {
    setup();
    let _held = hold_elsewhere(Lock::new("matrix-nowait"));
    for result in [
        by_default("nowait"),
        flag_nowait("nowait"),
        card_form("nowait"),
        nowait_true("nowait"),
    ] {
        assert!(
            matches!(result, Err(LockError::Locked { .. })),
            "{result:?}"
        );
    }
}

#[test]
fn a_timeout_bounds_the_wait() {
    setup();
    let _held = hold_elsewhere(Lock::new("matrix-timeout"));
    match waits_with_timeout("timeout") {
        Err(LockError::TimedOut { waited, .. }) => assert_eq!(waited, Duration::from_millis(200)),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    match timeout_alone("timeout") {
        Err(LockError::TimedOut { waited, .. }) => assert_eq!(waited, Duration::from_millis(250)),
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

#[test]
fn waiting_functions_get_the_lock_once_it_is_released() {
    setup();
    hold_elsewhere(Lock::new("matrix-handoff")).release_after(Duration::from_millis(50));
    waits_forever("handoff").unwrap();
    hold_elsewhere(Lock::new("matrix-handoff")).release_after(Duration::from_millis(50));
    // A 0.2 s timeout is enough when the holder leaves early; retry for slow machines.
    let mut attempts = 0;
    while let Err(LockError::TimedOut { .. }) = waits_with_timeout("handoff") {
        attempts += 1;
        assert!(attempts < 50, "the lock was never handed over");
    }
}

#[tokio::test]
async fn async_waits_time_out_and_get_the_lock() {
    setup();
    #[locked(key = "amatrix-{case}", nowait = false, timeout = 0.2)]
    async fn waits(case: &str) -> Result<(), LockError> {
        Ok(())
    }
    #[locked(key = "amatrix-{case}", nowait, timeout = 4)]
    async fn nowait(case: &str) -> Result<(), LockError> {
        Ok(())
    }
    let held = hold_elsewhere(Lock::new("amatrix-a"));
    assert!(matches!(nowait("a").await, Err(LockError::Locked { .. })));
    match waits("a").await {
        Err(LockError::TimedOut { waited, .. }) => assert_eq!(waited, Duration::from_millis(200)),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    held.release_after(Duration::from_millis(20));
    let mut attempts = 0;
    while let Err(LockError::TimedOut { .. }) = waits("a").await {
        attempts += 1;
        assert!(attempts < 50, "the lock was never handed over");
    }
}

#[test]
fn exp_sets_the_lease_and_never_removes_it() {
    setup();
    #[locked(key = "lease-{case}", exp = 30)]
    fn thirty(case: &str) -> Result<RemainingLease, LockError> {
        Lock::new(format!("lease-{case}")).remaining_lease_blocking()
    }
    #[locked(key = "lease-{case}", exp = never)]
    fn forever(case: &str) -> Result<RemainingLease, LockError> {
        Lock::new(format!("lease-{case}")).remaining_lease_blocking()
    }
    match thirty("a").unwrap() {
        RemainingLease::Remaining(left) => {
            assert!(left <= Duration::from_secs(30) && left > Duration::from_secs(20));
        }
        other => panic!("expected a 30 s lease, got {other:?}"),
    }
    assert_eq!(forever("b").unwrap(), RemainingLease::Unlimited);
}

/// Constants that compile but are not durations: checked at the call, never a panic.
const ZERO_SECONDS: u64 = 0;
const NEGATIVE_SECONDS: f64 = -1.5;
const TOO_LONG: Duration = Duration::from_secs(366 * 24 * 60 * 60);

static INVALID_CONST_BODIES: AtomicUsize = AtomicUsize::new(0);

#[locked(key = "const-zero-timeout", timeout = ZERO_SECONDS)]
fn zero_timeout() -> Result<(), LockError> {
    INVALID_CONST_BODIES.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[locked(key = "const-negative-exp-{id}", exp = NEGATIVE_SECONDS)]
async fn negative_exp(id: u32) -> Result<u32, LockError> {
    INVALID_CONST_BODIES.fetch_add(1, Ordering::SeqCst);
    Ok(id)
}

#[locked(key = "const-too-long", exp = TOO_LONG, on_locked = 0, on_error = |err: LockError| match err {
    LockError::InvalidArgument { name: "exp", .. } => 1,
    _ => 2,
})]
fn too_long() -> u32 {
    INVALID_CONST_BODIES.fetch_add(1, Ordering::SeqCst);
    3
}

#[tokio::test]
async fn an_invalid_constant_duration_is_an_invalid_argument_at_the_call_and_locks_nothing() {
    setup();
    match zero_timeout() {
        Err(LockError::InvalidArgument { name, reason }) => {
            assert_eq!(name, "timeout");
            assert_eq!(reason, "must be greater than zero");
        }
        other => panic!("expected an invalid timeout, got {other:?}"),
    }
    assert!(!locked_now("const-zero-timeout"));
    assert!(matches!(
        negative_exp(1).await,
        Err(LockError::InvalidArgument { name: "exp", .. })
    ));
    assert!(!locked_now("const-negative-exp-1"));
    // `on_error` receives it like any other acquire failure; `on_locked` does not (not contention).
    assert_eq!(too_long(), 1);
    assert!(!locked_now("const-too-long"));
    assert_eq!(INVALID_CONST_BODIES.load(Ordering::SeqCst), 0, "a body ran");
    // `is_locked!` and `release!` build the same handle, and report the same problem.
    assert!(matches!(
        is_locked!(zero_timeout()).blocking(),
        Err(LockError::InvalidArgument {
            name: "timeout",
            ..
        })
    ));
    assert!(matches!(
        release!(negative_exp(1)).await,
        Err(LockError::InvalidArgument { name: "exp", .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Key templates

/// Counts how often it is formatted.
struct Counted<'a>(&'a AtomicUsize, u32);

impl fmt::Display for Counted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fetch_add(1, Ordering::SeqCst);
        write!(f, "{}", self.1)
    }
}

#[test]
fn the_key_is_formatted_once_per_call_before_the_body() {
    setup();
    #[locked(key = "counted-{value}")]
    fn counted(value: Counted<'_>) -> Result<usize, LockError> {
        Ok(value.0.load(Ordering::SeqCst))
    }
    let formats = AtomicUsize::new(0);
    assert_eq!(counted(Counted(&formats, 1)).unwrap(), 1);
    assert_eq!(formats.load(Ordering::SeqCst), 1);
    assert_eq!(counted(Counted(&formats, 1)).unwrap(), 2);
}

struct Customer {
    id: u64,
}

struct Order {
    customer: Customer,
    lines: (u32, &'static str),
}

#[test]
fn templates_reach_fields_and_apply_format_specs() {
    setup();
    #[locked(key = "order-{order.customer.id}-{order.lines.1}-{tag:?}-{n:>6}-{{literal}}")]
    fn place(order: &Order, tag: &str, n: u32) -> Result<(), LockError> {
        Ok(())
    }
    let order = Order {
        customer: Customer { id: 9 },
        lines: (2, "apples"),
    };
    let key = "order-9-apples-\"eu\"-    42-{literal}";
    assert!(is_locked!(place(&order, "eu", 42)).blocking().unwrap() == locked_now(key));
    let held = hold_elsewhere(Lock::new(key));
    assert!(matches!(place(&order, "eu", 42), Err(LockError::Locked { key: k }) if &*k == key));
    assert!(is_locked!(place(&order, "eu", 42)).blocking().unwrap());
    drop(held);
    place(&order, "eu", 42).unwrap();
}

#[test]
fn every_format_trait_formats_the_key_as_format_does() {
    setup();
    #[locked(key = "traits-{n:x}-{n:#X}-{n:o}-{n:b}-{f:e}-{f:E}-{s:?}-{s:>4}-{n:08.3}")]
    fn traits(n: u32, f: f64, s: &str) -> Result<(), LockError> {
        Ok(())
    }
    let key = format!(
        "traits-{n:x}-{n:#X}-{n:o}-{n:b}-{f:e}-{f:E}-{s:?}-{s:>4}-{n:08.3}",
        n = 254,
        f = 1500.0,
        s = "ab"
    );
    assert_eq!(
        key,
        "traits-fe-0xFE-376-11111110-1.5e3-1.5E3-\"ab\"-  ab-00000254"
    );
    let held = hold_elsewhere(Lock::new(key.clone()));
    assert!(matches!(traits(254, 1500.0, "ab"), Err(LockError::Locked { key: k }) if *k == *key));
    drop(held);
    traits(254, 1500.0, "ab").unwrap();

    // Trait objects with elided lifetimes, behind a reference and in a box.
    #[locked(key = "objects-{shown}-{boxed}")]
    fn objects(
        shown: &dyn fmt::Display,
        boxed: Box<dyn fmt::Display + '_>,
    ) -> Result<(), LockError> {
        Ok(())
    }
    let local = String::from("local");
    objects(&local, Box::new(&local)).unwrap();
}

#[test]
fn destructured_and_mut_parameters_can_be_named() {
    setup();
    #[locked(key = "pair-{left}-{right}-{count}")]
    fn pair((left, right): (u32, u32), mut count: u32) -> Result<u32, LockError> {
        count += left + right;
        Ok(count)
    }
    assert_eq!(pair((1, 2), 3).unwrap(), 6);
    let _held = hold_elsewhere(Lock::new("pair-1-2-3"));
    assert!(is_locked!(pair((1, 2), 3)).blocking().unwrap());
    assert!(pair((1, 2), 3).is_err());
}

// ---------------------------------------------------------------------------------------------
// Methods and `{self.field}`

struct Worker {
    shard: u32,
    done: Vec<u64>,
}

impl Worker {
    #[locked(key = "shard-{self.shard}-job-{job}")]
    fn peek(&self, job: u64) -> AppResult<bool> {
        Ok(locked_now(&format!("shard-{}-job-{job}", self.shard)))
    }

    #[locked(key = "shard-{self.shard}-job-{job}")]
    fn record(&mut self, job: u64) -> AppResult<usize> {
        self.done.push(job);
        Ok(self.done.len())
    }

    #[locked(key = "shard-{self.shard}-final")]
    fn finish(self) -> AppResult<Vec<u64>> {
        Ok(self.done)
    }

    #[locked(key = "shard-new-{shard}")]
    fn create(shard: u32) -> AppResult<Worker> {
        Ok(Worker {
            shard,
            done: Vec::new(),
        })
    }

    #[locked(key = "shard-{self.shard}-async-{job}")]
    async fn process(&self, job: u64) -> AppResult<u64> {
        tokio::task::yield_now().await;
        Ok(job + u64::from(self.shard))
    }
}

#[test]
fn methods_lock_on_their_fields() {
    setup();
    let mut worker = Worker::create(4).unwrap();
    assert!(worker.peek(1).unwrap());
    assert_eq!(worker.record(1).unwrap(), 1);

    let held = hold_elsewhere(Lock::new("shard-4-job-2"));
    assert!(is_locked!(worker.peek(2)).blocking().unwrap());
    assert!(is_locked!(Worker::peek(&worker, 2)).blocking().unwrap());
    assert!(is_locked!(Worker::record(&mut worker, 2))
        .blocking()
        .unwrap());
    assert!(!is_locked!(worker.peek(3)).blocking().unwrap());
    assert!(is_locked_error(&worker.record(2), "shard-4-job-2"));
    // Another shard, same job: another key.
    let mut other = Worker::create(5).unwrap();
    assert_eq!(other.record(2).unwrap(), 1);
    drop(held);
    assert_eq!(worker.record(2).unwrap(), 2);

    let held = hold_elsewhere(Lock::new("shard-4-final"));
    assert!(is_locked!(Worker::finish(&worker)).blocking().unwrap());
    assert!(is_locked!(worker.finish()).blocking().unwrap());
    drop(held);
    assert_eq!(worker.finish().unwrap(), [1, 2]);

    let _held = hold_elsewhere(Lock::new("shard-new-6"));
    assert!(is_locked!(Worker::create(6)).blocking().unwrap());
    assert!(Worker::create(6).is_err());
}

#[tokio::test]
async fn async_methods_lock_on_their_fields() {
    setup();
    let worker = std::sync::Arc::new(Worker::create(7).unwrap());
    assert_eq!(worker.process(1).await.unwrap(), 8);
    let held = hold_elsewhere(Lock::new("shard-7-async-2"));
    assert!(is_locked!(worker.process(2)).await.unwrap());
    assert!(is_locked!(Worker::process(&worker, 2)).await.unwrap());
    assert!(is_locked_error(&worker.process(2).await, "shard-7-async-2"));
    drop(held);
    assert_eq!(worker.process(2).await.unwrap(), 9);
}

// ---------------------------------------------------------------------------------------------
// `on_locked` (py-cachify's `once`)

#[locked(key = "once-{id}", on_locked = 0, on_error = |_| u32::MAX)]
fn once_count(id: u32) -> u32 {
    id
}

#[locked(key = "once-{id}", on_locked = Err(AppError::Failed("busy")))]
fn once_result(id: u32) -> AppResult<u32> {
    Ok(id)
}

#[locked(key = "once-{id}", on_locked = format!("{id} is busy"), on_error = |err| err.to_string())]
async fn once_async(id: u32) -> String {
    format!("{id} done")
}

#[test]
fn on_locked_returns_its_value_when_the_lock_is_taken() {
    setup();
    assert_eq!(once_count(5), 5);
    let held = hold_elsewhere(Lock::new("once-5"));
    assert_eq!(once_count(5), 0);
    assert!(matches!(once_result(5), Err(AppError::Failed("busy"))));
    assert_eq!(once_count(6), 6);
    drop(held);
    assert_eq!(once_result(5).unwrap(), 5);
}

#[tokio::test]
async fn async_on_locked_returns_its_value_when_the_lock_is_taken() {
    setup();
    assert_eq!(once_async(8).await, "8 done");
    let _held = hold_elsewhere(Lock::new("once-8"));
    assert_eq!(once_async(8).await, "8 is busy");
}

#[test]
fn on_locked_still_returns_other_lock_failures_through_a_result() {
    setup();
    // An empty key is an invalid argument, not contention: it must not become the on_locked value.
    #[locked(key = "{name}", on_locked = Ok(0))]
    fn named(name: &str) -> AppResult<u32> {
        Ok(1)
    }
    assert!(matches!(
        named(""),
        Err(AppError::Lock(LockError::InvalidArgument { .. }))
    ));
    assert_eq!(named("x").unwrap(), 1);
}

#[test]
fn on_error_receives_other_failures_when_the_return_type_has_no_room() {
    setup();
    // No panic: the failure that is not contention goes to `on_error`, with the error itself.
    #[locked(key = "{name}", on_locked = 0, on_error = |err: LockError| if matches!(err, LockError::InvalidArgument { .. }) { 2 } else { 3 })]
    fn named(name: &str) -> u32 {
        1
    }
    assert_eq!(named(""), 2);
    assert_eq!(named("x"), 1);
    let held = hold_elsewhere(Lock::new("x"));
    assert_eq!(named("x"), 0);
    drop(held);
}

#[test]
fn on_error_alone_handles_every_acquire_failure() {
    setup();
    #[locked(key = "alone-{id}", on_error = |err: LockError| err.to_string())]
    fn describe(id: u32) -> String {
        format!("ran {id}")
    }
    assert_eq!(describe(1), "ran 1");
    let _held = hold_elsewhere(Lock::new("alone-1"));
    assert_eq!(describe(1), "alone-1 is already locked!");
}

// ---------------------------------------------------------------------------------------------
// Reentrancy

#[locked(key = "tree-{name}")]
fn countdown(name: &str, n: u32) -> Result<u32, LockError> {
    if n == 0 {
        return Lock::new(format!("tree-{name}")).lock_count_blocking();
    }
    countdown(name, n - 1)
}

#[locked(key = "account-{id}", nowait = false)]
fn transfer(id: u32) -> Result<u32, LockError> {
    audit(id)
}

#[locked(key = "account-{id}", nowait = false)]
fn audit(id: u32) -> Result<u32, LockError> {
    Lock::new(format!("account-{id}")).lock_count_blocking()
}

#[test]
fn a_locked_function_re_enters_its_own_lock() {
    setup();
    assert_eq!(countdown("a", 3).unwrap(), 4);
    assert!(!locked_now("tree-a"));
    // Waiting functions re-enter too, instead of waiting for themselves.
    assert_eq!(transfer(1).unwrap(), 2);
    assert!(!locked_now("account-1"));
}

#[locked(key = "atree-{name}")]
async fn async_countdown(name: &str, n: u32) -> Result<u32, LockError> {
    if n == 0 {
        return Lock::new(format!("atree-{name}")).lock_count().await;
    }
    Box::pin(async_countdown(name, n - 1)).await
}

#[tokio::test]
async fn an_async_locked_function_re_enters_its_own_lock() {
    setup();
    assert_eq!(async_countdown("b", 2).await.unwrap(), 3);
    assert!(!locked_now("atree-b"));
}

#[locked(key = "ashared-{name}")]
async fn async_outer(name: &str) -> Result<u32, LockError> {
    // Sleep between the nested calls, so the task may resume on another worker thread: the
    // owner is the task, so re-entry does not depend on the thread.
    tokio::time::sleep(Duration::from_millis(2)).await;
    async_inner(name).await
}

#[locked(key = "ashared-{name}")]
async fn async_inner(name: &str) -> Result<u32, LockError> {
    tokio::time::sleep(Duration::from_millis(2)).await;
    Lock::new(format!("ashared-{name}")).lock_count().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_locked_functions_sharing_a_key_re_enter_across_worker_threads() {
    setup();
    for round in 0..20 {
        let name = format!("r{round}");
        assert_eq!(async_outer(&name).await.unwrap(), 2);
        assert!(!locked_now(&format!("ashared-{name}")));
    }
}

// ---------------------------------------------------------------------------------------------
// Release on every exit

#[locked(key = "exit-{id}")]
fn fails(id: u32) -> AppResult<u32> {
    assert!(locked_now(&format!("exit-{id}")));
    Err(AppError::Failed("body failed"))
}

#[locked(key = "exit-{id}")]
fn question_mark(id: u32) -> AppResult<u32> {
    let parsed: u32 = "not a number"
        .parse()
        .map_err(|_| AppError::Failed("parse"))?;
    Ok(parsed + id)
}

#[locked(key = "exit-{id}")]
fn panics(id: u32) -> AppResult<u32> {
    assert!(locked_now(&format!("exit-{id}")));
    panic!("body panicked");
}

#[test]
fn the_lock_is_released_on_error_question_mark_and_panic() {
    setup();
    assert!(matches!(fails(1), Err(AppError::Failed("body failed"))));
    assert!(!locked_now("exit-1"));
    assert!(matches!(question_mark(2), Err(AppError::Failed("parse"))));
    assert!(!locked_now("exit-2"));
    assert!(std::panic::catch_unwind(|| panics(3)).is_err());
    assert!(!locked_now("exit-3"));
    assert!(!is_locked!(panics(3)).blocking().unwrap());
}

#[locked(key = "aexit-{id}")]
async fn async_fails(id: u32) -> AppResult<u32> {
    tokio::task::yield_now().await;
    assert!(locked_now(&format!("aexit-{id}")));
    Err(AppError::Failed("async body failed"))
}

#[locked(key = "aexit-{id}")]
async fn async_question_mark(id: u32) -> AppResult<u32> {
    tokio::task::yield_now().await;
    let parsed: u32 = "not a number"
        .parse()
        .map_err(|_| AppError::Failed("async parse"))?;
    Ok(parsed + id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_is_released_on_async_error_and_question_mark() {
    setup();
    assert!(matches!(
        async_fails(1).await,
        Err(AppError::Failed("async body failed"))
    ));
    assert!(!is_locked!(async_fails(1)).await.unwrap());
    assert!(matches!(
        async_question_mark(2).await,
        Err(AppError::Failed("async parse"))
    ));
    assert!(!is_locked!(async_question_mark(2)).await.unwrap());
}

#[locked(key = "parked-{id}")]
async fn parked(id: u32, entered: tokio::sync::oneshot::Sender<()>) -> Result<(), LockError> {
    entered.send(()).unwrap();
    std::future::pending::<()>().await;
    Ok(())
}

#[locked(key = "apanic-{id}")]
async fn async_panics(id: u32) -> Result<(), LockError> {
    tokio::task::yield_now().await;
    panic!("async body panicked");
}

#[tokio::test]
async fn the_lock_is_released_when_the_future_is_dropped_or_panics() {
    setup();
    let (entered_tx, entered_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(parked(1, entered_tx));
    entered_rx.await.unwrap();
    assert!(is_locked!(parked(1, tokio::sync::oneshot::channel().0))
        .await
        .unwrap());
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert!(!is_locked!(parked(1, tokio::sync::oneshot::channel().0))
        .await
        .unwrap());

    assert!(tokio::spawn(async_panics(2)).await.unwrap_err().is_panic());
    assert!(!is_locked!(async_panics(2)).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// `backend = ...` (py-cachify defect 6: a decorator on a non-global instance used the global one)

/// A backend instance other than the global one, of the kind under test: in the Redis re-run a
/// second `RedisBackend` on the same server with its own key prefix (so its locks are its own),
/// else a fresh `MemoryBackend`.
fn another_backend(prefix: &str) -> SharedBackend {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var(REDIS_RUN) {
        let config = lockwright::RedisConfig::new(url).prefix(prefix);
        return lockwright::RedisBackend::connect_blocking(config)
            .expect("connect to the test redis-server")
            .shared();
    }
    let _ = prefix;
    MemoryBackend::shared()
}

static REPORTS: LazyLock<SharedBackend> = LazyLock::new(|| another_backend("reports:"));

#[locked(key = "report-{id}", backend = REPORTS)]
fn report(id: u32) -> Result<(bool, bool), LockError> {
    let key = format!("report-{id}");
    Ok((
        Lock::with_backend(key.as_str(), &REPORTS).is_locked_blocking()?,
        Lock::new(key).is_locked_blocking()?,
    ))
}

#[test]
fn a_backend_option_is_used_for_acquire_is_locked_and_release() {
    setup();
    // Inside: locked in REPORTS, not in the global backend.
    assert_eq!(report(1).unwrap(), (true, false));

    // A holder in the global backend does not block it.
    let global = hold_elsewhere(Lock::new("report-2"));
    assert!(!is_locked!(report(2)).blocking().unwrap());
    assert_eq!(report(2).unwrap(), (true, true));
    drop(global);

    // A holder in REPORTS does, and is_locked! / release! ask REPORTS.
    let held = hold_elsewhere(Lock::with_backend("report-3", &REPORTS));
    assert!(matches!(report(3), Err(LockError::Locked { .. })));
    assert!(is_locked!(report(3)).blocking().unwrap());
    assert!(!locked_now("report-3"));
    assert!(release!(report(3)).blocking().unwrap());
    assert!(!is_locked!(report(3)).blocking().unwrap());
    assert_eq!(report(3).unwrap(), (true, false));
    drop(held);
}

struct Tenant {
    backend: SharedBackend,
    name: &'static str,
}

impl Tenant {
    #[locked(key = "tenant-{self.name}", backend = self.backend)]
    async fn sync_accounts(&self) -> Result<bool, LockError> {
        Lock::with_backend(format!("tenant-{}", self.name), &self.backend)
            .is_locked()
            .await
    }
}

#[tokio::test]
async fn a_backend_option_may_be_a_field_of_self() {
    setup();
    let tenant = Tenant {
        backend: another_backend("tenants:"),
        name: "acme",
    };
    assert!(tenant.sync_accounts().await.unwrap());
    let held = hold_elsewhere(Lock::with_backend("tenant-acme", &tenant.backend));
    assert!(is_locked!(tenant.sync_accounts()).await.unwrap());
    assert!(!locked_now("tenant-acme"));
    assert!(tenant.sync_accounts().await.is_err());
    assert!(release!(tenant.sync_accounts()).await.unwrap());
    assert!(tenant.sync_accounts().await.unwrap());
    drop(held);
}

// ---------------------------------------------------------------------------------------------
// Inner lock errors (py-cachify defect 7: `once` swallowed lock errors raised inside)

#[locked(key = "outer-{id}")]
fn outer_result(id: u32) -> AppResult<u32> {
    let _inner = Lock::new(format!("inner-{id}")).acquire_blocking()?;
    Ok(id)
}

#[locked(key = "outer-{id}", on_locked = Ok(0))]
fn outer_once(id: u32) -> AppResult<u32> {
    let _inner = Lock::new(format!("inner-{id}")).acquire_blocking()?;
    Ok(id)
}

#[locked(key = "outer-{id}", on_locked = Ok(0))]
async fn outer_once_async(id: u32) -> AppResult<u32> {
    let _inner = Lock::new(format!("inner-{id}")).acquire().await?;
    Ok(id)
}

#[test]
fn an_inner_lock_error_is_returned_as_it_is() {
    setup();
    let _inner = hold_elsewhere(Lock::new("inner-1"));
    assert!(is_locked_error(&outer_result(1), "inner-1"));
    // With on_locked, the inner failure is not turned into the on_locked value.
    assert!(is_locked_error(&outer_once(1), "inner-1"));
    assert!(!locked_now("outer-1"));
    // While the outer lock itself is taken, on_locked applies.
    let _outer = hold_elsewhere(Lock::new("outer-1"));
    assert_eq!(outer_once(1).unwrap(), 0);
    assert!(is_locked_error(&outer_result(1), "outer-1"));
}

#[tokio::test]
async fn an_inner_lock_error_is_returned_as_it_is_async() {
    setup();
    let _inner = hold_elsewhere(Lock::new("inner-2"));
    assert!(is_locked_error(&outer_once_async(2).await, "inner-2"));
    let _outer = hold_elsewhere(Lock::new("outer-2"));
    assert_eq!(outer_once_async(2).await.unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// `is_locked!` / `release!`

#[locked(key = "nightly-{day}", exp = 60)]
fn nightly(day: u32) -> Result<(), LockError> {
    Ok(())
}

#[test]
fn release_frees_a_lock_held_by_someone_else() {
    setup();
    let held = hold_elsewhere(Lock::new("nightly-3"));
    assert!(is_locked!(nightly(3)).blocking().unwrap());
    assert!(!is_locked!(nightly(4)).blocking().unwrap());
    assert!(release!(nightly(3)).blocking().unwrap());
    assert!(!is_locked!(nightly(3)).blocking().unwrap());
    assert!(!release!(nightly(3)).blocking().unwrap());
    nightly(3).unwrap();
    drop(held);
}

#[tokio::test]
async fn release_works_from_async_code() {
    setup();
    let held = hold_elsewhere(Lock::new("nightly-5"));
    assert!(is_locked!(nightly(5)).await.unwrap());
    assert!(release!(nightly(5)).await.unwrap());
    assert!(!is_locked!(nightly(5)).await.unwrap());
    drop(held);
}

mod jobs {
    use lockwright::{locked, LockError};

    #[locked(key = "module-job-{id}")]
    pub fn run(id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

#[test]
fn is_locked_follows_paths_into_modules() {
    setup();
    let _held = hold_elsewhere(Lock::new("module-job-1"));
    assert!(is_locked!(jobs::run(1)).blocking().unwrap());
    assert!(!is_locked!(self::jobs::run(2)).blocking().unwrap());
    assert!(jobs::run(1).is_err());
}

// ---------------------------------------------------------------------------------------------
// Generic functions, impl Trait, trait impls

#[locked(key = "generic-{item}")]
fn generic<T, const N: usize>(item: T, _sizes: [u8; N]) -> Result<String, LockError>
where
    T: fmt::Display + Clone,
{
    Ok(item.to_string())
}

#[locked(key = "impl-{label}")]
async fn impl_trait(label: impl fmt::Display + Send) -> Result<String, LockError> {
    Ok(label.to_string())
}

#[tokio::test]
async fn generic_and_impl_trait_functions_lock_per_argument() {
    setup();
    assert_eq!(generic("a", [0u8; 2]).unwrap(), "a");
    assert_eq!(impl_trait(5).await.unwrap(), "5");
    let _a = hold_elsewhere(Lock::new("generic-a"));
    let _b = hold_elsewhere(Lock::new("impl-5"));
    assert!(is_locked!(generic("a", [0u8; 2])).await.unwrap());
    assert!(is_locked!(generic::<&str, 3>("a", [0u8; 3])).await.unwrap());
    assert!(generic("a", [1u8; 1]).is_err());
    assert!(is_locked!(impl_trait(5)).await.unwrap());
    assert!(impl_trait(5).await.is_err());
}

trait Job {
    fn run(&self, id: u32) -> Result<u32, LockError>;
    async fn run_async(&self, id: u32) -> Result<u32, LockError>;
}

struct Nightly {
    zone: &'static str,
}

#[locked]
impl Job for Nightly {
    #[locked(key = "trait-{self.zone}-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    #[locked(key = "trait-async-{self.zone}-{id}")]
    async fn run_async(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

#[tokio::test]
async fn methods_of_trait_impls_lock_and_answer_is_locked() {
    setup();
    let job = Nightly { zone: "eu" };
    assert_eq!(job.run(1).unwrap(), 1);
    assert_eq!(job.run_async(1).await.unwrap(), 1);
    let _held = hold_elsewhere(Lock::new("trait-eu-2"));
    let _held_async = hold_elsewhere(Lock::new("trait-async-eu-2"));
    assert!(job.run(2).is_err());
    assert!(job.run_async(2).await.is_err());
    assert!(is_locked!(job.run(2)).blocking().unwrap());
    assert!(is_locked!(Nightly::run_async(&job, 2)).await.unwrap());
    assert!(!is_locked!(job.run_async(3)).await.unwrap());
}

// ---------------------------------------------------------------------------------------------
// Released when the call returns

/// A client that shares nothing with this process's backend but the server: what another
/// process sees. On the in-memory default there is no other process; the global backend is it.
fn another_process() -> SharedBackend {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var(REDIS_RUN) {
        return lockwright::RedisBackend::connect_blocking(lockwright::RedisConfig::new(url))
            .expect("connect a second client")
            .shared();
    }
    lockwright::global_backend()
}

#[locked(key = "returned-{id}")]
async fn returns_at_the_end(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

#[locked(key = "returned-early-{id}")]
async fn returns_early_or_by_question_mark(id: u32) -> Result<u32, AppError> {
    if id % 3 == 0 {
        return Ok(id);
    }
    if id % 3 == 1 {
        Err(AppError::Failed("by ?"))?;
    }
    Ok(id)
}

#[locked(key = "returned-future-{id}")]
fn returns_a_future(id: u32) -> impl std::future::Future<Output = Result<u32, LockError>> {
    async move { Ok(id) }
}

/// Once an awaited `#[locked]` call has returned, its lock is free for everyone, not only for
/// later calls through this process's backend: the release is awaited, not left in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awaited_locked_call_has_released_its_lock_for_other_processes() {
    setup();
    let other = another_process();
    let seen_by_other = |key: String| {
        let lock = Lock::with_backend(key, &other);
        async move { lock.is_locked().await.unwrap() }
    };
    for id in 0..150 {
        returns_at_the_end(id).await.unwrap();
        assert!(
            !seen_by_other(format!("returned-{id}")).await,
            "returned-{id}"
        );
        let _ = returns_early_or_by_question_mark(id).await;
        assert!(
            !seen_by_other(format!("returned-early-{id}")).await,
            "returned-early-{id}"
        );
        returns_a_future(id).await.unwrap();
        assert!(
            !seen_by_other(format!("returned-future-{id}")).await,
            "returned-future-{id}"
        );
    }
}
