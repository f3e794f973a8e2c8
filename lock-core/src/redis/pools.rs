//! The Redis backend's pools (keyed counting semaphores): each operation is one operation of a
//! `pool.lua` batch (group commit, see `batch`), so it costs one script round trip, alone or
//! with others; a pool's keys share its key's hash tag (one Cluster slot).
//!
//! As for locks: an acquire dropped by its caller half-way finishes on the backend's runtime and
//! gives back the slot it got; a guard's drop releases in the background, and this process's
//! next operations on the pool wait for it (a process sees its own drops).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use super::batch::Op;
use super::connection::NotSent;
use super::lanes::Route;
use super::operations::{Detachable, Fallback, Unanswered};
use super::RedisBackend;
use crate::backend::{
    BoxFuture, Fence, HoldKind, LeaseTime, PoolAcquire, PoolState, RemainingLease,
};
use crate::error::{LockError, Result};
use crate::owner::Owner;

impl RedisBackend {
    /// The key of the pool's in-flight drop releases (beside the locks' in one map): no lock
    /// key is given this form by lockwright's own callers, and a clash would only make one wait
    /// for the other's release.
    fn pool_pending(key: &str) -> Arc<str> {
        format!("\u{0}pool\u{0}{key}").into()
    }

    fn unexpected(key: &str, what: &str, reply: &[i64]) -> LockError {
        LockError::Backend {
            key: key.into(),
            source: format!("unexpected pool {what} reply {reply:?}").into(),
        }
    }

    pub(super) fn pool_acquire_op(
        &self,
        key: &Arc<str>,
        owner: Owner,
        max_size: u32,
        lease: LeaseTime,
    ) -> BoxFuture<'static, Result<PoolAcquire>> {
        let backend = self.clone();
        let key = Arc::clone(key);
        let abandoned = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicBool::new(false));
        let op = {
            let (key, abandoned, sent) =
                (Arc::clone(&key), Arc::clone(&abandoned), Arc::clone(&sent));
            async move {
                let gave_up = || abandoned.load(Ordering::Acquire);
                // Nobody reads the error of an acquire whose caller left: it takes nothing.
                let left = || LockError::Backend {
                    key: Arc::clone(&key),
                    source: Box::new(NotSent("pool acquire abandoned before it was sent".into())),
                };
                if !backend
                    .after_pending_releases(&Self::pool_pending(&key), gave_up)
                    .await
                {
                    return Err(left());
                }
                // On a cluster a waiter's channel must be subscribed before it tries.
                backend
                    .sharded_channel_ready(&backend.pool_channel(&key))
                    .await;
                if gave_up() {
                    return Err(left());
                }
                // From here the slot may be taken: cut off unanswered, it is logged.
                sent.store(true, Ordering::Release);
                let op = Op::PoolAcquire {
                    owner,
                    max_size,
                    lease,
                };
                let (reply, replicated) = backend
                    .batched(&key, op, Some(Arc::clone(&abandoned)), Route::Here)
                    .await?;
                match reply.as_slice() {
                    [1, slot, size] => {
                        let slot = Fence(*slot as u64);
                        match backend.confirmed(&key, replicated) {
                            Ok(()) => Ok(PoolAcquire::Acquired {
                                slot,
                                size: u32::try_from(*size).unwrap_or(u32::MAX),
                            }),
                            Err(err) => {
                                // Not confirmed by the replicas: given back before the error.
                                let undone = backend
                                    .pool_release_now(&key, owner, slot, Route::Here)
                                    .await;
                                if let Err(undo) = undone {
                                    tracing::warn!(
                                        %key,
                                        error = %undo,
                                        "lockwright: a pool slot the replicas did not confirm \
                                         could not be given back; it stays until its lease ends"
                                    );
                                }
                                Err(err)
                            }
                        }
                    }
                    [0, left] => Ok(PoolAcquire::Full {
                        remaining: match *left {
                            left if left < 0 => RemainingLease::Unlimited,
                            left => RemainingLease::Remaining(Duration::from_millis(left as u64)),
                        },
                    }),
                    [-3, live] => Err(LockError::PoolSizeMismatch {
                        key: Arc::clone(&key),
                        live: u32::try_from(*live).unwrap_or(u32::MAX),
                        given: max_size,
                    }),
                    other => Err(Self::unexpected(&key, "acquire", other)),
                }
            }
        };
        Box::pin(PoolAcquiring {
            op: Some(Box::pin(op)),
            started: false,
            abandoned,
            sent,
            backend: self.clone(),
            key,
            owner,
        })
    }

    async fn pool_release_now(
        &self,
        key: &Arc<str>,
        owner: Owner,
        slot: Fence,
        route: Route,
    ) -> Result<bool> {
        let (reply, _) = self
            .batched(key, Op::PoolRelease { owner, slot }, None, route)
            .await?;
        match reply.as_slice() {
            [1] => Ok(true),
            [0] => Ok(false),
            other => Err(Self::unexpected(key, "release", other)),
        }
    }

    pub(super) fn pool_release_op(
        &self,
        key: &str,
        owner: Owner,
        slot: Fence,
    ) -> BoxFuture<'static, Result<bool>> {
        let (backend, key_owned): (_, Arc<str>) = (self.clone(), key.into());
        let release = async move {
            backend
                .pool_release_now(&key_owned, owner, slot, Route::Here)
                .await
        };
        let pending = Self::pool_pending(key);
        self.run_release(&pending, key, HoldKind::PoolSlot, release, None)
    }

    pub(super) fn pool_extend_op(
        &self,
        key: &str,
        owner: Owner,
        slot: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'static, Result<bool>> {
        let (backend, key): (_, Arc<str>) = (self.clone(), key.into());
        self.run(&Self::pool_pending(&key), async move {
            let op = Op::PoolExtend { owner, slot, lease };
            let (reply, replicated) = backend.batched(&key, op, None, Route::Here).await?;
            backend.confirmed(&key, replicated)?;
            match reply.as_slice() {
                [1] => Ok(true),
                [0] => Ok(false),
                other => Err(Self::unexpected(&key, "extend", other)),
            }
        })
    }

    pub(super) fn pool_state_op(&self, key: &str) -> BoxFuture<'static, Result<PoolState>> {
        let (backend, key): (_, Arc<str>) = (self.clone(), key.into());
        self.run(&Self::pool_pending(&key), async move {
            let (reply, _) = backend
                .batched(&key, Op::PoolState, None, Route::Here)
                .await?;
            match reply.as_slice() {
                [0, _] => Ok(PoolState::EMPTY),
                [size, max_size] if *size > 0 => Ok(PoolState {
                    size: u32::try_from(*size).unwrap_or(u32::MAX),
                    max_size: (*max_size > 0).then(|| u32::try_from(*max_size).unwrap_or(u32::MAX)),
                }),
                other => Err(Self::unexpected(&key, "state", other)),
            }
        })
    }

    pub(super) fn pool_force_release_op(
        &self,
        key: &str,
        slot: Option<Fence>,
    ) -> BoxFuture<'static, Result<u32>> {
        let (backend, key): (_, Arc<str>) = (self.clone(), key.into());
        self.run(&Self::pool_pending(&key), async move {
            let (reply, _) = backend
                .batched(&key, Op::PoolForce { slot }, None, Route::Here)
                .await?;
            match reply.as_slice() {
                [freed] if *freed >= 0 => Ok(u32::try_from(*freed).unwrap_or(u32::MAX)),
                other => Err(Self::unexpected(&key, "force release", other)),
            }
        })
    }

    /// A slot given back with nobody waiting for the answer (a dropped guard's, or an acquire's
    /// whose caller left), counted as in flight for the pool until it ends. Built to run in any
    /// case, as a lock hold's release (`background_release`): should no runtime be left to run
    /// it, it runs synchronously instead.
    fn pool_background_release(&self, key: Arc<str>, owner: Owner, slot: Fence) -> Detachable<()> {
        let in_flight = self.pending_until_dropped(&Self::pool_pending(&key));
        let backend = self.clone();
        let fallback: Fallback = {
            let (backend, key) = (self.clone(), Arc::clone(&key));
            Box::new(move |polled| {
                backend.release_without_runtime(&key, owner, slot, polled, HoldKind::PoolSlot)
            })
        };
        Detachable {
            op: Some(Box::pin(async move {
                let _in_flight = in_flight;
                if backend.inner.runtime.is_gone() {
                    backend.release_without_runtime(&key, owner, slot, false, HoldKind::PoolSlot);
                    return;
                }
                // Nobody waits for it: through the home lane, which no caller's runtime can cut off.
                if let Err(err) = backend
                    .pool_release_now(&key, owner, slot, Route::Home)
                    .await
                {
                    tracing::warn!(%key, error = %err, "lockwright: pool slot release on drop failed");
                }
            })),
            started: true,
            polled: false,
            runtime: self.inner.runtime.handle().clone(),
            fallback: Some(fallback),
            moved: false,
            left: None,
        }
    }

    /// [`Self::pool_background_release`] on the backend's runtime, never waited for here.
    pub(super) fn pool_release_in_background(&self, key: &str, owner: Owner, slot: Fence) {
        if self.inner.runtime.is_gone() {
            self.release_without_runtime(key, owner, slot, false, HoldKind::PoolSlot);
            return;
        }
        drop(
            self.inner
                .runtime
                .handle()
                .spawn(self.pool_background_release(key.into(), owner, slot)),
        );
    }

    /// A guard's drop: as a lock guard's (see `release_on_drop`), in the background inside a
    /// runtime, waited for outside one, synchronously once the backend's runtime is gone.
    pub(super) fn pool_release_on_drop_op(&self, key: &str, owner: Owner, slot: Fence) {
        if self.inner.runtime.is_gone() {
            self.release_without_runtime(key, owner, slot, false, HoldKind::PoolSlot);
            return;
        }
        let release = self.pool_background_release(key.into(), owner, slot);
        match tokio::runtime::Handle::try_current() {
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                drop(current.spawn(release))
            }
            Ok(_) => drop(self.inner.runtime.handle().spawn(release)),
            Err(_) => crate::block_on::block_on(release),
        }
    }
}

/// A pool acquire polled in its caller's task. Dropped before it answered, it must not leave a
/// slot nobody owns: not yet sent, it is left out of its batch; sent, the rest of it runs on
/// the backend's runtime and gives back the slot it gets (meanwhile this process's next
/// operations on the pool wait for that).
struct PoolAcquiring {
    op: Option<BoxFuture<'static, Result<PoolAcquire>>>,
    started: bool,
    abandoned: Arc<AtomicBool>,
    /// Set once the acquire may have gone out (see `Unanswered`).
    sent: Arc<AtomicBool>,
    backend: RedisBackend,
    key: Arc<str>,
    owner: Owner,
}

impl Future for PoolAcquiring {
    type Output = Result<PoolAcquire>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.started = true;
        let op = self.op.as_mut().expect("polled after completion");
        let outcome = ready!(op.as_mut().poll(cx));
        self.op = None;
        Poll::Ready(outcome)
    }
}

impl Drop for PoolAcquiring {
    fn drop(&mut self) {
        let Some(op) = self.op.take().filter(|_| self.started) else {
            return; // answered, or never polled: nothing was sent
        };
        self.abandoned.store(true, Ordering::Release);
        let in_flight = self
            .backend
            .pending_until_dropped(&RedisBackend::pool_pending(&self.key));
        // Wake the op if it waits for earlier releases: it must not wait for this pending
        // entry, which is its own.
        in_flight.pending.done.notify(usize::MAX);
        let (backend, key, owner) = (self.backend.clone(), Arc::clone(&self.key), self.owner);
        let mut unanswered = Unanswered {
            key: Arc::clone(&key),
            sent: Arc::clone(&self.sent),
            url: backend.inner.config.redacted_url(),
            answered: false,
            kind: HoldKind::PoolSlot,
        };
        drop(self.backend.inner.runtime.handle().spawn(async move {
            let _in_flight = in_flight;
            let outcome = op.await;
            unanswered.answered_with(outcome.as_ref().err());
            if let Ok(PoolAcquire::Acquired { slot, .. }) = outcome {
                // Given back like a dropped guard's slot: even should this runtime shut down.
                backend.pool_release_on_drop_op(&key, owner, slot);
            }
        }));
    }
}
