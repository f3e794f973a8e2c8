//! Operations polled by their callers: in-flight releases per key (so a process sees its own
//! drops), operations finished on the backend's runtime when their caller drops them, acquires
//! undone when abandoned, and the synchronous release for when no runtime can run one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use event_listener::Event;

use deadpool_redis::redis;

use super::connection::Applied;
use super::{batch, RedisBackend};
use crate::backend::{Backend, BoxFuture, Fence, HoldKind, TryAcquire};
use crate::error::{LockError, Result};
use crate::owner::Owner;

#[derive(Default)]
pub(super) struct PendingKey {
    pub(super) in_flight: std::sync::atomic::AtomicUsize,
    pub(super) done: Event,
}

/// One release in flight for a key (see [`RedisBackend::pending_until_dropped`]).
pub(super) struct InFlight {
    pub(super) pending: Arc<PendingKey>,
    pub(super) backend: RedisBackend,
    pub(super) key: Arc<str>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.backend.end_pending(&self.key, &self.pending);
    }
}

/// An operation polled in its caller's task. Dropped after its first poll (something may have
/// been sent), the rest of it runs on the backend's runtime instead of being cut off; one that
/// must run in any case is built as `started`.
///
/// It moves once: dropped unfinished again there, that runtime is shutting down (or already
/// gone: tokio drops a task spawned on a shut-down runtime at once), so no runtime is left to run
/// it. Then its `fallback`, if any, runs in place of it, told whether the op was ever polled
/// (whether it may have sent its command already).
pub(super) struct Detachable<T: Send + 'static> {
    pub(super) op: Option<BoxFuture<'static, T>>,
    pub(super) started: bool,
    /// Set by the first poll: from then on the op may have sent something.
    pub(super) polled: bool,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) fallback: Option<Fallback>,
    /// Already moved to `runtime`: never moved again (no respawn loop on a dead runtime).
    pub(super) moved: bool,
    /// Set when it moves: its caller has left (see [`RedisBackend::run_release`]).
    pub(super) left: Option<Arc<AtomicBool>>,
}

/// What to do, synchronously, with a [`Detachable`] no runtime can finish; its argument tells
/// whether the op was polled.
pub(super) type Fallback = Box<dyn FnOnce(bool) + Send>;

impl<T: Send + 'static> Future for Detachable<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.started = true;
        self.polled = true;
        let op = self.op.as_mut().expect("polled after completion");
        let output = ready!(op.as_mut().poll(cx));
        self.op = None;
        Poll::Ready(output)
    }
}

impl<T: Send + 'static> Drop for Detachable<T> {
    fn drop(&mut self) {
        let Some(op) = self.op.take().filter(|_| self.started) else {
            return;
        };
        if self.moved {
            if let Some(fallback) = self.fallback.take() {
                fallback(self.polled);
            }
            drop(op); // after the fallback: the op's pending entry, if any, ends only now
            return;
        }
        if let Some(left) = &self.left {
            left.store(true, Ordering::Release);
        }
        drop(self.runtime.spawn(Detachable {
            op: Some(op),
            started: true,
            polled: self.polled,
            runtime: self.runtime.clone(),
            fallback: self.fallback.take(),
            moved: true,
            left: self.left.take(),
        }));
    }
}

/// An acquire polled in its caller's task. Dropped before it answered (the caller gave up), it
/// must not leave a hold nobody owns: the rest of it runs on the backend's runtime, which gives
/// back any hold it gets, and until then later operations on the key from this process wait
/// (a pending entry), so the caller's next operation sees the key released.
pub(super) struct Acquiring {
    /// `None` when the caller left before anything was sent.
    pub(super) op: Option<BoxFuture<'static, Option<Result<TryAcquire>>>>,
    pub(super) started: bool,
    pub(super) abandoned: Arc<AtomicBool>,
    /// Set by the op just before it sends the script.
    pub(super) sent: Arc<AtomicBool>,
    pub(super) backend: RedisBackend,
    pub(super) key: Arc<str>,
    pub(super) owner: Owner,
}

impl Future for Acquiring {
    type Output = Result<TryAcquire>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.started = true;
        let op = self.op.as_mut().expect("polled after completion");
        let outcome = ready!(op.as_mut().poll(cx));
        self.op = None;
        // `None` only comes after `abandoned`, which only Drop sets.
        Poll::Ready(outcome.unwrap_or_else(|| {
            Err(LockError::Backend {
                key: Arc::clone(&self.key),
                source: "acquire abandoned".into(),
            })
        }))
    }
}

impl Drop for Acquiring {
    fn drop(&mut self) {
        let Some(op) = self.op.take().filter(|_| self.started) else {
            return; // answered, or never polled: nothing was sent
        };
        self.abandoned.store(true, Ordering::Release);
        let in_flight = self.backend.pending_until_dropped(&self.key);
        // Wake the op if it waits for earlier releases: it must not wait for this pending
        // entry, which is its own; it gives up instead, having sent nothing.
        in_flight.pending.done.notify(usize::MAX);
        let (backend, key, owner) = (self.backend.clone(), Arc::clone(&self.key), self.owner);
        let mut unanswered = Unanswered {
            key: Arc::clone(&key),
            sent: Arc::clone(&self.sent),
            url: backend.inner.config.redacted_url(),
            answered: false,
            kind: HoldKind::Lock,
        };
        drop(self.backend.inner.runtime.handle().spawn(async move {
            let _in_flight = in_flight;
            let outcome = op.await;
            unanswered.answered_with(match &outcome {
                Some(Err(err)) => Some(err),
                _ => None,
            });
            if let Some(Ok(TryAcquire::Acquired { fence, .. })) = outcome {
                // Given back like a dropped guard's hold: even should this runtime shut down.
                backend.release_on_drop(&key, owner, fence);
            }
        }));
    }
}

/// Travels with the rest of an abandoned acquire, and logs an error when the acquire went out
/// but no answer came back: dropped before its reply came (the runtime finishing it shut down),
/// or answered with an error that may come after Redis applied it (the connection broke, the
/// command timed out, or the caller's runtime that carried it shut down). The acquire may have
/// taken the lock, and its fence came with the lost reply: that hold cannot be given back, and
/// stays until its lease ends (never, without one). Not fixable without the reply; loud instead.
pub(super) struct Unanswered {
    pub(super) key: Arc<str>,
    pub(super) sent: Arc<AtomicBool>,
    pub(super) url: String,
    pub(super) answered: bool,
    /// A lock's acquire, or a pool's (which takes a slot).
    pub(super) kind: HoldKind,
}

impl Unanswered {
    /// The acquire answered: `error` when it failed. Only an error after which it may have
    /// applied is logged ([`Applied::Maybe`]); one whose answer is still to come is dealt with
    /// when it comes (`answer` in `batch.rs`).
    pub(super) fn answered_with(&mut self, error: Option<&LockError>) {
        self.answered = true;
        let Some(error) = error.filter(|error| Applied::of(error) == Applied::Maybe) else {
            return;
        };
        if !self.sent.load(Ordering::Acquire) {
            return;
        }
        match self.kind {
            HoldKind::Lock => tracing::error!(
                key = %self.key,
                url = %self.url,
                %error,
                "lockwright: an abandoned acquire failed after it was sent; if it took the \
                 lock, the hold cannot be given back (its fence was in the lost reply) and stays \
                 until its lease ends (never without one) or force_unlock"
            ),
            HoldKind::PoolSlot => tracing::error!(
                key = %self.key,
                url = %self.url,
                %error,
                "lockwright: an abandoned pool acquire failed after it was sent; if it took a \
                 slot, the slot cannot be given back (its token was in the lost reply) and stays \
                 taken until its lease ends (never without one) or force_release_all"
            ),
        }
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if self.answered || !self.sent.load(Ordering::Acquire) {
            return;
        }
        match self.kind {
            HoldKind::Lock => tracing::error!(
                key = %self.key,
                url = %self.url,
                "lockwright: an abandoned acquire was cut off in flight by a runtime shutdown; \
                 if it took the lock, the hold cannot be given back (its fence was in the lost \
                 reply) and stays until its lease ends (never without one) or force_unlock"
            ),
            HoldKind::PoolSlot => tracing::error!(
                key = %self.key,
                url = %self.url,
                "lockwright: an abandoned pool acquire was cut off in flight by a runtime \
                 shutdown; if it took a slot, the slot cannot be given back (its token was in \
                 the lost reply) and stays taken until its lease ends (never without one) or \
                 force_release_all"
            ),
        }
    }
}

impl RedisBackend {
    pub(super) fn pending_releases(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Arc<str>, Arc<PendingKey>>> {
        self.inner
            .pending_releases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more release in flight for `key` (resolved by [`Self::end_pending`]).
    pub(super) fn begin_pending(&self, key: &Arc<str>) -> Arc<PendingKey> {
        // Count and uncount under the map's lock, so an entry is removed only when idle.
        let mut map = self.pending_releases();
        let pending = Arc::clone(map.entry(Arc::clone(key)).or_default());
        pending.in_flight.fetch_add(1, Ordering::AcqRel);
        pending
    }

    pub(super) fn end_pending(&self, key: &str, pending: &PendingKey) {
        {
            let mut map = self.pending_releases();
            if pending.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
                map.remove(key);
            }
        }
        pending.done.notify(usize::MAX);
    }

    /// Counts one more release in flight for `key` until the returned value is dropped: in the
    /// task that runs it, so the count ends even if that task never runs (its runtime, given
    /// with [`RedisConfig::runtime`], shut down) and later operations do not wait forever.
    pub(super) fn pending_until_dropped(&self, key: &Arc<str>) -> InFlight {
        InFlight {
            pending: self.begin_pending(key),
            backend: self.clone(),
            key: Arc::clone(key),
        }
    }

    /// Waits until no release from a guard drop is in flight for `key`. Returns false, early,
    /// once `give_up` is true (an acquire whose caller left must not wait for itself).
    pub(super) async fn after_pending_releases(
        &self,
        key: &str,
        give_up: impl Fn() -> bool,
    ) -> bool {
        loop {
            if give_up() {
                return false;
            }
            let Some(pending) = self.pending_releases().get(key).cloned() else {
                return true;
            };
            let listener = pending.done.listen();
            if give_up() {
                return false;
            }
            if pending.in_flight.load(Ordering::Acquire) == 0 {
                return true;
            }
            listener.await;
        }
    }

    /// Runs `op` after the key's in-flight drop releases. It is polled by the caller's task on
    /// any executor (Redis I/O itself is driven by the backend's runtime); a caller that drops it
    /// half-way does not cut it off: the rest runs on the backend's runtime.
    pub(super) fn run<T, F>(&self, key: &str, op: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.run_with_fallback(key, op, None)
    }

    /// [`Self::run`], with what to do should no runtime be left to finish it (see
    /// [`Detachable`]).
    pub(super) fn run_with_fallback<T, F>(
        &self,
        key: &str,
        op: F,
        fallback: Option<Fallback>,
    ) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.detachable(key, op, fallback, None)
    }

    /// [`Self::run_with_fallback`] for a release of `kind` on `key` (a pool's release waits for
    /// those of `pending`, its pending entry's name; a lock's, `key`'s): should its caller
    /// leave before it ends and it then fail, nobody else hears of it and the hold it was to
    /// end may stay, so the failure is logged as an error. One that fails only later, past the
    /// command timeout, is logged when its late answer comes (`answer` in `batch.rs`).
    pub(super) fn run_release<T, F>(
        &self,
        pending: &str,
        key: &str,
        kind: HoldKind,
        op: F,
        fallback: Option<Fallback>,
    ) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let left = Arc::new(AtomicBool::new(false));
        let op = {
            let (left, key, url) = (
                Arc::clone(&left),
                Arc::<str>::from(key),
                self.inner.config.redacted_url(),
            );
            async move {
                let released = op.await;
                if let Err(error) = &released {
                    if left.load(Ordering::Acquire) && Applied::of(error) != Applied::Later {
                        let stays = match kind {
                            HoldKind::Lock => "the lock may stay held",
                            HoldKind::PoolSlot => "the pool slot may stay taken",
                        };
                        tracing::error!(
                            %key,
                            %url,
                            %error,
                            "lockwright: a release whose caller had left failed; {stays} until \
                             its lease ends (never without one) or a force unlock"
                        );
                    }
                }
                released
            }
        };
        self.detachable(pending, op, fallback, Some(left))
    }

    fn detachable<T, F>(
        &self,
        key: &str,
        op: F,
        fallback: Option<Fallback>,
        left: Option<Arc<AtomicBool>>,
    ) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let backend = self.clone();
        let key: Arc<str> = key.into();
        Box::pin(Detachable {
            op: Some(Box::pin(async move {
                backend.after_pending_releases(&key, || false).await;
                op.await
            })),
            started: false,
            polled: false,
            runtime: self.inner.runtime.handle().clone(),
            fallback,
            moved: false,
            left,
        })
    }

    /// A guard's drop release that no runtime can run (see [`Detachable`]): sent synchronously
    /// on a connection of its own, within the connect and command timeouts, blocking the thread
    /// that drops it (a runtime shutting down, or a caller of a backend whose runtime is gone).
    /// One that was polled may have reached Redis already, and is not repeated: a second
    /// release could take away another hold of the same owner. That one is logged as an error,
    /// as are those not sent because the one before failed moments ago. `kind` says whether it
    /// gives back a lock's hold or a pool's slot (`fence` is then the slot's token).
    pub(super) fn release_without_runtime(
        &self,
        key: &str,
        owner: Owner,
        fence: Fence,
        polled: bool,
        kind: HoldKind,
    ) {
        let url = self.inner.config.redacted_url();
        let (what, stays) = match kind {
            HoldKind::Lock => ("guard", "the lock stays held"),
            HoldKind::PoolSlot => ("pool guard", "the pool slot stays taken"),
        };
        let fix = match kind {
            HoldKind::Lock => "force_unlock",
            HoldKind::PoolSlot => "force_release",
        };
        if polled {
            tracing::error!(
                %key,
                %url,
                fence = fence.0,
                "lockwright: a {what}'s release on drop was cut off in flight by a runtime \
                 shutdown; it may not have reached Redis and cannot safely be repeated: {stays} \
                 until its lease ends (never without one) or {fix}"
            );
            return;
        }
        let config = &self.inner.config;
        // Within what one attempt may take of the last failure: the server is still unreachable.
        let failure_window = config.connect_timeout + config.command_timeout;
        // Held through the attempt: threads dropping guards at once take turns, and learn of a
        // failure before their own attempt.
        let mut failed_at = self
            .inner
            .runtime
            .gone
            .blocking_failed_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(at) = *failed_at {
            if at.elapsed() < failure_window {
                tracing::error!(
                    %key,
                    %url,
                    "lockwright: a {what}'s release on drop, with no runtime left to run it, was \
                     not sent: the synchronous release before it failed moments ago; {stays} \
                     until its lease ends (never without one) or {fix}"
                );
                return;
            }
        }
        tracing::warn!(
            %key,
            %url,
            "lockwright: no runtime left to run a {what}'s release on drop; releasing synchronously"
        );
        if let Err(err) = self.release_blocking(key, owner, fence, kind) {
            *failed_at = Some(std::time::Instant::now());
            tracing::error!(
                %key,
                %url,
                error = %err,
                "lockwright: a {what}'s release on drop failed, with no runtime left to retry \
                 it: {stays} until its lease ends (never without one) or {fix}"
            );
        }
    }

    /// The call of [`Self::release_now`] (scope one), or of a pool slot's release, on a plain
    /// synchronous connection: the first integer of the reply.
    pub(super) fn release_blocking(
        &self,
        key: &str,
        owner: Owner,
        fence: Fence,
        kind: HoldKind,
    ) -> std::result::Result<i64, Box<dyn std::error::Error + Send + Sync>> {
        let mut conn = self.inner.connector.blocking(&self.inner.config)?;
        let (script, release, ms) = match kind {
            HoldKind::Lock => (
                self.scripts().0,
                batch::Op::Release {
                    owner,
                    fence: Some(fence),
                    scope: crate::backend::ReleaseScope::One,
                },
                "0".to_owned(),
            ),
            // pool.lua keeps the pool's meta for the token TTL after its last slot.
            HoldKind::PoolSlot => (
                &*super::scripts::POOL_BATCH,
                batch::Op::PoolRelease { owner, slot: fence },
                super::lease_millis(Some(self.inner.config.fence_counter_ttl)),
            ),
        };
        let mut invocation = script.prepare_invoke();
        invocation.arg(self.publish_command()).arg(ms);
        let (mut keys, mut args) = (Vec::new(), Vec::new());
        release.encode(self, key, &mut keys, &mut args);
        for name in keys {
            invocation.key(name);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let replies: Vec<Vec<i64>> = match conn.invoke(&invocation) {
            // Refused without running (the cluster client resends nothing itself, see
            // topology.rs): once more, to the node a redirection names (after `ASKING` for an
            // `ASK`: the slot is being migrated there), else on a fresh connection, which reads
            // the slot map anew.
            Err(err)
                if matches!(conn, super::topology::BlockingConnection::Cluster(_))
                    && super::connection::refused_before_running(&err) =>
            {
                drop(conn);
                let config = &self.inner.config;
                match err.redirect_node() {
                    Some((node, _slot)) => {
                        let mut direct = self.inner.connector.blocking_node(config, node)?;
                        if err.kind() == redis::ErrorKind::Ask {
                            // So that the importing node takes the next command.
                            redis::cmd("ASKING").query::<()>(&mut direct)?;
                        }
                        invocation.invoke(&mut direct)?
                    }
                    None => self.inner.connector.blocking(config)?.invoke(&invocation)?,
                }
            }
            answer => answer?,
        };
        replies
            .first()
            .and_then(|reply| reply.first().copied())
            .ok_or_else(|| format!("unexpected release reply {replies:?}").into())
    }
}
