//! Group commit on Redis (`src/redis/batch.rs`): operations issued while a batch is in flight go
//! out together as one script call, applied in order and answered each on its own.
//!
//! Each test pauses its own server (`CLIENT PAUSE`) right after the most calls a queue sends at
//! once were sent, so those stay in flight while the operations under test queue behind them:
//! which operations share a batch is then certain, not a matter of timing. One connection
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

use support::{raw, script_calls, RedisServer};

/// How long the server stays paused: the operations under test are queued well within it.
const PAUSE: Duration = Duration::from_millis(1000);
const LEASE: Option<Duration> = Some(Duration::from_secs(30));

fn one_connection_backend(url: &str) -> RedisBackend {
    RedisBackend::connect_blocking(RedisConfig::new(url).pool_size(1)).unwrap()
}

/// Another owner than the caller's: a thread's.
fn other_owner() -> Owner {
    std::thread::spawn(Owner::current).join().unwrap()
}

/// Calls one queue has in flight at most.
const SENDERS: usize = support::BATCH_SENDERS;

/// Pauses the server, then sends [`SENDERS`] acquires (of `key`, and of keys next to it), which
/// stay in flight for [`PAUSE`]: operations issued next queue behind them. Returns the task of
/// the acquire of `key`.
async fn batch_in_flight(
    backend: &RedisBackend,
    url: &str,
    key: &str,
) -> tokio::task::JoinHandle<lock_core::Result<TryAcquire>> {
    let owners: Vec<Owner> = (0..SENDERS).map(|_| other_owner()).collect();
    // Pause first, for all commands but this connection's: the acquires sent next are held.
    let mut admin = raw(url);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(PAUSE.as_millis() as u64)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    let mut in_flight: Vec<_> = owners
        .into_iter()
        .enumerate()
        .map(|(i, owner)| {
            let backend = backend.clone();
            let key: Arc<str> = if i == 0 {
                key.into()
            } else {
                format!("{key}-in-flight-{i}").into()
            };
            tokio::spawn(async move { backend.try_acquire(&key, owner, LEASE).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let first = in_flight.remove(0);
    tokio::spawn(async move {
        for other in in_flight {
            let _ = other.await;
        }
        first.await.unwrap()
    })
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
    // 40 acquires of distinct keys by one owner each, one of a key the first batch takes.
    let keys: Vec<Arc<str>> = (0..40).map(|i| Arc::from(format!("queued-{i}"))).collect();
    let owners: Vec<Owner> = (0..40).map(|_| other_owner()).collect();
    let before = script_calls(&mut admin);
    let first = batch_in_flight(&backend, &server.url(), "first").await;
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
    // The calls in flight, then the 41 queued operations in one call.
    assert_eq!(script_calls(&mut admin) - before, SENDERS as u64 + 1);
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
    let key: Arc<str> = Arc::from("again");
    let (one, two) = (Owner::current(), other_owner());
    let first = batch_in_flight(&backend, &server.url(), "clock").await;
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
    let (done, finished) = std::sync::mpsc::channel();
    for i in 0..10 {
        let lock = Lock::with_backend(format!("behind-{i}"), &backend.shared()).exp(30);
        let done = done.clone();
        std::thread::spawn(move || done.send(lock.acquire_blocking().map(|guard| guard.fence())));
    }
    std::thread::sleep(Duration::from_millis(50));
    drop(doomed);
    for _ in 0..10 {
        finished
            .recv_timeout(Duration::from_secs(10))
            .expect("an operation queued behind the cut-off batch got no answer")
            .unwrap();
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

#[test]
fn a_blocking_call_behind_a_batch_of_a_task_on_the_same_current_thread_runtime_does_not_hang() {
    // A task of a current-thread runtime issues an operation (its batch is then in flight);
    // another task on that thread makes a blocking call queued behind it, parking the one thread
    // that polls the first task. The batch must not depend on that task being polled.
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let (done, answered) = std::sync::mpsc::channel();
    let shared = backend.shared();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let leader = {
                let backend = backend.clone();
                tokio::spawn(async move { backend.inspect("leader", Owner::current()).await })
            };
            tokio::task::yield_now().await; // the leader ran: its batch is in flight
            let locked = Lock::with_backend("blocking", &shared).is_locked_blocking();
            done.send(locked.map(|_| ())).unwrap();
            leader.await.unwrap().unwrap();
        });
    });
    answered
        .recv_timeout(Duration::from_secs(10))
        .expect("the blocking call hung behind the batch of a task of its own thread")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_stops_polling_after_its_batch_was_sent_holds_up_nobody() {
    // A future polled once (its operation sent) and then set aside (a `select!` branch, a
    // stored or leaked future): the other operations of its connection go on.
    let server = RedisServer::start();
    let backend = RedisBackend::connect(
        RedisConfig::new(server.url())
            .pool_size(1)
            .command_timeout(0.5)
            .unwrap(),
    )
    .await
    .unwrap();
    let mut set_aside = backend.inspect("set-aside", Owner::current());
    std::future::poll_fn(|cx| {
        let _ = set_aside.as_mut().poll(cx);
        Poll::Ready(())
    })
    .await;
    let other = {
        let backend = backend.clone();
        tokio::spawn(async move {
            tokio::time::timeout(
                Duration::from_secs(5),
                backend.inspect("other", Owner::current()),
            )
            .await
        })
    };
    let answered = other.await.unwrap();
    drop(set_aside);
    assert!(
        matches!(answered, Ok(Ok(_))),
        "another task's operation waited for a future nobody polled: {answered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_a_release_in_the_same_batch_as_a_refused_acquire_still_frees_its_key() {
    // Out of memory, Redis refuses writes that add data (the acquire's) but not DEL: the
    // refused acquire fails alone, the release beside it in the batch frees its key.
    let server = RedisServer::start();
    let backend = one_connection_backend(&server.url());
    let mut admin = raw(&server.url());
    let held: Arc<str> = "held".into();
    let owner = Owner::current();
    let fence = fence_of(&backend.try_acquire(&held, owner, None).await);
    let other: Arc<str> = "other".into();
    let other_one = other_owner();
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut admin)
        .unwrap();
    let first = batch_in_flight(&backend, &server.url(), "first").await;
    let answers = queued_in_order(vec![
        Box::pin(async {
            backend
                .try_acquire(&other, other_one, LEASE)
                .await
                .map(|_| None)
        }) as Pin<Box<dyn Future<Output = lock_core::Result<Option<Release>>> + Send>>,
        Box::pin(async {
            backend
                .release(&held, owner, Some(fence), ReleaseScope::One)
                .await
                .map(Some)
        }),
    ])
    .await;
    let _ = first.await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut admin)
        .unwrap();
    match &answers[0] {
        Err(LockError::Backend { source, .. }) => {
            assert!(source.to_string().contains("OOM"), "{source}")
        }
        other => panic!("an acquire out of memory: {other:?}"),
    }
    assert!(
        matches!(answers[1], Ok(Some(Release::Freed))),
        "the release beside it: {:?}",
        answers[1]
    );
}

#[test]
fn a_queued_operation_fails_within_its_own_command_timeout_of_a_hung_server() {
    // Behind a call that the stopped server never answers, a queued operation still fails once
    // the command timeout has passed since it was issued (not after that call's timeout plus
    // its own).
    let timeout = Duration::from_secs(2);
    let server = RedisServer::start();
    let config = RedisConfig::new(server.url())
        .pool_size(1)
        .command_timeout(timeout)
        .unwrap();
    let backend = RedisBackend::connect_blocking(config).unwrap();
    let lock = Lock::with_backend("hung-a", &backend.shared());
    assert!(!lock.is_locked_blocking().unwrap());
    // SAFETY: kill(2) on the pid of a child process the harness started.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGSTOP) }, 0);
    let ahead = std::thread::spawn(move || lock.is_locked_blocking().map(drop));
    std::thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    let queued = Lock::with_backend("hung-b", &backend.shared()).is_locked_blocking();
    let took = start.elapsed();
    let _ = ahead.join();
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGCONT) }, 0);
    assert!(queued.is_err());
    assert!(
        took < timeout + timeout * 3 / 4,
        "failed after {took:?} with a {timeout:?} command timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_an_operation_that_wrote_nothing_is_not_failed_by_another_ops_wait() {
    // An extend of a hold that is gone wrote nothing: it answers false, even when it shares a
    // batch with an acquire whose WAIT fell short (no replica here).
    let server = RedisServer::start();
    let backend = RedisBackend::connect(
        RedisConfig::new(server.url())
            .pool_size(1)
            .wait_replicas(1, 0.1)
            .unwrap(),
    )
    .await
    .unwrap();
    let acquired: Arc<str> = "writes".into();
    let other_one = other_owner();
    let first = batch_in_flight(&backend, &server.url(), "first").await;
    let answers = queued_in_order(vec![
        Box::pin(async {
            backend
                .try_acquire(&acquired, other_one, LEASE)
                .await
                .map(|_| None)
        }) as Pin<Box<dyn Future<Output = lock_core::Result<Option<bool>>> + Send>>,
        Box::pin(async {
            backend
                .extend("not-held", Owner::current(), Fence(1), LEASE)
                .await
                .map(Some)
        }),
    ])
    .await;
    let _ = first.await;
    assert!(
        matches!(answers[0], Err(LockError::NotReplicated { .. })),
        "the acquire no replica confirmed: {:?}",
        answers[0]
    );
    assert!(
        matches!(answers[1], Ok(Some(false))),
        "extend of a hold that is gone: {:?}",
        answers[1]
    );
}
