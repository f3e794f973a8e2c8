//! Pools on Redis beyond the conformance suite (which runs the pool contract on every backend):
//! the layout and its lifetime (state bounded by the slots' leases), group commit of pool
//! operations, acquires abandoned in flight, wake-ups across processes' subscribers, and a
//! size agreed between separate clients.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lock_core::{Backend, LockError, Owner, Pool, PoolAcquire, RedisBackend, RedisConfig};

use support::{raw, script_calls, RedisServer, BATCH_SENDERS};

const LIVENESS: Duration = Duration::from_secs(10);

fn backend(url: &str) -> RedisBackend {
    RedisBackend::connect_blocking(RedisConfig::new(url)).unwrap()
}

fn pttl(conn: &mut redis::Connection, name: &str) -> i64 {
    redis::cmd("PTTL").arg(name).query(conn).unwrap()
}

fn exists(conn: &mut redis::Connection, name: &str) -> bool {
    redis::cmd("EXISTS").arg(name).query::<i64>(conn).unwrap() == 1
}

fn other_owner() -> Owner {
    std::thread::spawn(Owner::current).join().unwrap()
}

#[test]
fn a_pool_lives_as_long_as_its_slots_and_leaves_only_its_token_meta_for_the_token_ttl() {
    let server = RedisServer::start();
    let redis = backend(&server.url());
    let mut conn = raw(&server.url());
    let (pool_name, meta_name) = (
        "lockwright:{reports}:pool",
        "lockwright:{reports}:pool-meta",
    );
    let pool = Pool::with_backend("reports", 2, &redis.shared()).exp(0.3);
    let slot = pool.acquire_blocking().unwrap();
    let members: Vec<String> = redis::cmd("ZRANGE")
        .arg(pool_name)
        .arg(0)
        .arg(-1)
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        members,
        vec![format!("{}:{}", slot.slot(), slot.owner())],
        "one member per slot: token and owner"
    );
    let ttl = pttl(&mut conn, pool_name);
    assert!(
        ttl > 0 && ttl <= 301,
        "the pool ends with its last slot: {ttl}"
    );
    assert!(pttl(&mut conn, meta_name) > 0, "the meta always has a TTL");
    // Untouched, the slot's lease runs out and Redis deletes the pool by itself.
    std::mem::forget(slot);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !exists(&mut conn, pool_name),
        "an expired pool leaves no set"
    );
    assert!(pttl(&mut conn, meta_name) > 0);
    assert_eq!(pool.size_blocking().unwrap(), 0);

    // Slots that never expire keep the pool (and its size) until they are given back.
    let forever = Pool::with_backend("reports", 2, &redis.shared()).never_expires();
    let slot = forever.acquire_blocking().unwrap();
    assert_eq!(pttl(&mut conn, pool_name), -1);
    assert_eq!(pttl(&mut conn, meta_name), -1);
    slot.release_blocking().unwrap();
    assert!(!exists(&mut conn, pool_name));
    let meta_ttl = pttl(&mut conn, meta_name);
    assert!(
        meta_ttl > 0,
        "the meta outlives the last slot by the token TTL only: {meta_ttl}"
    );
}

#[test]
fn a_name_of_another_type_is_a_typed_error() {
    let server = RedisServer::start();
    let redis = backend(&server.url());
    let mut conn = raw(&server.url());
    let _: () = redis::cmd("SET")
        .arg("lockwright:{taken}:pool")
        .arg("not a pool")
        .query(&mut conn)
        .unwrap();
    let pool = Pool::with_backend("taken", 2, &redis.shared());
    let err = pool.acquire_blocking().unwrap_err();
    assert!(
        matches!(err, LockError::Backend { .. }) && err.to_string().contains("WRONGTYPE"),
        "{err}"
    );
    let err = pool.size_blocking().unwrap_err();
    assert!(matches!(err, LockError::Backend { .. }), "{err}");
}

#[test]
fn clients_of_one_pool_must_agree_on_its_size_while_slots_live() {
    let server = RedisServer::start();
    let (one, two) = (backend(&server.url()), backend(&server.url()));
    let of_two = Pool::with_backend("agreed", 2, &one.shared());
    let of_three = Pool::with_backend("agreed", 3, &two.shared());
    let slot = of_two.acquire_blocking().unwrap();
    let err = of_three.acquire_blocking().unwrap_err();
    assert!(
        matches!(
            err,
            LockError::PoolSizeMismatch {
                live: 2,
                given: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        of_two.size_blocking().unwrap(),
        1,
        "the refused acquire took nothing"
    );
    assert_eq!(of_three.state_blocking().unwrap().max_size, Some(2));
    drop(slot);
    // Empty, the pool takes the new size.
    let _slot = of_three.acquire_blocking().unwrap();
    assert_eq!(of_three.state_blocking().unwrap().max_size, Some(3));
}

#[test]
fn a_waiter_in_another_process_is_woken_by_the_release_not_by_the_lease() {
    let server = RedisServer::start();
    let (holder, waiter) = (backend(&server.url()), backend(&server.url()));
    let held = Pool::with_backend("handoff", 1, &holder.shared()).exp(30);
    let slot = held.acquire_blocking().unwrap();
    let waiting = Pool::with_backend("handoff", 1, &waiter.shared())
        .exp(30)
        .nowait(false)
        .timeout(20);
    let (took, taken) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let start = Instant::now();
        let got = waiting.acquire_blocking().map(|slot| slot.slot());
        took.send((got, start.elapsed())).unwrap();
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(taken.try_recv().is_err(), "got a slot of a full pool");
    slot.release_blocking().unwrap();
    let (got, waited) = taken.recv_timeout(LIVENESS).unwrap();
    got.unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "woken by the lease, not the release: {waited:?}"
    );
}

/// Pauses the server's writes, then puts [`BATCH_SENDERS`] calls (the most a queue sends at
/// once) in flight on a one-connection backend, so operations issued next queue behind them.
async fn calls_in_flight(
    backend: &RedisBackend,
    url: &str,
    pause: Duration,
) -> Vec<tokio::task::JoinHandle<lock_core::Result<PoolAcquire>>> {
    let mut admin = raw(url);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("WRITE")
        .query(&mut admin)
        .unwrap();
    let in_flight = (0..BATCH_SENDERS)
        .map(|i| {
            let backend = backend.clone();
            let key: Arc<str> = format!("in-flight-{i}").into();
            let owner = other_owner();
            tokio::spawn(async move {
                backend
                    .pool_acquire(&key, owner, 1, Some(Duration::from_secs(30)))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    in_flight
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_acquires_issued_while_calls_are_in_flight_go_out_together_and_at_most_max_size_win() {
    let server = RedisServer::start();
    let redis = RedisBackend::connect(RedisConfig::new(server.url()).pool_size(1))
        .await
        .unwrap();
    let mut admin = raw(&server.url());
    let before = script_calls(&mut admin);
    let in_flight = calls_in_flight(&redis, &server.url(), Duration::from_millis(800)).await;
    let key: Arc<str> = "crowded".into();
    let owners: Vec<Owner> = (0..10).map(|_| other_owner()).collect();
    let acquires = owners
        .iter()
        .map(|owner| redis.pool_acquire(&key, *owner, 3, Some(Duration::from_secs(30))));
    let answers = futures_util::future::join_all(acquires).await;
    for call in in_flight {
        call.await.unwrap().unwrap();
    }
    let taken: Vec<_> = answers
        .iter()
        .filter_map(|answer| match answer {
            Ok(PoolAcquire::Acquired { slot, size }) => Some((*slot, *size)),
            Ok(PoolAcquire::Full { .. }) => None,
            Err(err) => panic!("{err}"),
        })
        .collect();
    assert_eq!(taken.len(), 3, "{answers:?}");
    let sizes: Vec<u32> = taken.iter().map(|(_, size)| *size).collect();
    assert_eq!(sizes, vec![1, 2, 3], "applied in order within the call");
    assert!(
        taken.windows(2).all(|pair| pair[0].0 < pair[1].0),
        "tokens grow"
    );
    assert_eq!(
        script_calls(&mut admin) - before,
        BATCH_SENDERS as u64 + 1,
        "the calls in flight, then the 10 queued acquires in one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_acquire_dropped_in_flight_gives_its_slot_back() {
    let server = RedisServer::start();
    let redis = RedisBackend::connect(RedisConfig::new(server.url()).pool_size(1))
        .await
        .unwrap();
    let pool = Pool::with_backend("given-back", 1, &redis.shared()).exp(30);
    let in_flight = calls_in_flight(&redis, &server.url(), Duration::from_millis(600)).await;
    // Queued (then sent once a call returns) while the server is paused, then given up on.
    let gave_up = tokio::time::timeout(Duration::from_millis(100), pool.acquire()).await;
    assert!(gave_up.is_err(), "answered while the server is paused");
    for call in in_flight {
        call.await.unwrap().unwrap();
    }
    let start = Instant::now();
    while pool.size().await.unwrap() > 0 {
        assert!(
            start.elapsed() < LIVENESS,
            "the abandoned acquire's slot is still taken"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _slot = pool.acquire().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_guard_is_seen_by_the_same_process_next_operation() {
    let server = RedisServer::start();
    let redis = backend(&server.url());
    let pool = Pool::with_backend("own-drops", 1, &redis.shared()).exp(30);
    for _ in 0..50 {
        // The drop's release runs in the background; the next acquire waits for it.
        drop(pool.acquire().await.unwrap());
    }
    assert_eq!(pool.size().await.unwrap(), 0);
}

#[test]
fn a_pool_guard_dropped_by_the_shutdown_of_the_backends_given_runtime_still_gives_its_slot_back() {
    // As a lock guard's (`a_guard_dropped_by_the_shutdown_of_the_backends_given_runtime_still_
    // releases`): the slot never expires, so a release that is only logged leaks it for good.
    // Rounds of each way a runtime shuts down (the order it drops its tasks in varies).
    let server = RedisServer::start();
    let observer = backend(&server.url()).shared();
    for (round, shutdown) in ["drop", "shutdown_background"].repeat(5).iter().enumerate() {
        support::assert_the_given_runtimes_shutdown_gives_back_the_slot(
            RedisConfig::new(server.url()),
            &observer,
            shutdown,
            &format!("given-runtime-shutdown-{round}"),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_a_pool_release_in_the_same_call_as_a_slot_renewal_still_frees_its_slot() {
    // Out of memory, Redis refuses a script's first write that adds data (a renewal's ZADD)
    // and the whole call fails; a release queued beside it must not be taken down with it
    // (as for locks: `out_of_memory_a_release_in_the_same_batch_as_a_refused_acquire_still_
    // frees_its_key`).
    let server = RedisServer::start();
    let redis = RedisBackend::connect(RedisConfig::new(server.url()).pool_size(1))
        .await
        .unwrap();
    let mut admin = raw(&server.url());
    let (renewed, released): (Arc<str>, Arc<str>) = ("renewed".into(), "released".into());
    let owner = Owner::current();
    let slot_of = |acquired: lock_core::Result<PoolAcquire>| match acquired {
        Ok(PoolAcquire::Acquired { slot, .. }) => slot,
        other => panic!("not acquired: {other:?}"),
    };
    let lease = Some(Duration::from_secs(30));
    let renewed_slot = slot_of(redis.pool_acquire(&renewed, owner, 1, lease).await);
    let released_slot = slot_of(redis.pool_acquire(&released, owner, 1, lease).await);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("1")
        .query(&mut admin)
        .unwrap();
    let in_flight = calls_in_flight(&redis, &server.url(), Duration::from_millis(600)).await;
    // Queued in this order behind the calls in flight: one batch, one call (as they stand).
    let mut extend =
        redis.pool_extend(&renewed, owner, renewed_slot, Some(Duration::from_secs(60)));
    let mut release = redis.pool_release(&released, owner, released_slot);
    std::future::poll_fn(|cx| {
        assert!(
            extend.as_mut().poll(cx).is_pending(),
            "answered while paused"
        );
        assert!(
            release.as_mut().poll(cx).is_pending(),
            "answered while paused"
        );
        std::task::Poll::Ready(())
    })
    .await;
    let (extended, freed) = (extend.await, release.await);
    for call in in_flight {
        let _ = call.await.unwrap();
    }
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query(&mut admin)
        .unwrap();
    assert!(
        matches!(freed, Ok(true)),
        "the release beside a renewal refused out of memory: {freed:?} (renewal: {extended:?})"
    );
    assert_eq!(
        redis.pool_state(&released).await.unwrap().size,
        0,
        "the released slot is still taken"
    );
}

#[test]
fn slot_tokens_keep_growing_after_the_server_is_flushed_and_a_stale_guard_frees_nothing() {
    // The pool's last token is gone with the flush: the tokens' floor, the server clock in
    // microseconds, keeps them above every token handed out before, so the stale guard's
    // release (token and owner) cannot match the new slot.
    let server = RedisServer::start();
    let redis = backend(&server.url());
    let mut conn = raw(&server.url());
    let pool = Pool::with_backend("flushed", 1, &redis.shared()).never_expires();
    let stale = pool.acquire_blocking().unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut conn).unwrap();
    let fresh = pool.acquire_blocking().unwrap();
    assert!(
        fresh.slot() > stale.slot(),
        "token {} after the flush, {} before",
        fresh.slot(),
        stale.slot()
    );
    let err = stale.release_blocking().unwrap_err();
    assert!(matches!(err, LockError::LeaseLost { .. }), "{err:?}");
    assert_eq!(
        pool.size_blocking().unwrap(),
        1,
        "the stale guard freed the new slot"
    );
    drop(fresh);
}

#[test]
fn pools_work_in_py_cachify_mode_under_lockwrights_own_names() {
    let server = RedisServer::start();
    let redis =
        RedisBackend::connect_blocking(RedisConfig::new(server.url()).py_cachify()).unwrap();
    let mut conn = raw(&server.url());
    let pool = Pool::with_backend("py-pool", 1, &redis.shared()).exp(30);
    let slot = pool.acquire_blocking().unwrap();
    assert!(exists(&mut conn, "lockwright:{py-pool}:pool"));
    assert!(matches!(
        pool.acquire_blocking(),
        Err(LockError::PoolFull { .. })
    ));
    assert_eq!(pool.size_blocking().unwrap(), 1);
    slot.release_blocking().unwrap();
    assert_eq!(pool.size_blocking().unwrap(), 0);
}
