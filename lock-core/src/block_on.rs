//! Runs a future to completion on the current thread: how the blocking API reuses the async one.

use std::future::Future;
use std::pin::pin;
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
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    thread_local!(static WAKER: Waker = Waker::from(Arc::new(Unparker(thread::current()))));
    let mut future = pin!(future);
    WAKER.with(|waker| {
        let mut cx = Context::from_waker(waker);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            thread::park();
        }
    })
}
