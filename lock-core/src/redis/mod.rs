//! The Redis backend: locks shared by every process that talks to the same Redis deployment
//! (one server, a Cluster, or the master that Sentinels name; `topology` reads which).
//!
//! One concern per file: `config` (settings, password redaction), `connection` (connections,
//! start-up checks, `eval_then_wait`), `batch` (group commit: operations queued while a batch is in
//! flight go out together), `scripts` (the Lua scripts), `known_holds` (what tells a re-entry
//! from a ghost), `subscriber` (wake-ups), `operations` (in-flight releases, operations finished
//! or undone when their caller drops them), `runtime` (where the I/O runs), `topology` (where the
//! servers are: one, a Cluster, or the master that Sentinels name, found and followed in
//! `sentinel`), `py_cachify` (locks shared with py-cachify: its layout and operations, chosen
//! by the config). This file has the backend itself: its state, key naming, set-up, and the
//! `Backend` methods.

mod batch;
mod config;
mod connection;
mod known_holds;
mod lanes;
pub mod operate;
mod operations;
mod pools;
mod py_cachify;
mod runtime;
mod scripts;
mod sentinel;
mod subscriber;
mod topology;

pub use config::RedisConfig;
use lanes::Route;
use operations::{Acquiring, Detachable, Fallback, PendingKey};
use runtime::IoRuntime;
use subscriber::Wakeups;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use event_listener::{Event, EventListener};

use crate::backend::{
    Backend, BoxFuture, Fence, HoldKind, LeaseTime, LockState, PoolAcquire, PoolState, Release,
    ReleaseScope, RemainingLease, RenewHold, SharedBackend, TryAcquire,
};
use crate::error::{LockError, Result};
use crate::owner::Owner;

/// Most holds renewed by one watchdog script call.
const RENEW_BATCH: usize = 256;

/// Locks kept in Redis, shared by every process using the same deployment and prefix: one
/// server (plain, TLS or a unix socket), a Cluster, or Sentinel's master (see
/// [`RedisConfig::new`] for the URL forms).
///
/// Each lock operation is one round trip, a call of a cached Lua script (`EVALSHA`; the scripts
/// are loaded on every new connection, and reloaded on `NOSCRIPT` after a `SCRIPT FLUSH`, or on a
/// cluster node that joined or restarted), shared under load: operations issued while their
/// connection's call is in flight go out together as the next call (group commit, see the
/// `batch` module). Waiters are woken through one pattern subscription per backend, or on a
/// cluster through sharded subscriptions to the channels of the keys waited on. The I/O that
/// must outlive callers (the subscriber, the watchdog's renewals, releases on drop, the command
/// timeouts' timer, and the connections of the blocking API and of current-thread runtimes) runs
/// on a small runtime the backend owns, so the blocking API works in programs without tokio and
/// inside any runtime, and the backend survives the runtimes of its callers. A task of a
/// multi-thread runtime sends its operations through a lane of its own on that runtime (its own
/// connections and queues: no hop to the backend's thread and back; not on a Cluster, and not
/// with [`RedisConfig::runtime`]); when that runtime shuts down, what it queued and had not sent
/// yet goes out through the backend's runtime, and what was in flight is logged as an error
/// naming its key. Each operation is otherwise polled by its caller, on any executor, and one
/// dropped half-way is finished on the backend's runtime (an acquire also gives back what it
/// got). Operations on
/// one key issued by one task or thread reach Redis in the order issued (a guard's release on
/// drop is never overtaken by the next operation on that key), except right after a
/// `SCRIPT FLUSH`, when the first call of each script is retried.
///
/// Key layout, for prefix `lockwright:` and key `job-42` (one Cluster hash tag per lock):
/// `lockwright:{job-42}` (string `owner:fence:hold count`, `:w` appended when someone waits;
/// TTL = lease),
/// `lockwright:{job-42}:fence` (the last fence; TTL = [`RedisConfig::fence_counter_ttl`]),
/// channel `lockwright:{job-42}:free`. The pool `job-42` ([`Pool`](crate::Pool)):
/// `lockwright:{job-42}:pool` (sorted set of `token:owner` scored by each slot's end),
/// `lockwright:{job-42}:pool-meta` (`max size:last token:waiting`), channel
/// `lockwright:{job-42}:pool:free`; both keys expire with the last slot (the meta after the
/// fence counter TTL), in every mode. In the hash tag, `\` is written `\\` and `}` is written
/// `\)`, so the tag always ends where the key ends and is never empty: every (prefix, key) pair
/// names its own keys, and a lock's keys share one Cluster slot. In py-cachify mode
/// ([`RedisConfig::py_cachify`]) the lock is py-cachify's own key, `PYC-job-42`, holding a
/// pickle; the counter and channel keep lockwright's names, after that key.
///
/// ```no_run
/// use lock_core::{Lock, RedisBackend, RedisConfig};
///
/// let redis = RedisBackend::connect_blocking(RedisConfig::new("redis://127.0.0.1:6379"))?;
/// let lock = Lock::with_backend("job-42", &redis.shared());
/// let guard = lock.acquire_blocking()?;
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: RedisConfig,
    /// Releases from guard drops still in flight, per key: later operations on the key wait
    /// for them, so a process always sees its own drops.
    pending_releases: std::sync::Mutex<std::collections::HashMap<Arc<str>, Arc<PendingKey>>>,
    /// The holds each owner ended (process-wide, per server and prefix), so a hold Redis brought
    /// back is not re-entered.
    known_holds: known_holds::KnownHolds,
    /// Makes connections, whatever the topology.
    connector: Arc<topology::Connector>,
    /// The connections and queues of each runtime the I/O runs on (see `lanes`).
    lanes: lanes::Lanes,
    wakeups: Arc<Wakeups>,
    hasher: foldhash::fast::RandomState,
    runtime: IoRuntime,
    /// Notified when the backend is dropped (ends the runtime watcher).
    closing: Event,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wakeups.closed.store(true, Ordering::Relaxed);
        self.closing.notify(usize::MAX);
    }
}

impl RedisBackend {
    /// Connects (and checks the server answers, so a bad URL, wrong password or unreachable
    /// server fails here, typed and within the connect timeout).
    ///
    /// # Errors
    /// [`LockError::Connection`].
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        let (backend, runtime_handle) = Self::build(config)?;
        let checker = backend.clone();
        runtime_handle
            .spawn(async move { checker.check_connection().await })
            .await
            .map_err(|err| backend.connection_error(err))??;
        backend.warn_if_lock_keys_can_be_evicted().await;
        backend.watch_runtime();
        backend.start_subscriber();
        backend.start_switch_watch();
        Ok(backend)
    }

    /// Blocking form of [`connect`](RedisBackend::connect); needs no runtime.
    pub fn connect_blocking(config: RedisConfig) -> Result<Self> {
        crate::block_on::block_on(Self::connect(config))
    }

    /// This backend as a [`SharedBackend`] for [`Lock::with_backend`](crate::Lock::with_backend)
    /// or [`set_global_backend`](crate::set_global_backend).
    pub fn shared(&self) -> SharedBackend {
        Arc::new(self.clone())
    }

    /// The settings it was built with.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// The Redis key holding `key`'s lock (see the key layout above; in py-cachify mode,
    /// py-cachify's prefix and the key, see [`RedisConfig::py_cachify`]).
    pub fn lock_key(&self, key: &str) -> String {
        match &self.inner.config.py_cachify {
            Some(mode) => mode.lock_name(key),
            None => self.redis_name(key, ""),
        }
    }

    /// The sorted set of the pool `key`'s slots (see `pool.lua`; lockwright's layout in every
    /// mode, py-cachify's included).
    fn pool_key(&self, key: &str) -> String {
        self.redis_name(key, ":pool")
    }

    /// The pool's size, last slot token and waiting mark.
    fn pool_meta_key(&self, key: &str) -> String {
        self.redis_name(key, ":pool-meta")
    }

    /// The channel a pool's release publishes on (its lock's hash tag: one cluster slot).
    fn pool_channel(&self, key: &str) -> String {
        self.redis_name(key, ":pool:free")
    }

    fn fence_key(&self, key: &str) -> String {
        match &self.inner.config.py_cachify {
            // lockwright's own counter, named after py-cachify's key so the two modes' names
            // never meet.
            Some(mode) => self.redis_name(&mode.lock_name(key), ":pyc-fence"),
            None => self.redis_name(key, ":fence"),
        }
    }

    /// The operations' script and the watchdog's, for this backend's layout.
    fn scripts(
        &self,
    ) -> (
        &'static deadpool_redis::redis::Script,
        &'static deadpool_redis::redis::Script,
    ) {
        match &self.inner.config.py_cachify {
            Some(_) => (&py_cachify::BATCH, &py_cachify::EXTEND_MANY),
            None => (&scripts::BATCH, &scripts::EXTEND_MANY),
        }
    }

    /// How a release publishes its wake-up: sharded on a cluster (`SPUBLISH` reaches only the
    /// lock's slot's nodes, where its waiters subscribed), plain elsewhere.
    fn publish_command(&self) -> &'static str {
        if self.inner.connector.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    fn channel(&self, key: &str) -> String {
        match &self.inner.config.py_cachify {
            Some(mode) => self.redis_name(&mode.lock_name(key), ":free"),
            None => self.redis_name(key, ":free"),
        }
    }

    /// `<prefix>{<escaped key>}<suffix>`: with a brace-free prefix and the escape below, the
    /// name determines prefix, key and suffix, and its hash tag is the whole (non-empty) key.
    fn redis_name(&self, key: &str, suffix: &str) -> String {
        let prefix = &self.inner.config.prefix;
        let mut name = String::with_capacity(prefix.len() + key.len() + suffix.len() + 2);
        name.push_str(prefix);
        name.push('{');
        for c in key.chars() {
            match c {
                '\\' => name.push_str("\\\\"),
                '}' => name.push_str("\\)"),
                c => name.push(c),
            }
        }
        name.push('}');
        name.push_str(suffix);
        name
    }

    fn build(config: RedisConfig) -> Result<(Self, tokio::runtime::Handle)> {
        if config.prefix.contains(['{', '}']) {
            return Err(LockError::invalid(
                "prefix",
                format!(
                    "{:?} contains a brace; the key goes in the one hash tag, so the prefix may \
                     not contain `{{` or `}}`",
                    config.prefix
                ),
            ));
        }
        if !(1..=RedisConfig::MAX_POOL_SIZE).contains(&config.pool_size) {
            return Err(LockError::invalid(
                "pool size",
                format!(
                    "{} is not between 1 and {}",
                    config.pool_size,
                    RedisConfig::MAX_POOL_SIZE
                ),
            ));
        }
        let url = config.redacted_url();
        let connection = |source: Box<dyn std::error::Error + Send + Sync>| LockError::Connection {
            target: url.clone(),
            source,
        };
        let runtime = match &config.runtime {
            Some(handle) => {
                if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
                    return Err(LockError::invalid(
                        "runtime",
                        "a current-thread runtime cannot drive the backend's I/O while its \
                         thread waits in the blocking API; pass a multi-thread runtime",
                    ));
                }
                IoRuntime {
                    owned: None,
                    handle: handle.clone(),
                    gone: Default::default(),
                }
            }
            None => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("lockwright-redis")
                    .enable_all()
                    .build()
                    .map_err(|err| connection(err.into()))?;
                IoRuntime {
                    handle: runtime.handle().clone(),
                    owned: Some(runtime),
                    gone: Default::default(),
                }
            }
        };
        let connector = {
            // deadpool's pool needs a runtime context to be built in.
            let _runtime = runtime.handle().enter();
            Arc::new(topology::Connector::new(&config)?)
        };
        if config.py_cachify.is_some() && connector.is_cluster() {
            return Err(LockError::invalid(
                "py-cachify mode",
                "py-cachify's keys carry no hash tag, so lockwright's fence counter cannot share \
                 their Cluster slot: use one server or Sentinel",
            ));
        }
        let handle = runtime.handle().clone();
        // py-cachify mode names its locks apart: its holds are known apart too.
        let namespace = match &config.py_cachify {
            Some(mode) => format!("{}\npy-cachify {}", config.prefix, mode.prefix),
            None => config.prefix.clone(),
        };
        let known_holds = known_holds::KnownHolds::new(&config.redacted_url(), &namespace);
        let home = lanes::Lane::new(
            handle.clone(),
            Arc::clone(&runtime.gone),
            config.pool_size,
            Self::queue_count(&config, connector.is_cluster()),
            true,
        );
        // Callers' runtimes get lanes unless the I/O was given a runtime (then it all runs
        // there) or the deployment is a cluster.
        let callers_get_lanes = config.runtime.is_none() && !connector.is_cluster();
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                lanes: lanes::Lanes::new(home, callers_get_lanes),
                config,
                connector,
                pending_releases: Default::default(),
                known_holds,
                wakeups: Arc::new(Wakeups {
                    channels: Default::default(),
                    closed: AtomicBool::new(false),
                    sharded: Default::default(),
                }),
                hasher: Default::default(),
                runtime,
                closing: Event::new(),
            }),
        };
        Ok((backend, handle))
    }

    async fn release_now(
        self,
        key: Arc<str>,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
        route: Route,
    ) -> Result<Release> {
        let (reply, _) = self
            .batched(
                &key,
                batch::Op::Release {
                    owner,
                    fence,
                    scope,
                },
                None,
                route,
            )
            .await?;
        let outcome = reply.first().copied().unwrap_or(-3);
        let outcome = match outcome {
            0 => Release::Freed,
            -1 => Release::NotLocked,
            -2 => Release::NotOwner,
            count if count > 0 => Release::StillHeld(u32::try_from(count).unwrap_or(u32::MAX)),
            _ => {
                return Err(LockError::Backend {
                    key,
                    source: format!("unexpected release reply {reply:?}").into(),
                })
            }
        };
        self.inner.known_holds.released(&key, owner, fence, outcome);
        Ok(outcome)
    }
}

impl RedisBackend {
    /// Gives back a hold whose acquire the replicas did not confirm, with its owner and fence
    /// (one hold: a re-entry only loses the count it added), as an acquire cancelled mid-way
    /// gives back what it got. Awaited, so the caller's error comes with the key given back;
    /// should that fail (the master gone), the hold ends with its lease.
    async fn undo_unconfirmed(&self, key: &Arc<str>, owner: Owner, fence: Fence) {
        let undone = self
            .clone()
            .release_now(
                Arc::clone(key),
                owner,
                Some(fence),
                ReleaseScope::One,
                Route::Here,
            )
            .await;
        if let Err(err) = undone {
            tracing::warn!(
                %key,
                url = %self.inner.config.redacted_url(),
                error = %err,
                "lockwright: an acquire the replicas did not confirm could not be undone; the \
                 hold stays until its lease ends (never without one) or force_unlock"
            );
        }
    }
}

/// Milliseconds for Redis: rounded up, at least 1; `0` means no expiry.
fn lease_millis(lease: LeaseTime) -> String {
    match lease {
        None => "0".to_owned(),
        Some(lease) => lease.as_nanos().div_ceil(1_000_000).max(1).to_string(),
    }
}

fn remaining_from_pttl(pttl: i64) -> RemainingLease {
    match pttl {
        -1 => RemainingLease::Unlimited,
        // -2: the key vanished between the check and PTTL, i.e. it just expired.
        ms if ms < 0 => RemainingLease::Remaining(Duration::ZERO),
        ms => RemainingLease::Remaining(Duration::from_millis(ms as u64)),
    }
}

impl RedisBackend {
    /// The release of a hold given back with no caller waiting for it (a dropped guard's, or an
    /// acquire's whose caller left), counted as in flight for its key until it ends, so this
    /// process's later operations on the key see it. Built to run in any case: should no
    /// runtime be left to run it, it runs synchronously instead (see [`Detachable`]).
    fn background_release(&self, key: Arc<str>, owner: Owner, fence: Fence) -> Detachable<()> {
        let in_flight = self.pending_until_dropped(&key);
        let backend = self.clone();
        let fallback: Fallback = {
            let (backend, key) = (self.clone(), Arc::clone(&key));
            Box::new(move |polled| {
                backend.release_without_runtime(&key, owner, fence, polled, HoldKind::Lock)
            })
        };
        Detachable {
            op: Some(Box::pin(async move {
                let _in_flight = in_flight;
                if backend.inner.runtime.is_gone() {
                    backend.release_without_runtime(&key, owner, fence, false, HoldKind::Lock);
                    return;
                }
                // Nobody waits for it: through the home lane, which no caller's runtime
                // shutting down can cut off.
                let released = backend
                    .release_now(key, owner, Some(fence), ReleaseScope::One, Route::Home)
                    .await;
                if let Err(err) = released {
                    tracing::warn!(error = %err, "lockwright: release on drop failed");
                }
            })),
            // As if started: should the runtime it is spawned on drop it unpolled, it must
            // still run.
            started: true,
            polled: false,
            runtime: self.inner.runtime.handle().clone(),
            // Should no runtime be left to run it (the guard's and the backend's runtime, often
            // the same given one, shutting down), it runs synchronously instead.
            fallback: Some(fallback),
            moved: false,
            left: None,
        }
    }

    /// [`Self::background_release`], on the backend's runtime, never waited for here.
    fn release_in_background(&self, key: &str, owner: Owner, fence: Fence) {
        if self.inner.runtime.is_gone() {
            self.release_without_runtime(key, owner, fence, false, HoldKind::Lock);
            return;
        }
        drop(
            self.inner
                .runtime
                .handle()
                .spawn(self.background_release(key.into(), owner, fence)),
        );
    }
}

impl RedisBackend {
    /// The watchdog's renewals when pool slots are among them: the locks' holds as
    /// `extend_many` renews them, each slot by a `pool_extend` (which group commit gathers into
    /// few calls). A failing part leaves only its own holds unknown.
    fn extend_locks_and_slots<'a>(
        &'a self,
        holds: &'a [RenewHold],
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Option<bool>>>> {
        Box::pin(async move {
            let (slots, locks): (Vec<usize>, Vec<usize>) =
                (0..holds.len()).partition(|&i| holds[i].kind == HoldKind::PoolSlot);
            let lock_holds: Vec<RenewHold> = locks.iter().map(|&i| holds[i].clone()).collect();
            let locks_renewed = async {
                if lock_holds.is_empty() {
                    Ok(Vec::new())
                } else {
                    self.extend_many(&lock_holds, lease).await
                }
            };
            let slots_renewed = futures_util::future::join_all(slots.iter().map(|&i| {
                let hold = &holds[i];
                self.pool_extend_op(&hold.key, hold.owner, hold.fence, Some(lease))
            }));
            let (locks_renewed, slots_renewed) =
                futures_util::future::join(locks_renewed, slots_renewed).await;
            let mut renewed = vec![None; holds.len()];
            let mut first_error = None;
            let mut answered = false;
            match locks_renewed {
                Ok(live) => {
                    answered |= !locks.is_empty();
                    for (&i, live) in locks.iter().zip(live) {
                        renewed[i] = live;
                    }
                }
                Err(err) => first_error = Some(err),
            }
            for (&i, live) in slots.iter().zip(slots_renewed) {
                match live {
                    Ok(live) => {
                        answered = true;
                        renewed[i] = Some(live);
                    }
                    Err(err) => {
                        tracing::warn!(
                            error = %err,
                            "lockwright: a pool slot's renewal failed; it is tried again"
                        );
                        first_error.get_or_insert(err);
                    }
                }
            }
            match first_error {
                Some(err) if !answered => Err(err),
                _ => Ok(renewed),
            }
        })
    }
}

impl Backend for RedisBackend {
    fn try_acquire<'a>(
        &'a self,
        key: &'a Arc<str>,
        owner: Owner,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<TryAcquire>> {
        let backend = self.clone();
        let key = Arc::clone(key);
        let abandoned = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicBool::new(false));
        let op = {
            let (key, abandoned, sent) =
                (Arc::clone(&key), Arc::clone(&abandoned), Arc::clone(&sent));
            async move {
                let gave_up = || abandoned.load(Ordering::Acquire);
                if !backend.after_pending_releases(&key, gave_up).await {
                    return None; // the caller left before anything was sent: take nothing
                }
                backend.sharded_subscription_ready(&key).await;
                if gave_up() {
                    return None; // left while the subscription was being confirmed: nothing sent
                }
                sent.store(true, Ordering::Release);
                let reply = backend
                    .batched(
                        &key,
                        batch::Op::Acquire {
                            owner,
                            lease,
                            ended: backend.inner.known_holds.ended_fence_arg(&key, owner),
                        },
                        Some(Arc::clone(&abandoned)),
                        Route::Here,
                    )
                    .await;
                let (reply, replicated) = match reply {
                    Ok(reply) => reply,
                    Err(err) => return Some(Err(err)),
                };
                Some(match reply.as_slice() {
                    [1, fence, count] => {
                        let (fence, hold_count) = (
                            Fence(*fence as u64),
                            u32::try_from(*count).unwrap_or(u32::MAX),
                        );
                        match backend.confirmed(&key, replicated) {
                            Ok(()) => Ok(TryAcquire::Acquired { fence, hold_count }),
                            Err(err) => {
                                backend.undo_unconfirmed(&key, owner, fence).await;
                                Err(err)
                            }
                        }
                    }
                    [0, pttl, silent] => {
                        let remaining = remaining_from_pttl(*pttl);
                        Ok(TryAcquire::Held {
                            // A py-cachify holder publishes nothing when it releases: poll.
                            remaining: match (&backend.inner.config.py_cachify, *silent) {
                                (Some(mode), 1) => mode.poll_bound(remaining),
                                _ => remaining,
                            },
                        })
                    }
                    other => Err(LockError::Backend {
                        key: Arc::clone(&key),
                        source: format!("unexpected acquire reply {other:?}").into(),
                    }),
                })
            }
        };
        Box::pin(Acquiring {
            op: Some(Box::pin(op)),
            started: false,
            abandoned,
            sent,
            backend: self.clone(),
            key,
            owner,
        })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    ) -> BoxFuture<'a, Result<Release>> {
        let backend = self.clone();
        // Cut off by its caller, it is finished on the backend's runtime; should that one be
        // gone too, it may have been sent already and cannot be repeated safely: say so.
        let lost: Fallback = {
            let (key, url): (Arc<str>, _) = (key.into(), self.inner.config.redacted_url());
            Box::new(move |_| {
                tracing::error!(
                    %key,
                    %url,
                    "lockwright: a release was cut off in flight by a runtime shutdown; it may \
                     not have reached Redis and cannot safely be repeated: the lock stays held \
                     until its lease ends (never without one) or force_unlock"
                )
            })
        };
        self.run_release(
            key,
            key,
            HoldKind::Lock,
            backend.release_now(key.into(), owner, fence, scope, Route::Here),
            Some(lost),
        )
    }

    fn force_unlock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        let freed = self.force_unlock_value(key);
        Box::pin(async move { Ok(freed.await?.is_some()) })
    }

    fn inspect<'a>(&'a self, key: &'a str, owner: Owner) -> BoxFuture<'a, Result<LockState>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            let (reply, _) = backend
                .batched(&key_owned, batch::Op::Inspect { owner }, None, Route::Here)
                .await?;
            match reply.as_slice() {
                [0] => Ok(LockState::FREE),
                [1, mine, count, fence, pttl] => Ok(LockState {
                    locked: true,
                    held_by_owner: *mine == 1,
                    hold_count: u32::try_from(*count).unwrap_or(u32::MAX),
                    // 0: a py-cachify holder, which has no fence.
                    fence: (*fence != 0).then_some(Fence(*fence as u64)),
                    remaining: remaining_from_pttl(*pttl),
                }),
                other => Err(LockError::Backend {
                    key: key_owned,
                    source: format!("unexpected inspect reply {other:?}").into(),
                }),
            }
        })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<bool>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            let (extended, replicated) = backend
                .batched(
                    &key_owned,
                    batch::Op::Extend {
                        owner,
                        fence,
                        lease,
                    },
                    None,
                    Route::Here,
                )
                .await?;
            backend.confirmed(&key_owned, replicated)?;
            Ok(extended.first() == Some(&1))
        })
    }

    fn extend_many<'a>(
        &'a self,
        holds: &'a [RenewHold],
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<Option<bool>>>> {
        if holds.iter().any(|hold| hold.kind == HoldKind::PoolSlot) {
            return self.extend_locks_and_slots(holds, lease);
        }
        let backend = self.clone();
        let holds = holds.to_vec();
        let Some(first) = holds.first() else {
            return Box::pin(async { Ok(Vec::new()) });
        };
        let first_key = Arc::clone(&first.key);
        self.run(&first_key, async move {
            let lease = lease_millis(Some(lease));
            let names: Vec<String> = holds.iter().map(|h| backend.lock_key(&h.key)).collect();
            // One script call touches one slot on a cluster: the holds go in groups per slot
            // (one group on a single server), each cut into batches.
            let mut groups: Vec<Vec<usize>> = Vec::new();
            if backend.inner.connector.is_cluster() {
                let mut by_slot = std::collections::BTreeMap::<u16, Vec<usize>>::new();
                for (i, name) in names.iter().enumerate() {
                    by_slot
                        .entry(topology::cluster_slot(name))
                        .or_default()
                        .push(i);
                }
                groups.extend(by_slot.into_values());
            } else {
                groups.push((0..holds.len()).collect());
            }
            let batches: Vec<&[usize]> = groups
                .iter()
                .flat_map(|group| group.chunks(RENEW_BATCH))
                .collect();
            // At once, each on its own: a slow or failing master (a cluster's slots live on
            // several) leaves the other batches' answers standing; only its own holds are
            // unknown, and tried again.
            let sent = batches.iter().map(|batch| {
                let (backend, names, holds, lease) = (&backend, &names, &holds, &lease);
                async move {
                    let keys: Vec<&str> = batch.iter().map(|&i| names[i].as_str()).collect();
                    let mut args = vec![lease.clone()];
                    for &i in batch.iter() {
                        args.push(holds[i].owner.to_string());
                        args.push(holds[i].fence.0.to_string());
                    }
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    let key = &holds[batch[0]].key;
                    // Unconfirmed by the replicas, the whole batch counts as failed.
                    let (live, replicated) = backend
                        .eval_then_wait(
                            key,
                            backend.scripts().1,
                            &keys,
                            &args,
                            |live: &Vec<i64>| live.contains(&1),
                        )
                        .await?;
                    backend.confirmed(key, replicated)?;
                    Ok::<_, LockError>(live)
                }
            });
            let answers = futures_util::future::join_all(sent).await;
            let mut renewed = vec![None; holds.len()];
            let mut first_error = None;
            let mut answered = false;
            for (batch, answer) in batches.iter().zip(answers) {
                match answer {
                    Ok(live) => {
                        answered = true;
                        for (&i, live) in batch.iter().zip(live) {
                            renewed[i] = Some(live == 1);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(
                            error = %err,
                            holds = batch.len(),
                            "lockwright: part of a lease renewal failed; its holds are tried again"
                        );
                        first_error.get_or_insert(err);
                    }
                }
            }
            match first_error {
                Some(err) if !answered => Err(err),
                _ => Ok(renewed),
            }
        })
    }

    fn pool_acquire<'a>(
        &'a self,
        key: &'a Arc<str>,
        owner: Owner,
        max_size: u32,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<PoolAcquire>> {
        self.pool_acquire_op(key, owner, max_size, lease)
    }

    fn pool_release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        slot: Fence,
    ) -> BoxFuture<'a, Result<bool>> {
        self.pool_release_op(key, owner, slot)
    }

    fn pool_extend<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        slot: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<bool>> {
        self.pool_extend_op(key, owner, slot, lease)
    }

    fn pool_state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<PoolState>> {
        self.pool_state_op(key)
    }

    fn pool_force_release<'a>(
        &'a self,
        key: &'a str,
        slot: Option<Fence>,
    ) -> BoxFuture<'a, Result<u32>> {
        self.pool_force_release_op(key, slot)
    }

    fn listen_pool(&self, key: &str) -> EventListener {
        let channel = self.pool_channel(key);
        let listener = self.inner.wakeups.channels.listen(&channel);
        if self.inner.connector.is_cluster() {
            self.inner.wakeups.sharded.want(&channel);
        }
        listener
    }

    fn pool_release_on_drop(&self, key: &str, owner: Owner, slot: Fence) {
        self.pool_release_on_drop_op(key, owner, slot)
    }

    fn default_lease(&self) -> Option<Duration> {
        self.inner.config.default_lease
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn listen(&self, key: &str) -> EventListener {
        let channel = self.channel(key);
        let listener = self.inner.wakeups.channels.listen(&channel);
        if self.inner.connector.is_cluster() {
            self.inner.wakeups.sharded.want(&channel);
        }
        listener
    }

    fn release_on_drop(&self, key: &str, owner: Owner, fence: Fence) {
        if self.inner.runtime.is_gone() {
            // The backend's given runtime has shut down: no operation can run on it any more.
            self.release_without_runtime(key, owner, fence, false, HoldKind::Lock);
            return;
        }
        let release = self.background_release(key.into(), owner, fence);
        match tokio::runtime::Handle::try_current() {
            // Inside a runtime, blocking could stall the caller's executor: the release runs in
            // the background, still before any later operation on this key from this process.
            // On a multi-thread runtime it is a task beside its caller (no hop to the backend's
            // thread); should that runtime drop it unfinished (shutting down), it moves to the
            // backend's runtime. A current-thread runtime would run it only when its one thread
            // is free, which a blocking call on this key from that thread would wait for in vain.
            Ok(current)
                if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                drop(current.spawn(release))
            }
            Ok(_) => drop(self.inner.runtime.handle().spawn(release)),
            // Outside any runtime (plain threads) wait for it, so the key is free when drop
            // returns.
            Err(_) => crate::block_on::block_on(release),
        }
    }
}
