//! How an acquire waits, for locks and pools alike: listen, try, then sleep until a release
//! wakes us, the holder's lease ends, or our deadline passes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use event_listener::{EventListener, Listener};

use crate::backend::RemainingLease;
use crate::error::{LockError, Result};

/// How long an acquire may wait.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Wait {
    No,
    For(Duration),
    Forever,
}

impl Wait {
    /// From py-cachify's options: `nowait` wins over `timeout`.
    pub(crate) fn from_options(nowait: bool, timeout: Option<Duration>) -> Wait {
        match (nowait, timeout) {
            (true, _) => Wait::No,
            (false, Some(timeout)) => Wait::For(timeout),
            (false, None) => Wait::Forever,
        }
    }
}

/// Whether a wait parks the thread (blocking API) or awaits (async API).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Waiter {
    Thread,
    Task,
}

/// One try's outcome: what was taken, or how long what stands in the way lasts at most.
pub(crate) enum Attempt<T> {
    Taken(T),
    Busy(RemainingLease),
}

/// Tries until `attempt` takes what it wants or the wait is over. `listen` registers for the
/// wake-up *before* each try, so a release between the try and the sleep still wakes us;
/// `busy` is told each time a try found it taken; `refused` is the error of a `Wait::No` try
/// that found it taken.
pub(crate) async fn until_taken<T, Fut>(
    key: &Arc<str>,
    wait: Wait,
    waiter: Waiter,
    listen: impl Fn() -> EventListener,
    mut attempt: impl FnMut() -> Fut,
    mut busy: impl FnMut(Instant),
    refused: impl FnOnce() -> LockError,
) -> Result<T>
where
    Fut: Future<Output = Result<Attempt<T>>>,
{
    let deadline = match wait {
        Wait::For(timeout) => Some(Instant::now() + timeout),
        Wait::No | Wait::Forever => None,
    };
    loop {
        let listener = match wait {
            Wait::No => None,
            Wait::For(_) | Wait::Forever => Some(listen()),
        };
        let remaining = match attempt().await? {
            Attempt::Taken(taken) => return Ok(taken),
            Attempt::Busy(remaining) => remaining,
        };
        let Some(listener) = listener else {
            return Err(refused());
        };
        let now = Instant::now();
        busy(now);
        let lease_end = match remaining {
            // Another client may have set any TTL on a shared Redis key: an end beyond what
            // `Instant` can hold is as good as none.
            RemainingLease::Remaining(left) => now.checked_add(left),
            RemainingLease::Unlimited | RemainingLease::NotLocked => None,
        };
        let wake_at = match (deadline, lease_end) {
            (Some(deadline), _) if deadline <= now => {
                return Err(LockError::TimedOut {
                    key: Arc::clone(key),
                    waited: match wait {
                        Wait::For(timeout) => timeout,
                        Wait::No | Wait::Forever => Duration::ZERO,
                    },
                })
            }
            (Some(deadline), Some(lease_end)) => Some(deadline.min(lease_end)),
            (deadline, lease_end) => deadline.or(lease_end),
        };
        sleep_until(listener, wake_at, waiter).await;
    }
}

async fn sleep_until(listener: EventListener, wake_at: Option<Instant>, waiter: Waiter) {
    match (waiter, wake_at) {
        (Waiter::Thread, Some(at)) => {
            listener.wait_deadline(at);
        }
        (Waiter::Thread, None) => listener.wait(),
        // Without a tokio runtime there is no timer to await: wait on this thread instead of
        // panicking (correct under any executor, though it blocks that executor's thread).
        (Waiter::Task, Some(at)) if tokio::runtime::Handle::try_current().is_err() => {
            listener.wait_deadline(at);
        }
        (Waiter::Task, Some(at)) => {
            let _ = tokio::time::timeout_at(at.into(), listener).await;
        }
        (Waiter::Task, None) => listener.await,
    }
}

/// `Ok(None)` for contention (the `try_` forms), else the result as it is.
pub(crate) fn contention_as_none<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(taken) => Ok(Some(taken)),
        Err(err) if err.is_contention() => Ok(None),
        Err(err) => Err(err),
    }
}
