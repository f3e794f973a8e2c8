//! The connections to Redis: the pooled multiplexed connection of each key's slot, the start-up
//! checks, and `eval` / `eval_then_wait`, which run one script within the command timeout.

use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use deadpool_redis::redis::{self, ErrorKind, RedisError, Script};

use super::lanes::Lane;
use super::topology::{self, Connection};
use super::{scripts, RedisBackend};
use crate::error::{LockError, Result};

/// A cluster's refusal that says the command did not run: a redirection (`MOVED`, `ASK`), a
/// slot or cluster in transition (`TRYAGAIN`, `CLUSTERDOWN`, `MASTERDOWN`, `LOADING`), or no
/// connection to send it on (none to the slot's node, or the node refused to connect). Only
/// these are sent again: after a broken connection or a timeout the command may have run, and a
/// lock operation run twice takes or gives back a hold twice.
pub(super) fn refused_before_running(err: &RedisError) -> bool {
    matches!(
        err.kind(),
        ErrorKind::Moved
            | ErrorKind::Ask
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::BusyLoadingError
            | ErrorKind::ClusterConnectionNotFound
    ) || err.is_connection_refusal()
}

/// The pause before sending again a command a cluster refused (`refused_before_running`), by
/// how many times it was refused: 2 ms, doubling, at most 100 ms (the cluster client rebuilds
/// its slot map meanwhile; a failover takes seconds, the command timeout bounds the whole).
fn pause_after_refusals(refusals: u32) -> Duration {
    Duration::from_millis(2u64 << refusals.min(6)).min(Duration::from_millis(100))
}

pub(super) fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
}

#[derive(Debug)]
pub(super) struct TimeoutError(pub(super) Duration);

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer from Redis within {:?}", self.0)
    }
}

impl std::error::Error for TimeoutError {}

#[derive(Debug)]
pub(super) struct PoolError(pub(super) Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot get a Redis connection: {}", self.0)
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

impl RedisBackend {
    /// Reads `maxmemory` and `maxmemory-policy`: with a memory limit, any policy but
    /// `noeviction` may evict lock keys (two owners then hold one key) and fence counters (the
    /// clock floor then keeps fences growing). Says so with a `tracing` warning, in the caller's
    /// context so its subscriber sees it. A server that refuses `CONFIG GET` (managed Redis) is
    /// not an error.
    pub(super) async fn warn_if_lock_keys_can_be_evicted(&self) {
        let read = async {
            let mut conn = self.connection_on(&self.inner.lanes.home, "").await.ok()?;
            let settings: std::collections::HashMap<String, String> = redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory*")
                .query_async(&mut conn)
                .await
                .ok()?;
            Some(settings)
        };
        let read = {
            let _runtime = self.inner.runtime.handle().enter();
            tokio::time::timeout(self.inner.config.command_timeout, read)
        };
        let Ok(Some(settings)) = read.await else {
            tracing::debug!("lockwright: could not read the server's eviction policy");
            return;
        };
        let limited = settings.get("maxmemory").is_some_and(|max| max != "0");
        let policy = settings.get("maxmemory-policy").map_or("", String::as_str);
        if limited && policy != "noeviction" {
            tracing::warn!(
                url = %self.inner.config.redacted_url(),
                policy,
                "lockwright: the Redis server may evict keys (maxmemory-policy {policy} with \
                 maxmemory set): an evicted lock key lets a second owner take a held lock; set \
                 maxmemory-policy noeviction (README: recommended server settings)"
            );
        }
    }

    pub(super) fn connection_error(
        &self,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> LockError {
        LockError::Connection {
            target: self.inner.config.redacted_url(),
            source: err.into(),
        }
    }

    pub(super) async fn check_connection(&self) -> Result<()> {
        let mut conn = self
            .connection_on(&self.inner.lanes.home, "")
            .await
            .map_err(|err| self.connection_error(err))?;
        let pong: String = tokio::time::timeout(
            self.inner.config.connect_timeout,
            redis::cmd("PING").query_async(&mut conn),
        )
        .await
        .map_err(|_| self.connection_error(TimeoutError(self.inner.config.connect_timeout)))?
        .map_err(|err| self.connection_error(err))?;
        if pong != "PONG" {
            return Err(self.connection_error(std::io::Error::other(format!(
                "PING answered {pong:?}, not PONG"
            ))));
        }
        Ok(())
    }

    /// The connection of `key`'s slot in `lane`, (re)connecting when needed.
    pub(super) async fn connection_on(
        &self,
        lane: &Lane,
        key: &str,
    ) -> std::result::Result<Connection, PoolError> {
        let slot = &lane.slots[self.slot_of(key)];
        // The slot mutex is FIFO: operations on a key keep their order even while reconnecting.
        let mut slot = slot.lock().await;
        if let Some(held) = slot.as_ref() {
            if held.is_current(&self.inner.connector) {
                return Ok(held.connection());
            }
            // Made for a master the Sentinels have replaced since: it may still take writes,
            // which its demotion would lose. Not one more command goes there.
            if let Some(replaced) = slot.take() {
                replaced.discard();
            }
        }
        // Connect on the lane's runtime: the connection's driver task lives where it was
        // created (home: the backend's runtime, which outlives its callers' and works when the
        // caller has none; a caller's lane: that caller's runtime, with no hop to another).
        let connector = std::sync::Arc::clone(&self.inner.connector);
        let connect_timeout = self.inner.config.connect_timeout;
        let pooled = lane.pooled;
        let connecting = lane.handle.spawn(async move {
            let connect = async {
                if pooled {
                    connector.connect().await
                } else {
                    connector.connect_own().await
                }
            };
            let connected = tokio::time::timeout(connect_timeout, connect)
                .await
                .map_err(|_| PoolError(TimeoutError(connect_timeout).into()))?;
            let held = connected.map_err(PoolError)?;
            let mut conn = held.connection();
            // Load the scripts now (a new connection may mean a restarted server): a NOSCRIPT
            // retry later would let the next command on this connection overtake the retried
            // one. On a cluster `SCRIPT LOAD` goes to every node, replicas included, and one
            // slow or down node must not keep the healthy masters' keys from a connection: there
            // the loads are bounded and a failure is left to the NOSCRIPT retry.
            let cluster = connector.is_cluster();
            for script in scripts::all() {
                let loaded = tokio::time::timeout(connect_timeout, script.load_async(&mut conn))
                    .await
                    .map_err(|_| PoolError(TimeoutError(connect_timeout).into()))
                    .and_then(|loaded| loaded.map_err(|err| PoolError(err.into())));
                match loaded {
                    Ok(_) => {}
                    Err(err) if cluster => {
                        tracing::debug!(error = %err, "lockwright: scripts not loaded on every cluster node");
                        break;
                    }
                    Err(err) => {
                        held.discard();
                        return Err(err);
                    }
                }
            }
            Ok(held)
        });
        let held = connecting
            .await
            .map_err(|err| PoolError(std::io::Error::other(err).into()))?
            .map_err(|PoolError(err)| {
                PoolError(topology::explain_tls_failure(err, &self.inner.config.tls))
            })?;
        let conn = held.connection();
        *slot = Some(held);
        Ok(conn)
    }

    pub(super) fn slot_of(&self, key: &str) -> usize {
        self.inner.hasher.hash_one(key) as usize % self.inner.config.pool_size
    }

    /// Forgets a broken (or demoted) connection of `lane` for good, so the next operation gets
    /// a fresh one.
    pub(super) async fn discard_connection(&self, lane: &Lane, key: &str) {
        if let Some(held) = lane.slots[self.slot_of(key)].lock().await.take() {
            held.discard();
        }
    }

    /// Runs one script on `key`'s connection, within the command timeout.
    pub(super) async fn eval<T: redis::FromRedisValue>(
        &self,
        key: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        let (value, _) = self
            .eval_then_wait(key, script, keys, args, |_| false)
            .await?;
        Ok(value)
    }

    /// [`Self::eval_then_wait_on`] the home lane.
    pub(super) async fn eval_then_wait<T: redis::FromRedisValue>(
        &self,
        key: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        wrote: impl Fn(&T) -> bool,
    ) -> Result<(T, Replicated)> {
        let home = &self.inner.lanes.home;
        self.eval_then_wait_on(home, key, script, keys, args, wrote)
            .await
    }

    /// Runs one script on `key`'s connection in `lane`, within the command timeout; then, with
    /// [`RedisConfig::wait_replicas`](super::RedisConfig) set and when `wrote` says the reply is of a write to confirm, `WAIT` on the same connection
    /// (which is what makes it cover that write), within its own timeout plus the command
    /// timeout. The script's reply is returned whatever `WAIT` says: the caller may have to undo
    /// what it did.
    pub(super) async fn eval_then_wait_on<T: redis::FromRedisValue>(
        &self,
        lane: &Lane,
        key: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
        wrote: impl Fn(&T) -> bool,
    ) -> Result<(T, Replicated)> {
        let backend_error = |source: Box<dyn std::error::Error + Send + Sync>| LockError::Backend {
            key: key.into(),
            source,
        };
        let mut invocation = script.prepare_invoke();
        for k in keys {
            invocation.key(*k);
        }
        for a in args {
            invocation.arg(*a);
        }
        let attempt = async {
            let mut demoted = false;
            let mut refusals = 0;
            loop {
                let mut conn = self
                    .connection_on(lane, key)
                    .await
                    .map_err(|err| backend_error(Box::new(NotSent(err.into()))))?;
                match invocation.invoke_async::<T>(&mut conn).await {
                    Ok(value) => return Ok((value, conn)),
                    // A master demoted by a failover answers the first write of a script with
                    // READONLY, before anything was written: drop the connection for good, and
                    // send it once more, to the master a fresh connection finds.
                    Err(err) if err.kind() == ErrorKind::ReadOnly && !demoted => {
                        demoted = true;
                        self.discard_connection(lane, key).await;
                        // The other slots' connections go to the same demoted server.
                        self.inner.connector.master_may_be_gone();
                    }
                    // The cluster client resends nothing itself (`retries(0)`, topology.rs):
                    // it would also resend a command whose reply was lost with its connection.
                    // A refusal that says it did not run is sent again here, after a pause.
                    Err(err)
                        if self.inner.connector.is_cluster() && refused_before_running(&err) =>
                    {
                        // Paused on the backend's runtime, so the caller's executor needs no
                        // timer; a given runtime that shuts down meanwhile ends the pause with
                        // an error (a timer of its own, polled after that, would panic).
                        let pause = pause_after_refusals(refusals);
                        refusals += 1;
                        let paused = self
                            .inner
                            .runtime
                            .handle()
                            .spawn(async move { tokio::time::sleep(pause).await });
                        if paused.await.is_err() {
                            return Err(backend_error(
                                "the runtime given to RedisConfig::runtime has shut down".into(),
                            ));
                        }
                    }
                    Err(err) => {
                        let slow_cluster_node =
                            err.is_timeout() && self.inner.connector.is_cluster();
                        if (is_connection_failure(&err) && !slow_cluster_node)
                            || err.kind() == ErrorKind::ReadOnly
                        {
                            self.discard_connection(lane, key).await;
                        }
                        if !err.is_timeout() && is_connection_failure(&err) {
                            self.inner.connector.master_may_be_gone();
                        }
                        return Err(backend_error(err.into()));
                    }
                }
            }
        };
        if lane.is_gone() {
            return Err(backend_error(Box::new(NotSent(lane.gone_reason().into()))));
        }
        let timeout = self.inner.config.command_timeout;
        // The timer belongs to the backend's runtime, so the caller's executor needs none.
        let attempt = {
            let _runtime = self.inner.runtime.handle().enter();
            tokio::time::timeout(timeout, attempt)
        };
        let (value, mut conn) = match attempt.await {
            Ok(result) => result?,
            Err(_) => {
                // A cluster connection reaches every node: one slow node is no reason to drop
                // it (a new one would wait for that node too); it follows failovers itself.
                if !self.inner.connector.is_cluster() {
                    self.discard_connection(lane, key).await;
                }
                return Err(backend_error(TimeoutError(timeout).into()));
            }
        };
        let Some(wait) = self.inner.config.wait_replicas.filter(|_| wrote(&value)) else {
            return Ok((value, Replicated::NotAsked));
        };
        let waiting = async {
            redis::cmd("WAIT")
                .arg(wait.replicas)
                .arg(wait.millis())
                .query_async::<i64>(&mut conn)
                .await
        };
        let limit = wait.timeout + timeout;
        let waiting = {
            let _runtime = self.inner.runtime.handle().enter();
            tokio::time::timeout(limit, waiting)
        };
        let replicated = match waiting.await {
            Ok(Ok(acknowledged)) => {
                Replicated::Acknowledged(usize::try_from(acknowledged).unwrap_or(0))
            }
            Ok(Err(err)) => {
                if is_connection_failure(&err) {
                    self.discard_connection(lane, key).await;
                    if !err.is_timeout() {
                        self.inner.connector.master_may_be_gone();
                    }
                }
                Replicated::Failed(SharedError(std::sync::Arc::new(err)))
            }
            Err(_) => {
                self.discard_connection(lane, key).await;
                Replicated::Failed(SharedError(std::sync::Arc::new(TimeoutError(limit))))
            }
        };
        Ok((value, replicated))
    }

    /// `Ok` when the write `replicated` tells of needs no confirmation or was confirmed; else
    /// the error to report ([`LockError::NotReplicated`], or what `WAIT` failed with).
    pub(super) fn confirmed(&self, key: &str, replicated: Replicated) -> Result<()> {
        let wanted = self
            .inner
            .config
            .wait_replicas
            .map_or(0, |wait| wait.replicas);
        match replicated {
            Replicated::NotAsked => Ok(()),
            Replicated::Acknowledged(acknowledged) if acknowledged >= wanted => Ok(()),
            Replicated::Acknowledged(acknowledged) => Err(LockError::NotReplicated {
                key: key.into(),
                acknowledged,
                wanted,
            }),
            Replicated::Failed(err) => Err(err.for_key(key.into())),
        }
    }
}

/// The source of an error that came before the operation could reach Redis (no connection, its
/// lane or runtime gone, an acquire abandoned while queued): it certainly did not apply. Shown as
/// the error it wraps.
#[derive(Debug)]
pub(super) struct NotSent(pub(super) Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for NotSent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for NotSent {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// The source of the error an operation's caller gets when its answer takes longer than the
/// command timeout (see `RedisBackend::batched`): the operation may still go out, or its reply
/// still come. Its late answer is dealt with where nobody waits for it any more (`answer` in
/// `batch.rs`: an acquire's hold given back, a failure logged). Shown as the error it wraps.
#[derive(Debug)]
pub(super) struct Unsettled(pub(super) Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for Unsettled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Unsettled {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What an operation's error says of whether the operation applied in Redis.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Applied {
    /// Certainly not: Redis's reply refused it, or it was never sent ([`NotSent`]).
    No,
    /// Perhaps: it went out, and the reply was lost (a broken connection, a command timeout,
    /// the runtime carrying it shut down).
    Maybe,
    /// Not known yet ([`Unsettled`]): its late answer is dealt with when it comes.
    Later,
}

impl Applied {
    pub(super) fn of(err: &LockError) -> Applied {
        let LockError::Backend { source, .. } = err else {
            return Applied::No;
        };
        let mut source: &(dyn std::error::Error + 'static) = source.as_ref();
        if let Some(shared) = source.downcast_ref::<SharedError>() {
            source = shared.0.as_ref();
        }
        if source.downcast_ref::<NotSent>().is_some() {
            Applied::No
        } else if source.downcast_ref::<Unsettled>().is_some() {
            Applied::Later
        } else {
            Applied::Maybe
        }
    }
}

/// An error shared by every operation of a batch: each gets it under its own key.
#[derive(Clone, Debug)]
pub(super) struct SharedError(std::sync::Arc<dyn std::error::Error + Send + Sync>);

impl SharedError {
    pub(super) fn new(message: String) -> Self {
        SharedError(std::sync::Arc::new(std::io::Error::other(message)))
    }

    /// The source of a backend error (the key it names is the batch's first), else the error.
    pub(super) fn from_lock_error(err: LockError) -> Self {
        match err {
            LockError::Backend { source, .. } => SharedError(source.into()),
            other => SharedError(std::sync::Arc::new(other)),
        }
    }

    pub(super) fn for_key(&self, key: std::sync::Arc<str>) -> LockError {
        LockError::Backend {
            key,
            source: Box::new(self.clone()),
        }
    }
}

impl fmt::Display for SharedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SharedError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// What `WAIT` said of a write ([`RedisBackend::eval_then_wait`]).
#[derive(Clone)]
pub(super) enum Replicated {
    /// No confirmation asked: `wait_replicas` unset, or the reply was of no write to confirm.
    NotAsked,
    /// This many replicas acknowledged it in time.
    Acknowledged(usize),
    /// `WAIT` itself failed (the connection broke, or it did not answer in time).
    Failed(SharedError),
}
