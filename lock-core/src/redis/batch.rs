//! Group commit: the lock operations of one connection go out as batches of one script call.
//!
//! Each pooled connection has a queue. An operation issued while the connection has no batch in
//! flight goes out at once, alone, in its caller's task (no added latency, no timer). Operations
//! issued while a batch is in flight queue up, and go out together as the next batch as soon as
//! it returns: one `EVALSHA` of `batch.lua`, which applies them in order and answers each on its
//! own. Under concurrency the per-call costs (parsing, script lookup, the socket's reads and
//! writes, the server clock read) are paid once per batch instead of once per operation.
//!
//! Order: a key always maps to one queue and a queue has one batch in flight at a time, so
//! operations on one key reach Redis in the order they were queued. On a cluster a batch is
//! split per hash slot (one script call touches one slot); the parts go out at once.
//!
//! Who sends: the caller whose operation found the queue idle sends that batch, then hands what
//! queued meanwhile to a task on the backend's runtime that keeps sending until the queue is
//! empty. A batch carries other
//! callers' operations, so its sending is never cut off with the future that does it: dropped
//! half-way, it finishes on the backend's runtime. An operation whose caller left keeps its
//! place (the caller's future is finished on the backend's runtime, see `operations`); should
//! its answer find nobody at all waiting for it, an acquire's hold is given back here.

use std::future::Future;
use std::sync::Arc;

use deadpool_redis::redis::{self, FromRedisValue, Value};
use tokio::sync::oneshot;

use super::connection::{Replicated, SharedError};
use super::operations::Detachable;
use super::{lease_millis, topology, RedisBackend};
use crate::backend::{Fence, LeaseTime, ReleaseScope};
use crate::error::{LockError, Result};
use crate::owner::Owner;

/// Most operations in one script call; a longer queue goes out as several calls at once.
const MAX_BATCH: usize = 256;

/// One lock operation, as `batch.lua` takes it.
pub(super) enum Op {
    Acquire {
        owner: Owner,
        lease: LeaseTime,
        /// The largest fence of a hold the owner ended (`known_holds`), `"0"` for none.
        ended: String,
    },
    Release {
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    },
    ForceUnlock,
    Inspect {
        owner: Owner,
    },
    Extend {
        owner: Owner,
        fence: Fence,
        lease: LeaseTime,
    },
}

impl Op {
    /// Whether `reply` is of a write that `RedisConfig::wait_replicas` must see confirmed:
    /// a hold taken or a lease extended.
    fn wrote(&self, reply: &[i64]) -> bool {
        matches!(
            (self, reply.first()),
            (Op::Acquire { .. } | Op::Extend { .. }, Some(1))
        )
    }

    /// Appends the op's keys and arguments for the backend's batch script (in py-cachify mode,
    /// a release and a force unlock also carry the channel: the lock's name does not give it).
    pub(super) fn encode(
        &self,
        backend: &RedisBackend,
        key: &str,
        keys: &mut Vec<String>,
        args: &mut Vec<String>,
    ) {
        self.encode_common(backend, key, keys, args);
        if backend.inner.config.py_cachify.is_some()
            && matches!(self, Op::Release { .. } | Op::ForceUnlock)
        {
            args.push(backend.channel(key));
        }
    }

    fn encode_common(
        &self,
        backend: &RedisBackend,
        key: &str,
        keys: &mut Vec<String>,
        args: &mut Vec<String>,
    ) {
        let lock = backend.lock_key(key);
        match self {
            Op::Acquire {
                owner,
                lease,
                ended,
            } => {
                keys.push(lock);
                keys.push(backend.fence_key(key));
                args.extend([
                    "a".to_owned(),
                    owner.to_string(),
                    lease_millis(*lease),
                    ended.clone(),
                ]);
            }
            Op::Release {
                owner,
                fence,
                scope,
            } => {
                keys.push(lock);
                let scope = match scope {
                    ReleaseScope::One => "one",
                    ReleaseScope::All => "all",
                };
                args.extend([
                    "r".to_owned(),
                    owner.to_string(),
                    fence.map(|fence| fence.0.to_string()).unwrap_or_default(),
                    scope.to_owned(),
                ]);
            }
            Op::ForceUnlock => {
                keys.push(lock);
                args.push("f".to_owned());
            }
            Op::Inspect { owner } => {
                keys.push(lock);
                args.extend(["i".to_owned(), owner.to_string()]);
            }
            Op::Extend {
                owner,
                fence,
                lease,
            } => {
                keys.push(lock);
                args.extend([
                    "e".to_owned(),
                    owner.to_string(),
                    fence.0.to_string(),
                    lease_millis(*lease),
                ]);
            }
        }
    }
}

/// One operation's answer in a batch reply: its integers, or what failed it alone.
struct OpReply(std::result::Result<Vec<i64>, String>);

impl FromRedisValue for OpReply {
    fn from_redis_value(value: &Value) -> redis::RedisResult<Self> {
        if let Value::Array(items) = value {
            if let [Value::BulkString(marker), message] = items.as_slice() {
                if marker.as_slice() == b"error" {
                    return Ok(OpReply(Err(String::from_redis_value(message)?)));
                }
            }
        }
        Ok(OpReply(Ok(Vec::<i64>::from_redis_value(value)?)))
    }
}

/// An operation waiting in a queue, or in the batch being sent.
pub(super) struct Queued {
    key: Arc<str>,
    op: Op,
    answer: oneshot::Sender<Result<(Vec<i64>, Replicated)>>,
}

/// The queue of one pooled connection.
#[derive(Default)]
pub(super) struct Queue {
    state: std::sync::Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    waiting: Vec<Queued>,
    /// A batch of this queue is in flight (or about to be): whoever set it sends what waits.
    busy: bool,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RedisBackend {
    /// Runs `op` on `key` in its connection's next batch; its reply, and what `WAIT` said of the
    /// batch when `wait_replicas` is set and the reply is of a write to confirm.
    pub(super) async fn batched(&self, key: &Arc<str>, op: Op) -> Result<(Vec<i64>, Replicated)> {
        let queue = self.slot_of(key);
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut state = self.inner.queues[queue].state();
            state.waiting.push(Queued {
                key: Arc::clone(key),
                op,
                answer,
            });
            if state.busy {
                None
            } else {
                state.busy = true;
                Some(std::mem::take(&mut state.waiting))
            }
        };
        if let Some(batch) = lead {
            let mut sender = Sender {
                backend: self.clone(),
                queue,
                handed_over: false,
            };
            // The batch carries other callers' operations: should this caller's future be
            // dropped (it left, or its runtime shut down), the batch is still sent and answered,
            // on the backend's runtime.
            self.detached(async move {
                sender.backend.clone().send_batch(batch).await;
                sender.hand_over();
            })
            .await;
        }
        answered.await.unwrap_or_else(|_| {
            Err(LockError::Backend {
                key: Arc::clone(key),
                source: "the batch this operation was in was cut off (its runtime shut down); \
                         it may or may not have been applied"
                    .into(),
            })
        })
    }

    /// `op`, run to its end even if dropped: dropped unfinished, the rest runs on the backend's
    /// runtime (see [`Detachable`]).
    fn detached(&self, op: impl Future<Output = ()> + Send + 'static) -> Detachable<()> {
        Detachable {
            op: Some(Box::pin(op)),
            started: true,
            polled: false,
            runtime: self.inner.runtime.handle().clone(),
            fallback: None,
            moved: false,
        }
    }

    /// Sends `batch` (split per cluster slot and in calls of at most [`MAX_BATCH`], all at once)
    /// and answers each operation.
    async fn send_batch(&self, batch: Vec<Queued>) {
        let mut groups: Vec<Vec<Queued>> = Vec::new();
        if self.inner.connector.is_cluster() {
            let mut by_slot = std::collections::BTreeMap::<u16, Vec<Queued>>::new();
            for queued in batch {
                by_slot
                    .entry(topology::cluster_slot(&self.lock_key(&queued.key)))
                    .or_default()
                    .push(queued);
            }
            groups.extend(by_slot.into_values());
        } else {
            groups.push(batch);
        }
        let mut calls: Vec<Vec<Queued>> = Vec::new();
        for mut group in groups {
            while group.len() > MAX_BATCH {
                let rest = group.split_off(MAX_BATCH);
                calls.push(group);
                group = rest;
            }
            calls.push(group);
        }
        if calls.len() == 1 {
            let call = calls.pop().expect("one call");
            self.send_call(call).await;
        } else {
            futures_util::future::join_all(calls.into_iter().map(|call| self.send_call(call)))
                .await;
        }
    }

    /// One script call of `ops` (all in one cluster slot), then each operation's answer.
    async fn send_call(&self, ops: Vec<Queued>) {
        let mut keys = Vec::with_capacity(ops.len() * 2);
        let mut args = Vec::with_capacity(2 + ops.len() * 4);
        args.push(self.publish_command().to_owned());
        args.push(lease_millis(Some(self.inner.config.fence_counter_ttl)));
        for queued in &ops {
            queued.op.encode(self, &queued.key, &mut keys, &mut args);
        }
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let first = Arc::clone(&ops[0].key);
        let sent = self
            .eval_then_wait(
                &first,
                self.scripts().0,
                &keys,
                &args,
                |replies: &Vec<OpReply>| {
                    replies.iter().zip(&ops).any(|(reply, queued)| {
                        reply.0.as_ref().is_ok_and(|reply| queued.op.wrote(reply))
                    })
                },
            )
            .await;
        match sent {
            Ok((replies, replicated)) if replies.len() == ops.len() => {
                for (queued, OpReply(reply)) in ops.into_iter().zip(replies) {
                    let answer =
                        reply
                            .map(|reply| (reply, replicated.clone()))
                            .map_err(|message| LockError::Backend {
                                key: Arc::clone(&queued.key),
                                source: message.into(),
                            });
                    self.answer(queued, answer);
                }
            }
            Ok((replies, _)) => {
                let error = SharedError::new(format!(
                    "a batch of {} operations got {} answers",
                    ops.len(),
                    replies.len()
                ));
                for queued in ops {
                    let key = Arc::clone(&queued.key);
                    self.answer(queued, Err(error.for_key(key)));
                }
            }
            Err(err) => {
                let error = SharedError::from_lock_error(err);
                for queued in ops {
                    let key = Arc::clone(&queued.key);
                    self.answer(queued, Err(error.for_key(key)));
                }
            }
        }
    }

    /// Gives `queued` its answer. Nobody waiting for it any more (its caller's future is gone
    /// entirely, not just left: a runtime shut down), a hold it took is given back, as a
    /// dropped guard's would be.
    fn answer(&self, queued: Queued, answer: Result<(Vec<i64>, Replicated)>) {
        let Queued {
            key,
            op,
            answer: to,
        } = queued;
        let Err(Ok((reply, _))) = to.send(answer) else {
            return;
        };
        let (Op::Acquire { owner, .. }, [1, fence, _]) = (&op, reply.as_slice()) else {
            return;
        };
        // In a task: the release goes through this queue, which this sender is still busy with.
        // Later operations on the key from this process wait for it, as for a guard's drop.
        let (owner, fence, in_flight) = (
            *owner,
            Fence(*fence as u64),
            self.pending_until_dropped(&key),
        );
        let backend = self.clone();
        drop(self.inner.runtime.handle().spawn(async move {
            let _in_flight = in_flight;
            let released = backend
                .clone()
                .release_now(key, owner, Some(fence), ReleaseScope::One)
                .await;
            if let Err(err) = released {
                tracing::warn!(
                    error = %err,
                    "lockwright: giving back a hold nobody waited for failed; it stays until its \
                     lease ends (never without one) or force_unlock"
                );
            }
        }));
    }
}

/// The sender of one queue's batches, from the caller that found the queue idle to the task
/// that takes over. Dropped before it handed over (no runtime is left to finish its sends: a
/// given runtime shut down), it fails what waits and leaves the queue idle, so the queue never
/// stays busy with nobody sending.
struct Sender {
    backend: RedisBackend,
    queue: usize,
    handed_over: bool,
}

impl Sender {
    /// What queued meanwhile goes to a task that sends it; with nothing queued, the queue is
    /// idle again.
    fn hand_over(&mut self) {
        self.handed_over = true;
        let backend = self.backend.clone();
        {
            let mut state = backend.inner.queues[self.queue].state();
            if state.waiting.is_empty() {
                state.busy = false;
                return;
            }
        }
        let mut next = Sender {
            backend: backend.clone(),
            queue: self.queue,
            handed_over: false,
        };
        // On the backend's runtime, not beside the caller: the callers waiting for this batch
        // may be blocking the threads of their own runtime (the blocking API called from async
        // code), which would then never run it.
        let task = backend.detached(async move { next.drain().await });
        drop(backend.inner.runtime.handle().spawn(task));
    }

    /// Sends batch after batch until the queue is empty.
    async fn drain(&mut self) {
        loop {
            let batch = {
                let mut state = self.backend.inner.queues[self.queue].state();
                if state.waiting.is_empty() {
                    state.busy = false;
                    self.handed_over = true;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            self.backend.send_batch(batch).await;
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        let waiting = {
            let mut state = self.backend.inner.queues[self.queue].state();
            state.busy = false;
            std::mem::take(&mut state.waiting)
        };
        drop(waiting); // each caller learns its batch was cut off
    }
}
