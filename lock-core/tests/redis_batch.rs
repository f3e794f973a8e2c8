//! Group commit on Redis (`src/redis/batch.rs`): operations issued while a batch is in flight go
//! out together as one script call, applied in order and answered each on its own.
//!
//! Each test pauses its own server (`CLIENT PAUSE`) right after a first operation was sent, so
//! that first batch stays in flight while the operations under test queue behind it: which
//! operations share a batch is then certain, not a matter of timing. One connection
//! (`pool_size(1)`), so every key is in the one queue.

mod support;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use lock_core::{
    Backend, Fence, Lock, LockError, Owner, RedisBackend, RedisConfig, Release, ReleaseScope,
    TryAcquire,
};

use support::RedisServer;

/// How long the server stays paused: the operations under test are queued well within it.
const PAUSE: Duration = Duration::from_millis(600);
const LEASE: Option<Duration> = Some(Duration::from_secs(30));

fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .expect("raw redis connection")
}

fn one_connection_backend(url: &str) -> RedisBackend {
    RedisBackend::connect_blocking(RedisConfig::new(url).pool_size(1)).unwrap()
}

/// Script calls the server has run so far (`EVALSHA`, and `EVAL` after a `NOSCRIPT`).
fn script_calls(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

/// Another owner than the caller's: a thread's.
fn other_owner() -> Owner {
    std::thread::spawn(Owner::current).join().unwrap()
}

/// Sends an acquire of `key` and pauses the server while it is in flight, so it stays the
/// queue's one batch in flight for [`PAUSE`]. Returns its task.
async fn batch_in_flight(
    backend: &RedisBackend,
    url: &str,
    key: &str,
) -> tokio::task::JoinHandle<lock_core::Result<TryAcquire>> {
    // Pause first, for all commands but this connection's: the acquire sent next is held.
    let mut admin = raw(url);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis() as u64)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    let (backend, key) = (backend.clone(), Arc::<str>::from(key));
    let first = tokio::spawn(async move { backend.try_acquire(&key, other_owner(), LEASE).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    first
}

/// Polls each future once, in order (so each is queued in that order), then runs them all.
async fn queued_in_order<T>(
    mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>,
) -> Vec<T> {
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            assert!(
                future.as_mut().poll(cx).is_pending(),
                "answered while the server is paused"
            );
        }
        Poll::Ready(())
    })
    .await;
    let mut outputs = Vec::new();
    for future in futures {
        outputs.push(future.await);
    }
    outputs
}

fn fence_of(acquired: &lock_core::Result<TryAcquire>) -> Fence {
    match acquired {
        Ok(TryAcquire::Acquired { fence, .. }) => *fence,
        other => panic!("not acquired: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_issued_while_a_batch_is_in_flight_go_out_together_answered_each_on_its_own() {
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let mut admin = raw(&server.url());
    let before = script_calls(&mut admin);
    let first = batch_in_flight(&backend, &server.url(), "first").await;
    // 40 acquires of distinct keys by one owner each, one of a key the first batch takes.
    let keys: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("queued-{i}"))).collect();
    let owners: Vec<Owner> = (0..40).map(|_| other_owner()).collect();
    let first_key: Arc<str> = Arc::from("first");
    let mut futures: Vec<Pin<Box<dyn Future<Output = _> + Send>>> = keys
        .iter()
        .zip(&owners)
        .map(|(key, owner)| backend.try_acquire(key, *owner, LEASE))
        .collect();
    futures.push(backend.try_acquire(&first_key, Owner::current(), LEASE));
    let answers = queued_in_order(futures).await;
    assert!(matches!(
        first.await.unwrap(),
        Ok(TryAcquire::Acquired { .. })
    ));
    for answer in &answers[..40] {
        fence_of(answer);
    }
    assert!(
        matches!(answers[40], Ok(TryAcquire::Held { .. })),
        "the key the first batch took is held: {:?}",
        answers[40]
    );
    // The first batch, then the 41 queued operations in one call.
    assert_eq!(script_calls(&mut admin) - before, 2);
    for (key, owner) in keys.iter().zip(&owners) {
        let state = backend.inspect(key, *owner).await.unwrap();
        assert!(state.locked && state.held_by_owner, "{key}: {state:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_grow_within_one_batch_that_takes_a_key_again_after_freeing_it() {
    // One batch reads the server clock once: the second hold of the key must still get a fence
    // above the first's (from the counter), never the same one.
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let first = batch_in_flight(&backend, &server.url(), "clock").await;
    let key: Arc<str> = Arc::from("again");
    let (one, two) = (Owner::current(), other_owner());
    let answers = queued_in_order(vec![
        Box::pin(async { backend.try_acquire(&key, one, LEASE).await.map(Some) }),
        Box::pin(async {
            let released = backend.release(&key, one, None, ReleaseScope::One).await?;
            assert_eq!(released, Release::Freed);
            Ok(None)
        }),
        Box::pin(async { backend.try_acquire(&key, two, LEASE).await.map(Some) }),
        Box::pin(async {
            backend.release(&key, two, None, ReleaseScope::One).await?;
            Ok(None)
        }),
        Box::pin(async { backend.try_acquire(&key, one, LEASE).await.map(Some) }),
    ])
    .await;
    first.await.unwrap().unwrap();
    let fences: Vec<Fence> = answers
        .into_iter()
        .filter_map(|answer: lock_core::Result<Option<TryAcquire>>| answer.unwrap())
        .map(|acquired| fence_of(&Ok(acquired)))
        .collect();
    assert_eq!(fences.len(), 3);
    assert!(
        fences[0] < fences[1] && fences[1] < fences[2],
        "fences must grow strictly: {fences:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_that_fails_in_a_batch_fails_alone() {
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let mut admin = raw(&server.url());
    // A key of another type where a lock would be: its acquire fails (WRONGTYPE).
    let _: () = redis::cmd("LPUSH")
        .arg(backend.lock_key("not-a-lock"))
        .arg("x")
        .query(&mut admin)
        .unwrap();
    let first = batch_in_flight(&backend, &server.url(), "first").await;
    let (good_before, bad, good_after): (Arc<str>, Arc<str>, Arc<str>) = (
        "good-before".into(),
        "not-a-lock".into(),
        "good-after".into(),
    );
    let owner = Owner::current();
    let answers = queued_in_order(vec![
        backend.try_acquire(&good_before, owner, LEASE),
        backend.try_acquire(&bad, owner, LEASE),
        backend.try_acquire(&good_after, owner, LEASE),
    ])
    .await;
    first.await.unwrap().unwrap();
    fence_of(&answers[0]);
    fence_of(&answers[2]);
    match &answers[1] {
        Err(LockError::Backend { key, source }) => {
            assert_eq!(&**key, "not-a-lock");
            assert!(source.to_string().contains("WRONGTYPE"), "{source}");
        }
        other => panic!("expected a backend error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acquire_dropped_while_queued_takes_nothing() {
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let first = batch_in_flight(&backend, &server.url(), "first").await;
    let lock = Lock::with_backend("dropped-in-queue", &backend.shared()).exp(30);
    // Queued behind the paused batch, then given up on.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), lock.acquire()).await;
    assert!(gave_up.is_err(), "answered while the server is paused");
    first.await.unwrap().unwrap();
    // What the abandoned acquire took, if anything, is given back; the caller sees it free.
    let start = Instant::now();
    while lock.is_locked().await.unwrap() {
        assert!(start.elapsed() < Duration::from_secs(10), "still held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _guard = lock.acquire().await.unwrap();
}

#[test]
fn a_queue_keeps_going_when_the_runtime_of_the_caller_sending_its_batch_shuts_down() {
    // The first batch is sent by its caller's task. That runtime shuts down while the batch is
    // in flight, with other callers' operations queued behind it: they are still sent and
    // answered, and the first caller's hold is given back.
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let mut admin = raw(&server.url());
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis() as u64)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let first = Lock::with_backend("sender-runtime-gone", &backend.shared()).exp(30);
    let holder = first.clone();
    doomed.spawn(async move {
        let _guard = holder.acquire().await;
        std::future::pending::<()>().await;
    });
    std::thread::sleep(Duration::from_millis(50));
    let others: Vec<_> = (0..10)
        .map(|i| {
            let lock = Lock::with_backend(format!("behind-{i}"), &backend.shared()).exp(30);
            std::thread::spawn(move || lock.acquire_blocking().map(|guard| guard.fence()))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    drop(doomed);
    for other in others {
        other.join().unwrap().unwrap();
    }
    let start = Instant::now();
    while first.is_locked_blocking().unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the first hold was not given back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
