//! Runs a future to completion on the current thread: how the blocking API reuses the async one.

use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

struct Unparker(Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` until ready, parking the thread while it is pending. Works inside or outside
/// an async runtime (it never touches one), so backends whose futures are runtime-agnostic serve
/// the blocking API too. Memory-backend futures are ready at the first poll.
///
/// Called from a task of a multi-thread tokio runtime (blocking code inside async code, e.g. a
/// sync `#[locked]` function), parking would also stall the tasks queued on this worker, which
/// may be the very ones the future waits for: the lock's holder, or the connection driver of a
/// backend running on this runtime. So once the future is pending, the wait happens inside
/// `block_in_place`, which hands those tasks to another thread first.
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    let _polling = PollingHere::start();
    let mut future = pin!(future);
    if let Poll::Ready(output) = poll_once(future.as_mut()) {
        return output;
    }
    if on_multi_thread_task() {
        return tokio::task::block_in_place(|| park_until_ready(future));
    }
    park_until_ready(future)
}

thread_local!(static WAKER: Waker = Waker::from(Arc::new(Unparker(thread::current()))));

thread_local!(static IN_BLOCK_ON: Cell<bool> = const { Cell::new(false) });

/// Whether the current thread is inside [`block_on`]: then the future being polled is polled
/// again and again until it is done, by a thread that does nothing else meanwhile. (A task of an
/// async executor may be left unpolled for a while, or share its thread with code that blocks.)
#[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis backend asks
pub(crate) fn polled_by_block_on() -> bool {
    IN_BLOCK_ON.with(Cell::get)
}

/// Marks the thread as inside [`block_on`] until dropped (restoring what it was: calls nest).
struct PollingHere(bool);

impl PollingHere {
    fn start() -> Self {
        PollingHere(IN_BLOCK_ON.with(|flag| flag.replace(true)))
    }
}

impl Drop for PollingHere {
    fn drop(&mut self) {
        let before = self.0;
        IN_BLOCK_ON.with(|flag| flag.set(before));
    }
}

fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    WAKER.with(|waker| future.poll(&mut Context::from_waker(waker)))
}

fn park_until_ready<F: Future>(mut future: Pin<&mut F>) -> F::Output {
    loop {
        if let Poll::Ready(output) = poll_once(future.as_mut()) {
            return output;
        }
        thread::park();
    }
}

/// Whether this thread runs a task of a multi-thread tokio runtime, where `block_in_place` is
/// allowed (it panics on a current-thread runtime, which this excludes).
fn on_multi_thread_task() -> bool {
    tokio::task::try_id().is_some()
        && tokio::runtime::Handle::try_current().is_ok_and(|handle| {
            handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        })
}
