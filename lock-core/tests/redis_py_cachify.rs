//! py-cachify mode (`RedisConfig::py_cachify`) against the real py-cachify 3.x: a Python process
//! (support/python.rs) and lockwright on one real redis-server, each seeing the other's locks.

mod support;

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lock_core::{Lock, LockError, RedisBackend, RedisConfig, SharedBackend};

use support::python::PyCachifyPeer;
use support::RedisServer;

/// A generous liveness bound: a waiter gets a freed lock well within it (polling or woken).
const LIVENESS: Duration = Duration::from_secs(15);

/// How long the waiters in these tests would wait: far beyond [`LIVENESS`], so one that is not
/// polling or woken misses the bound.
const PATIENCE: Duration = Duration::from_secs(300);

/// Waits for `waiter` to finish within [`LIVENESS`].
fn joined<T>(waiter: std::thread::JoinHandle<T>) -> T {
    let deadline = Instant::now() + LIVENESS;
    while !waiter.is_finished() {
        assert!(
            Instant::now() < deadline,
            "the waiter did not get the lock in time"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    waiter.join().unwrap()
}

fn server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(RedisServer::start)
}

fn backend(config: impl FnOnce(RedisConfig) -> RedisConfig) -> SharedBackend {
    RedisBackend::connect_blocking(config(RedisConfig::new(server().url())))
        .expect("connect in py-cachify mode")
        .shared()
}

fn py_cachify_backend() -> SharedBackend {
    static BACKEND: OnceLock<SharedBackend> = OnceLock::new();
    BACKEND
        .get_or_init(|| backend(RedisConfig::py_cachify))
        .clone()
}

fn peer() -> PyCachifyPeer {
    PyCachifyPeer::start(&server().url(), "PYC-")
}

fn raw() -> redis::Connection {
    redis::Client::open(server().url())
        .and_then(|client| client.get_connection())
        .expect("raw redis connection")
}

fn raw_value(name: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(name).query(&mut raw()).unwrap()
}

/// `pickle.dumps(1)`, what py-cachify stores.
const PY_CACHIFY_VALUE: &[u8] = b"\x80\x04K\x01.";

#[test]
fn a_lock_py_cachify_holds_is_held_for_lockwright_blocking() {
    let mut py = peer();
    assert_eq!(py.ask("hold held-sync 60"), "held");
    assert_eq!(
        raw_value("PYC-held-sync").as_deref(),
        Some(PY_CACHIFY_VALUE)
    );
    let lock = Lock::with_backend("held-sync", &py_cachify_backend());
    assert!(lock.is_locked_blocking().unwrap());
    assert!(!lock.is_locked_by_current_owner_blocking().unwrap());
    let state = lock.state_blocking().unwrap();
    assert_eq!((state.fence, state.hold_count), (None, 1));
    assert!(lock.try_acquire_blocking().unwrap().is_none());
    assert!(matches!(
        lock.acquire_blocking(),
        Err(LockError::Locked { .. })
    ));
    assert_eq!(py.ask("release held-sync"), "released");
    assert!(!lock.is_locked_blocking().unwrap());
    assert!(lock.try_acquire_blocking().unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_py_cachify_holds_is_held_for_lockwright_async() {
    let mut py = peer();
    assert_eq!(py.ask("ahold held-async 60"), "held");
    let lock = Lock::with_backend("held-async", &py_cachify_backend());
    assert!(lock.is_locked().await.unwrap());
    assert!(lock.try_acquire().await.unwrap().is_none());
    assert!(matches!(
        lock.acquire().await,
        Err(LockError::Locked { .. })
    ));
    assert_eq!(py.ask("release held-async"), "released");
    assert!(lock.try_acquire().await.unwrap().is_some());
}

/// py-cachify publishes nothing on release and its lease here is long: only polling lets the
/// waiter in within the bound.
#[test]
fn a_waiting_lockwright_acquire_polls_until_py_cachify_releases_blocking() {
    let mut py = peer();
    assert_eq!(py.ask("hold poll-sync 600"), "held");
    let lock = Lock::with_backend("poll-sync", &py_cachify_backend())
        .nowait(false)
        .timeout(PATIENCE);
    let waiter = std::thread::spawn(move || lock.acquire_blocking().map(|guard| guard.fence()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !waiter.is_finished(),
        "the waiter must wait for py-cachify's hold"
    );
    assert_eq!(py.ask("release poll-sync"), "released");
    joined(waiter).expect("acquired after py-cachify's release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_lockwright_acquire_polls_until_py_cachify_releases_async() {
    let mut py = peer();
    assert_eq!(py.ask("hold poll-async 600"), "held");
    let lock = Lock::with_backend("poll-async", &py_cachify_backend())
        .nowait(false)
        .timeout(PATIENCE);
    let waiter = tokio::spawn(async move { lock.acquire().await.map(|guard| guard.fence()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiter.is_finished(),
        "the waiter must wait for py-cachify's hold"
    );
    assert_eq!(py.ask("release poll-async"), "released");
    tokio::time::timeout(LIVENESS, waiter)
        .await
        .expect("the waiter did not get the lock in time")
        .unwrap()
        .expect("acquired after py-cachify's release");
}

/// Polling every minute, a waiter on a lockwright holder still gets the lock at once: the
/// holder's release publishes.
#[test]
fn a_waiter_on_a_lockwright_holder_is_woken_by_its_release() {
    let backend = backend(|config| config.py_cachify_poll_interval(60).unwrap());
    let holder = Lock::with_backend("woken", &backend).exp(600);
    let guard = holder.acquire_blocking().unwrap();
    let waiting = Lock::with_backend("woken", &backend)
        .nowait(false)
        .timeout(PATIENCE);
    let waiter = std::thread::spawn(move || waiting.acquire_blocking().map(|guard| guard.fence()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished());
    guard.release_blocking().unwrap();
    joined(waiter).expect("woken by the release");
}

#[test]
fn py_cachify_sees_a_lockwright_hold_and_waits_for_it() {
    let mut py = peer();
    let lock = Lock::with_backend("lw-held", &py_cachify_backend());
    let guard = lock.acquire_blocking().unwrap();
    assert_eq!(py.ask("pickle_of lw-held"), "true", "CPython's own pickle");
    assert_eq!(py.ask("is_locked lw-held"), "true");
    assert_eq!(py.ask("ais_locked lw-held"), "true");
    assert_eq!(py.ask("hold lw-held 30"), "refused");
    assert_eq!(py.ask("ahold lw-held 30"), "refused");
    py.send("wait lw-held 30");
    assert_eq!(
        py.answer(Duration::from_millis(300)),
        None,
        "py-cachify must wait"
    );
    drop(guard);
    assert_eq!(py.answer(LIVENESS).as_deref(), Some("held"));
    assert!(lock.is_locked_blocking().unwrap());
    assert_eq!(py.ask("release lw-held"), "released");
    assert_eq!(py.ask("is_locked lw-held"), "false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_cachify_sees_an_async_lockwright_hold() {
    let mut py = peer();
    let lock = Lock::with_backend("lw-held-async", &py_cachify_backend());
    let guard = lock.acquire().await.unwrap();
    assert_eq!(py.ask("ais_locked lw-held-async"), "true");
    assert_eq!(py.ask("hold lw-held-async 30"), "refused");
    guard.release().await.unwrap();
    assert_eq!(py.ask("is_locked lw-held-async"), "false");
    assert_eq!(py.ask("hold lw-held-async 30"), "held");
}

#[test]
fn lockwright_reenters_its_own_hold_and_py_cachify_sees_it_until_the_last_release() {
    let mut py = peer();
    let lock = Lock::with_backend("reentered", &py_cachify_backend());
    let outer = lock.acquire_blocking().unwrap();
    let inner = lock.acquire_blocking().unwrap();
    assert_eq!(inner.fence(), outer.fence());
    assert_eq!(lock.lock_count_blocking().unwrap(), 2);
    drop(inner);
    assert_eq!(py.ask("is_locked reentered"), "true");
    drop(outer);
    assert_eq!(py.ask("is_locked reentered"), "false");
}

#[test]
fn lockwright_never_releases_a_lock_py_cachify_holds() {
    let mut py = peer();
    assert_eq!(py.ask("hold not-mine 60"), "held");
    let lock = Lock::with_backend("not-mine", &py_cachify_backend());
    assert!(matches!(
        lock.release_blocking(),
        Err(LockError::NotOwner { .. })
    ));
    assert!(matches!(
        lock.unlock_blocking(),
        Err(LockError::NotOwner { .. })
    ));
    assert_eq!(raw_value("PYC-not-mine").as_deref(), Some(PY_CACHIFY_VALUE));
    assert_eq!(py.ask("is_locked not-mine"), "true");
}

/// py-cachify's own defect 1, not repeated: a lockwright holder whose lease ran out leaves the
/// next (py-cachify) holder's lock alone when it releases.
#[test]
fn an_expired_lockwright_holder_leaves_py_cachifys_next_hold_alone() {
    let mut py = peer();
    let lock = Lock::with_backend("expired", &py_cachify_backend()).exp(0.2);
    let guard = lock.acquire_blocking().unwrap();
    let deadline = Instant::now() + LIVENESS;
    while raw_value("PYC-expired").is_some() {
        assert!(Instant::now() < deadline, "the lease never ran out");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(py.ask("hold expired 60"), "held");
    assert!(guard.release_blocking().is_err());
    assert_eq!(raw_value("PYC-expired").as_deref(), Some(PY_CACHIFY_VALUE));
    assert_eq!(py.ask("is_locked expired"), "true");
}

#[test]
fn fences_grow_across_holds_in_py_cachify_mode() {
    let lock = Lock::with_backend("fenced", &py_cachify_backend());
    let first = lock.acquire_blocking().unwrap().fence();
    let second = lock.acquire_blocking().unwrap().fence();
    assert!(second > first, "{second} after {first}");
}

#[test]
fn force_unlock_frees_a_py_cachify_hold() {
    let mut py = peer();
    assert_eq!(py.ask("hold forced 60"), "held");
    let lock = Lock::with_backend("forced", &py_cachify_backend());
    assert!(lock.force_unlock_blocking().unwrap());
    assert_eq!(py.ask("is_locked forced"), "false");
}

#[test]
fn the_py_cachify_prefix_is_configurable() {
    let mut py = PyCachifyPeer::start(&server().url(), "billing-");
    assert_eq!(py.ask("hold invoice-7 60"), "held");
    let custom = backend(|config| config.py_cachify_prefix("billing-"));
    assert!(Lock::with_backend("invoice-7", &custom)
        .is_locked_blocking()
        .unwrap());
    assert!(!Lock::with_backend("invoice-7", &py_cachify_backend())
        .is_locked_blocking()
        .unwrap());
    let guard = Lock::with_backend("invoice-8", &custom)
        .acquire_blocking()
        .unwrap();
    assert!(raw_value("billing-invoice-8").is_some());
    assert_eq!(py.ask("is_locked invoice-8"), "true");
    drop(guard);
}

/// The key py-cachify's `@lock(key='job-{flag}-{name}-{extra}')` locks for `job(True, 'x', None)`
/// is `PYC-job-True-x-None-lock`; a handle on that key shares it.
#[test]
fn a_handle_on_a_decorator_key_shares_py_cachifys_decorated_function_lock() {
    let mut py = peer();
    let lock = Lock::with_backend("job-True-x-None-lock", &py_cachify_backend());
    let guard = lock.acquire_blocking().unwrap();
    assert_eq!(py.ask("job_is_locked True x"), "true");
    assert_eq!(py.ask("call_job True x"), "refused");
    assert_eq!(py.ask("job_is_locked False x"), "false");
    drop(guard);
    assert_eq!(py.ask("call_job True x"), "done");
}

#[test]
fn py_cachify_mode_refuses_a_cluster() {
    let refused =
        RedisBackend::connect_blocking(RedisConfig::cluster(["redis://127.0.0.1:1"]).py_cachify());
    assert!(
        matches!(refused, Err(LockError::InvalidArgument { .. })),
        "{refused:?}"
    );
}

/// The watchdog renews lockwright's holds on py-cachify's layout: held for py-cachify well past
/// the lease.
#[test]
fn a_renewed_lockwright_hold_stays_held_for_py_cachify_past_its_lease() {
    let mut py = peer();
    let lock = Lock::with_backend("renewed", &py_cachify_backend()).renewed_lease(0.6);
    let guard = lock.acquire_blocking().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(py.ask("is_locked renewed"), "true");
    assert_eq!(py.ask("hold renewed 30"), "refused");
    assert!(guard.is_renewed() && !guard.is_lease_lost());
    drop(guard);
}
