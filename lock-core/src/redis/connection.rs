//! The connections to Redis: the pooled multiplexed connection of each key's slot, the start-up
//! checks, and `eval`, which runs one script within the command timeout.

use std::fmt;
use std::hash::BuildHasher;
use std::time::Duration;

use deadpool_redis::redis::{self, aio::MultiplexedConnection, RedisError, Script};

use super::{scripts, RedisBackend};
use crate::error::{LockError, Result};

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
pub(super) struct PoolError(pub(super) deadpool_redis::PoolError);

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot get a Redis connection: {}", self.0)
    }
}

impl std::error::Error for PoolError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
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
            let mut conn = self.connection("").await.ok()?;
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
            .connection("")
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

    /// The multiplexed connection of `key`'s slot, (re)connecting through the pool when needed.
    pub(super) async fn connection(
        &self,
        key: &str,
    ) -> std::result::Result<MultiplexedConnection, PoolError> {
        let slot = &self.inner.slots[self.slot_of(key)];
        // The slot mutex is FIFO: operations on a key keep their order even while reconnecting.
        let mut slot = slot.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(MultiplexedConnection::clone(conn));
        }
        // Connect on the backend's runtime: the connection's driver task lives where it was
        // created, and must outlive the caller's runtime (or work when the caller has none).
        let pool = self.inner.pool.clone();
        let connecting = self.inner.runtime.handle().spawn(async move {
            let conn = pool.get().await.map_err(PoolError)?;
            let mut multiplexed = MultiplexedConnection::clone(&conn);
            // Load the scripts now (a new connection may mean a restarted server): a NOSCRIPT
            // retry later would let the next command on this connection overtake the retried one.
            for script in scripts::all() {
                script
                    .load_async(&mut multiplexed)
                    .await
                    .map_err(|err| PoolError(deadpool_redis::PoolError::Backend(err)))?;
            }
            Ok(conn)
        });
        let conn = connecting.await.map_err(|err| {
            PoolError(deadpool_redis::PoolError::Backend(RedisError::from(
                std::io::Error::other(err),
            )))
        })??;
        let multiplexed = MultiplexedConnection::clone(&conn);
        *slot = Some(conn);
        Ok(multiplexed)
    }

    pub(super) fn slot_of(&self, key: &str) -> usize {
        self.inner.hasher.hash_one(key) as usize % self.inner.slots.len()
    }

    /// Forgets a broken connection so the next operation gets a fresh one from the pool.
    pub(super) async fn discard_connection(&self, key: &str) {
        *self.inner.slots[self.slot_of(key)].lock().await = None;
    }

    /// Runs one script on `key`'s connection, within the command timeout.
    pub(super) async fn eval<T: redis::FromRedisValue>(
        &self,
        key: &str,
        script: &Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T> {
        let backend_error = |source: Box<dyn std::error::Error + Send + Sync>| LockError::Backend {
            key: key.into(),
            source,
        };
        let attempt = async {
            let mut conn = self
                .connection(key)
                .await
                .map_err(|err| backend_error(err.into()))?;
            let mut invocation = script.prepare_invoke();
            for k in keys {
                invocation.key(*k);
            }
            for a in args {
                invocation.arg(*a);
            }
            match invocation.invoke_async::<T>(&mut conn).await {
                Ok(value) => Ok(value),
                Err(err) => {
                    if is_connection_failure(&err) {
                        self.discard_connection(key).await;
                    }
                    Err(backend_error(err.into()))
                }
            }
        };
        if self.inner.runtime.is_gone() {
            return Err(backend_error(
                "the runtime given to RedisConfig::runtime has shut down".into(),
            ));
        }
        let timeout = self.inner.config.command_timeout;
        // The timer belongs to the backend's runtime, so the caller's executor needs none.
        let attempt = {
            let _runtime = self.inner.runtime.handle().enter();
            tokio::time::timeout(timeout, attempt)
        };
        match attempt.await {
            Ok(result) => result,
            Err(_) => {
                self.discard_connection(key).await;
                Err(backend_error(TimeoutError(timeout).into()))
            }
        }
    }
}
