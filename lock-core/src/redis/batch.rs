//! Group commit: lock operations issued while their queue's calls are all in flight go out
//! together as one script call.
//!
//! Each pooled connection has a queue (on a cluster, each hash slot: a slow master holds up only
//! its own slots), which sends at most [`MAX_SENDERS`] calls at once. An operation issued while
//! fewer are in flight goes out at once, alone (no added latency, no timer). Operations issued
//! while all are in flight queue up, and go out together as soon as one returns: one `EVALSHA`
//! of `batch.lua`, which applies them in order and answers each on its own. Under concurrency
//! the per-call costs (parsing, script invocation, the socket's reads and writes, the server
//! clock read) are paid once per call instead of once per operation. Acquires and the other
//! operations go in separate calls (see [`calls_of`]: out of memory, Redis aborts a script at
//! its first write).
//!
//! Order: a caller's operations on a key are issued one after another (each is awaited, and a
//! guard's release on drop is waited for by the next operation on its key, see `operations`),
//! so they reach Redis in order whichever calls carry them; within a call, operations are
//! applied in the order they were queued.
//!
//! Who sends: a batch may carry other callers' operations, so it is never left to a future that
//! may stop being polled. It is sent by a task of its own on the backend's runtime, which keeps
//! sending until the queue is empty; only a blocking caller (whose thread does nothing but poll
//! it) sends the batch its operation opened itself. Dropped half-way, a send finishes on the
//! backend's runtime. Each operation answers within the command timeout from when it was issued,
//! whatever the calls ahead of it take. An operation whose caller left keeps its place (the
//! caller's future is finished on the backend's runtime, see `operations`), except an acquire
//! not yet sent, which is left out; should an answer find nobody waiting for it (its caller was
//! told of a timeout), an acquire's hold is given back here.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis::{self, FromRedisValue, Value};
use tokio::sync::oneshot;

use super::connection::{Applied, NotSent, Replicated, SharedError, TimeoutError, Unsettled};
use super::lanes::{Lane, Route};
use super::operations::Detachable;
use super::{lease_millis, topology, RedisBackend};
use crate::backend::{Fence, LeaseTime, ReleaseScope};
use crate::error::{LockError, Result};
use crate::owner::Owner;

/// Most operations in one script call; a longer queue goes out as several calls in a row.
const MAX_BATCH: usize = 256;

/// Calls of one queue in flight at once. Operations queue (and go out together) only while
/// that many are; a call holds a connection's pipeline only for its own round trip.
const MAX_SENDERS: usize = 2;

/// The hash slots of a Redis Cluster: there, each has its own queue.
const CLUSTER_SLOTS: usize = 16384;

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
    Inspect {
        owner: Owner,
    },
    Extend {
        owner: Owner,
        fence: Fence,
        lease: LeaseTime,
    },
    /// The pool operations (`pool.lua`, see `pools`).
    PoolAcquire {
        owner: Owner,
        max_size: u32,
        lease: LeaseTime,
    },
    PoolRelease {
        owner: Owner,
        slot: Fence,
    },
    PoolExtend {
        owner: Owner,
        slot: Fence,
        lease: LeaseTime,
    },
    PoolState,
    PoolForce {
        slot: Option<Fence>,
    },
}

impl Op {
    /// Whether `reply` is of a write that `RedisConfig::wait_replicas` must see confirmed:
    /// a hold or slot taken, or a lease extended.
    fn wrote(&self, reply: &[i64]) -> bool {
        matches!(
            (self, reply.first()),
            (
                Op::Acquire { .. }
                    | Op::Extend { .. }
                    | Op::PoolAcquire { .. }
                    | Op::PoolExtend { .. },
                Some(1)
            )
        )
    }

    /// A pool's operation (sent with `pool.lua`), not a lock's.
    fn is_pool(&self) -> bool {
        matches!(
            self,
            Op::PoolAcquire { .. }
                | Op::PoolRelease { .. }
                | Op::PoolExtend { .. }
                | Op::PoolState
                | Op::PoolForce { .. }
        )
    }

    /// Which calls it may share (see [`calls_of`]): lock or pool; whether its first write
    /// adds data (an acquire; a slot's extend, whose `ZADD` Redis refuses out of memory) or
    /// not.
    fn call_class(&self) -> usize {
        match self {
            Op::Release { .. } | Op::Inspect { .. } | Op::Extend { .. } => 0,
            Op::Acquire { .. } => 1,
            Op::PoolRelease { .. } | Op::PoolState | Op::PoolForce { .. } => 2,
            Op::PoolAcquire { .. } | Op::PoolExtend { .. } => 3,
        }
    }

    /// Appends the op's keys and arguments for the backend's batch script (in py-cachify mode,
    /// a release also carries the channel: the lock's name does not give it).
    pub(super) fn encode(
        &self,
        backend: &RedisBackend,
        key: &str,
        keys: &mut Vec<String>,
        args: &mut Vec<String>,
    ) {
        if self.is_pool() {
            return self.encode_pool(backend, key, keys, args);
        }
        self.encode_common(backend, key, keys, args);
        if backend.inner.config.py_cachify.is_some() && matches!(self, Op::Release { .. }) {
            args.push(backend.channel(key));
        }
    }

    /// A pool's keys (the pool, its meta) and the op's arguments for `pool.lua`.
    fn encode_pool(
        &self,
        backend: &RedisBackend,
        key: &str,
        keys: &mut Vec<String>,
        args: &mut Vec<String>,
    ) {
        keys.push(backend.pool_key(key));
        keys.push(backend.pool_meta_key(key));
        match self {
            Op::PoolAcquire {
                owner,
                max_size,
                lease,
            } => args.extend([
                "pa".to_owned(),
                owner.to_string(),
                max_size.to_string(),
                lease_millis(*lease),
            ]),
            Op::PoolRelease { owner, slot } => args.extend([
                "pr".to_owned(),
                owner.to_string(),
                slot.0.to_string(),
                backend.pool_channel(key),
            ]),
            Op::PoolExtend { owner, slot, lease } => args.extend([
                "pe".to_owned(),
                owner.to_string(),
                slot.0.to_string(),
                lease_millis(*lease),
            ]),
            Op::PoolState => args.push("ps".to_owned()),
            Op::PoolForce { slot } => args.extend([
                "pf".to_owned(),
                slot.map(|slot| slot.0.to_string()).unwrap_or_default(),
                backend.pool_channel(key),
            ]),
            _ => unreachable!("encode_pool is called for pool operations only"),
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
            _ => unreachable!("pool operations are encoded by encode_pool"),
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
    /// An acquire's: set when its caller left (then, not yet sent, it is not sent at all).
    abandoned: Option<Arc<AtomicBool>>,
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
    /// Senders of this queue's calls at work (at most [`MAX_SENDERS`]): while all are busy,
    /// operations wait here, and the first sender done takes them all.
    senders: usize,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RedisBackend {
    /// The queue of `key`: its pooled connection's, or on a cluster its hash slot's (so a slow
    /// master holds up only its own slots' operations).
    fn queue_of(&self, key: &str) -> usize {
        if self.inner.connector.is_cluster() {
            usize::from(topology::cluster_slot(&self.lock_key(key)))
        } else {
            self.slot_of(key)
        }
    }

    /// How many queues a backend has (see [`Self::queue_of`]).
    pub(super) fn queue_count(config: &super::RedisConfig, cluster: bool) -> usize {
        if cluster {
            CLUSTER_SLOTS
        } else {
            config.pool_size
        }
    }

    /// Runs `op` on `key` in its queue's next batch; its reply, and what `WAIT` said of the
    /// batch when `wait_replicas` is set and the reply is of a write to confirm. Answers within
    /// the command timeout (plus the `WAIT` it may need) from now, however long the batch ahead
    /// of it takes: an acquire that succeeds after its caller was told of the timeout is given
    /// back. `abandoned`, once set, keeps a queued acquire from being sent at all.
    /// It goes through the lane `route` names from here (see `lanes`).
    pub(super) async fn batched(
        &self,
        key: &Arc<str>,
        op: Op,
        abandoned: Option<Arc<AtomicBool>>,
        route: Route,
    ) -> Result<(Vec<i64>, Replicated)> {
        if self.inner.runtime.is_gone() {
            return Err(LockError::Backend {
                key: Arc::clone(key),
                source: Box::new(NotSent(
                    "the runtime given to RedisConfig::runtime has shut down".into(),
                )),
            });
        }
        let lane = self.lane(route);
        let queue = self.queue_of(key);
        let (answer, answered) = oneshot::channel();
        let lead = {
            let mut state = lane.queues[queue].state();
            state.waiting.push(Queued {
                key: Arc::clone(key),
                op,
                abandoned,
                answer,
            });
            if state.senders >= MAX_SENDERS {
                None
            } else {
                state.senders += 1;
                Some(std::mem::take(&mut state.waiting))
            }
        };
        if let Some(batch) = lead {
            let sender = Sender {
                backend: self.clone(),
                lane: Arc::clone(&lane),
                queue,
                handed_over: false,
            };
            // The batch may carry other callers' operations, so it is never left to a future
            // that may stop being polled (an async task set aside, or one whose thread blocks
            // in the blocking API): it is sent by a task on the lane's runtime (the caller's
            // own, or the backend's). A blocking caller's own thread does nothing but poll it,
            // so it sends its batch itself (no hop).
            let send = self.detached(async move {
                let mut sender = sender;
                let lane = Arc::clone(&sender.lane);
                sender.backend.clone().send_batch(&lane, batch).await;
                sender.hand_over();
            });
            if crate::block_on::polled_by_block_on() {
                send.await;
            } else {
                drop(lane.handle.spawn(send));
            }
        }
        let config = &self.inner.config;
        let limit = config.command_timeout
            + config
                .wait_replicas
                .map_or(Duration::ZERO, |wait| wait.timeout + config.command_timeout);
        let answered = {
            let _runtime = self.inner.runtime.handle().enter();
            tokio::time::timeout(limit, answered)
        };
        match answered.await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(LockError::Backend {
                key: Arc::clone(key),
                source: "the batch this operation was in was cut off (its runtime shut down); \
                         it may or may not have been applied"
                    .into(),
            }),
            Err(_) => Err(LockError::Backend {
                key: Arc::clone(key),
                source: Box::new(Unsettled(Box::new(TimeoutError(limit)))),
            }),
        }
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
            left: None,
        }
    }

    /// Sends `batch` (one queue's: on a cluster, one hash slot's) in the calls [`calls_of`]
    /// makes, one after another so that a retried call is never overtaken, and answers each
    /// operation. Acquires whose caller left before they were sent are left out.
    async fn send_batch(&self, lane: &Lane, batch: Vec<Queued>) {
        let batch: Vec<Queued> = batch
            .into_iter()
            .filter_map(|queued| {
                let left = queued
                    .abandoned
                    .as_ref()
                    .is_some_and(|abandoned| abandoned.load(Ordering::Acquire));
                if !left {
                    return Some(queued);
                }
                let key = Arc::clone(&queued.key);
                // Nobody will read it: the acquire's caller left, and takes nothing.
                drop(queued.answer.send(Err(LockError::Backend {
                    key,
                    source: Box::new(NotSent("acquire abandoned before it was sent".into())),
                })));
                None
            })
            .collect();
        for call in calls_of(batch) {
            self.send_call(lane, call).await;
        }
    }

    /// One script call of `ops` (all in one cluster slot) through `lane` (or home, see
    /// [`RedisBackend::sending_lane`]), then each operation's answer.
    async fn send_call(&self, lane: &Lane, ops: Vec<Queued>) {
        let lane = self.sending_lane(lane);
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
        // A call holds lock operations only or pool operations only (`calls_of`).
        let script = if ops[0].op.is_pool() {
            &super::scripts::POOL_BATCH
        } else {
            self.scripts().0
        };
        let sent = self
            .eval_then_wait_on(
                lane,
                &first,
                script,
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
                    let answer = reply
                        .map(|reply| {
                            // What `WAIT` said concerns only the operations that wrote.
                            let replicated = if queued.op.wrote(&reply) {
                                replicated.clone()
                            } else {
                                Replicated::NotAsked
                            };
                            (reply, replicated)
                        })
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

    /// Gives `queued` its answer. Nobody waiting for it any more (its caller was told of a
    /// timeout, or its future is gone entirely), a hold it took is given back, as a dropped
    /// guard's would be: in the background (this sender is busy with the very queue the release
    /// goes through), or synchronously when no runtime is left. A failure nobody hears of is
    /// logged as an error when it may leave a hold behind: an acquire that may have applied, a
    /// release that may not have.
    fn answer(&self, queued: Queued, answer: Result<(Vec<i64>, Replicated)>) {
        let Queued {
            key,
            op,
            answer: to,
            ..
        } = queued;
        let Err(unheard) = to.send(answer) else {
            return;
        };
        let reply = match unheard {
            Ok((reply, _)) => reply,
            Err(error) => {
                let url = self.inner.config.redacted_url();
                match (&op, Applied::of(&error)) {
                    (Op::Acquire { .. } | Op::PoolAcquire { .. }, Applied::Maybe) => {
                        tracing::error!(
                            %key,
                            %url,
                            %error,
                            "lockwright: an acquire whose caller had left failed after it was \
                             sent; if it took the lock (or pool slot), the hold cannot be given \
                             back (its fence was in the lost reply) and stays until its lease \
                             ends (never without one) or a force unlock"
                        )
                    }
                    (Op::Release { .. } | Op::PoolRelease { .. }, _) => tracing::error!(
                        %key,
                        %url,
                        %error,
                        "lockwright: a release whose caller had left failed; the lock (or pool \
                         slot) may stay held until its lease ends (never without one) or a \
                         force unlock"
                    ),
                    _ => {}
                }
                return;
            }
        };
        match (&op, reply.as_slice()) {
            (Op::Acquire { owner, .. }, [1, fence, _]) => {
                self.release_in_background(&key, *owner, Fence(*fence as u64))
            }
            (Op::PoolAcquire { owner, .. }, [1, slot, _]) => {
                self.pool_release_in_background(&key, *owner, Fence(*slot as u64))
            }
            _ => {}
        }
    }
}

/// The script calls that send `batch`, in order: at most [`MAX_BATCH`] operations each, each
/// holding operations of one class only: lock acquires, other lock operations, pool acquires
/// and extends, other pool operations (locks and pools have scripts of their own). Out of
/// memory, Redis aborts a script at its first write that adds data, and what the script did
/// before is lost with its reply. An acquire's first write is the first thing it changes, and
/// so is a pool extend's (its `ZADD`, or the meta's `SET`), so an aborted call of them changed
/// nothing (each fails, as it would alone), and a release never shares a call with one that
/// would take it down (a lock release only adds data when it counts down a re-entered hold; a
/// pool release's first write is a `ZREM`). Operations on one key keep their order: one that
/// follows an acquire (or pool extend) of its key (and kind) in the batch starts a new round of
/// calls.
fn calls_of(batch: Vec<Queued>) -> Vec<Vec<Queued>> {
    let mut calls = Vec::new();
    let mut classes: [Vec<Queued>; 4] = Default::default();
    let mut acquired = std::collections::HashSet::new();
    for queued in batch {
        let class = queued.op.call_class();
        let pool = queued.op.is_pool();
        if matches!(class, 1 | 3) {
            acquired.insert((pool, Arc::clone(&queued.key)));
        } else if acquired.contains(&(pool, Arc::clone(&queued.key))) {
            calls.extend(classes.iter_mut().map(std::mem::take));
            acquired.clear();
        }
        classes[class].push(queued);
    }
    calls.extend(classes);
    let mut limited = Vec::new();
    for mut call in calls {
        while call.len() > MAX_BATCH {
            let rest = call.split_off(MAX_BATCH);
            limited.push(call);
            call = rest;
        }
        if !call.is_empty() {
            limited.push(call);
        }
    }
    limited
}

/// The sender of one queue's batches, from the caller that found the queue idle to the task
/// that takes over. Dropped before it handed over (no runtime is left to finish its sends: a
/// given runtime shut down), it fails what waits and leaves the queue idle, so the queue never
/// stays busy with nobody sending.
struct Sender {
    backend: RedisBackend,
    lane: Arc<Lane>,
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
            let mut state = self.lane.queues[self.queue].state();
            if state.waiting.is_empty() {
                state.senders -= 1;
                return;
            }
        }
        let mut next = Sender {
            backend: backend.clone(),
            lane: Arc::clone(&self.lane),
            queue: self.queue,
            handed_over: false,
        };
        // On the lane's runtime, not beside the caller: the callers waiting for this batch may
        // be blocking the threads of their own runtime (the blocking API called from async
        // code, whose operations go through the home lane), which would then never run it.
        let task = backend.detached(async move { next.drain().await });
        drop(self.lane.handle.spawn(task));
    }

    /// Sends batch after batch until the queue is empty.
    async fn drain(&mut self) {
        loop {
            let batch = {
                let mut state = self.lane.queues[self.queue].state();
                if state.waiting.is_empty() {
                    state.senders -= 1;
                    self.handed_over = true;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            self.backend.send_batch(&self.lane, batch).await;
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.handed_over {
            return;
        }
        let waiting = {
            let mut state = self.lane.queues[self.queue].state();
            state.senders -= 1;
            if state.senders > 0 {
                return; // another sender takes what waits
            }
            std::mem::take(&mut state.waiting)
        };
        drop(waiting); // each caller learns its batch was cut off
    }
}
