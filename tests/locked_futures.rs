//! Functions that are not `async` but return a future (`impl Future`, a pinned boxed future, and
//! what `#[async_trait]` makes of an `async fn`, with `#[locked]` above it and below it) hold the
//! lock while the returned future runs, not only while it is built.

use std::future::Future;
use std::pin::Pin;

use lockwright::{is_locked, locked, Lock, LockError};

/// Whether the lock on `key` is held right now, asked from another thread (another owner).
fn held_now(key: &str) -> bool {
    let key = key.to_owned();
    std::thread::spawn(move || Lock::new(key).is_locked_blocking().unwrap())
        .join()
        .unwrap()
}

#[locked(key = "fut-impl-{id}")]
fn returns_impl_future(id: u32) -> impl Future<Output = Result<bool, LockError>> {
    async move {
        tokio::task::yield_now().await;
        Ok(held_now(&format!("fut-impl-{id}")))
    }
}

#[locked(key = "fut-boxed-{id}", nowait)]
fn returns_boxed_future(id: u32) -> Pin<Box<dyn Future<Output = Result<bool, LockError>> + Send>> {
    Box::pin(async move {
        tokio::task::yield_now().await;
        Ok(held_now(&format!("fut-boxed-{id}")))
    })
}

#[async_trait::async_trait]
trait Job {
    async fn run(&self, id: u32) -> Result<bool, LockError>;
}

struct LockedAbove;
struct LockedBelow;

// `#[locked]` above `#[async_trait]`: it sees the `async fn` and locks it as one.
#[locked]
#[async_trait::async_trait]
impl Job for LockedAbove {
    #[locked(key = "above-{id}")]
    async fn run(&self, id: u32) -> Result<bool, LockError> {
        tokio::task::yield_now().await;
        Ok(held_now(&format!("above-{id}")))
    }
}

// `#[locked]` below `#[async_trait]`: it sees the boxed future `#[async_trait]` made and locks
// the future.
#[async_trait::async_trait]
#[locked]
impl Job for LockedBelow {
    #[locked(key = "below-{id}")]
    async fn run(&self, id: u32) -> Result<bool, LockError> {
        tokio::task::yield_now().await;
        Ok(held_now(&format!("below-{id}")))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_future_runs_under_the_lock_and_releases_it_when_done() {
    assert!(
        returns_impl_future(1).await.unwrap(),
        "impl Future ran unlocked"
    );
    assert!(!held_now("fut-impl-1"));
    assert!(
        returns_boxed_future(2).await.unwrap(),
        "boxed future ran unlocked"
    );
    assert!(!held_now("fut-boxed-2"));
    assert!(
        LockedAbove.run(3).await.unwrap(),
        "#[locked] above #[async_trait] ran unlocked"
    );
    assert!(!held_now("above-3"));
    assert!(
        LockedBelow.run(4).await.unwrap(),
        "#[locked] below #[async_trait] ran unlocked"
    );
    assert!(!held_now("below-4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_future_reports_contention_through_its_output() {
    // Held by another task (the same task would re-enter).
    let _held = tokio::spawn(async { Lock::new("fut-boxed-5").acquire().await.unwrap() })
        .await
        .unwrap();
    let err = returns_boxed_future(5).await.unwrap_err();
    assert!(matches!(err, LockError::Locked { .. }), "{err:?}");
    assert!(is_locked!(returns_boxed_future(5)).await.unwrap());
    assert!(is_locked!(LockedBelow.run(5)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_future_dropped_unpolled_or_midway_takes_or_keeps_nothing() {
    // Built but never polled: nothing was acquired.
    drop(returns_impl_future(6));
    assert!(!held_now("fut-impl-6"));
    // Dropped while it runs: the lock goes with it.
    let running = tokio::spawn(returns_impl_future(7));
    running.abort();
    let _ = running.await;
    assert!(!held_now("fut-impl-7"));
}
