//! Where the backend's I/O runs: a runtime of its own or one it was given, and how the backend
//! learns that a given runtime has shut down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::RedisBackend;

/// Where the backend's I/O runs: a runtime it owns (shut down without blocking, so dropping the
/// backend is fine anywhere) or one it was given ([`RedisConfig::runtime`]).
pub(super) struct IoRuntime {
    pub(super) owned: Option<tokio::runtime::Runtime>,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) gone: Arc<RuntimeGone>,
}

/// What the backend knows of its runtime's end, and of reaching Redis without it.
#[derive(Default)]
pub(super) struct RuntimeGone {
    /// Set when a given runtime has shut down: its timers would panic if used.
    pub(super) flag: AtomicBool,
    /// When a synchronous release ([`RedisBackend::release_without_runtime`]) last failed. A
    /// shutdown may drop many guards at once: with the server unreachable or silent, the ones
    /// right after a failure give up at once instead of each waiting out the timeouts again.
    pub(super) blocking_failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl IoRuntime {
    pub(super) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    pub(super) fn is_gone(&self) -> bool {
        self.gone.flag.load(Ordering::Acquire)
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.owned.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lives in a task on the I/O runtime: a runtime that shuts down drops its tasks, and so tells
/// the backend.
pub(super) struct FlagOnDrop(pub(super) Arc<RuntimeGone>);

impl Drop for FlagOnDrop {
    fn drop(&mut self) {
        self.0.flag.store(true, Ordering::Release);
    }
}

impl RedisBackend {
    /// A given runtime may shut down before the backend: a task on it notices (its tasks are
    /// dropped then), so operations fail typed instead of touching its timers.
    pub(super) fn watch_runtime(&self) {
        let closing = self.inner.closing.listen();
        let gone = FlagOnDrop(Arc::clone(&self.inner.runtime.gone));
        self.inner.runtime.handle().spawn(async move {
            let _gone = gone; // dropped by a runtime shutdown, or harmlessly when the backend closes
            closing.await;
        });
    }
}
