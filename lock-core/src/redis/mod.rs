//! The Redis backend: locks shared by every process that talks to one Redis server.

mod known_holds;
mod scripts;

use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use deadpool_redis::redis::{self, aio::MultiplexedConnection, RedisError, Script};
use event_listener::{Event, EventListener};
use futures_util::StreamExt;
use tokio::sync::Mutex as AsyncMutex;

use crate::backend::{
    Backend, BoxFuture, Fence, LeaseTime, LockState, Release, ReleaseScope, RemainingLease,
    RenewHold, SharedBackend, TryAcquire,
};
use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::owner::Owner;

const WAKE_STRIPES: usize = 64;

/// Settings of a [`RedisBackend`]. Build with [`RedisConfig::new`] and the setters.
///
/// ```
/// use lock_core::RedisConfig;
///
/// let config = RedisConfig::new("redis://:secret@127.0.0.1:6379/0")
///     .pool_size(2)
///     .prefix("myapp:locks:")
///     .command_timeout(2)?;
/// assert!(!format!("{config:?}").contains("secret"));
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    url: String,
    pool_size: usize,
    prefix: String,
    connect_timeout: Duration,
    command_timeout: Duration,
    default_lease: Option<Duration>,
    fence_counter_ttl: Duration,
    runtime: Option<tokio::runtime::Handle>,
}

/// Most holds renewed by one watchdog script call.
const RENEW_BATCH: usize = 256;

impl RedisConfig {
    /// The largest [`pool_size`](RedisConfig::pool_size): each connection is a socket and a
    /// slot of per-key ordering, and more than this only adds load on the server.
    pub const MAX_POOL_SIZE: usize = 1024;

    /// Settings for the server at `url`: `redis://[user:password@]host[:port][/db]`,
    /// `rediss://...` (TLS; needs a TLS feature of the `redis` crate, not enabled by default),
    /// `redis+unix:///path/to/socket` or `unix:///path/to/socket`.
    ///
    /// Defaults: pool of 4 connections, key prefix `lockwright:`, 5 s connect and command
    /// timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            pool_size: 4,
            prefix: "lockwright:".to_owned(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            default_lease: None,
            fence_counter_ttl: Duration::from_secs(600),
            runtime: None,
        }
    }

    /// How long Redis keeps a key's fence counter after the key's last acquire (default 10
    /// minutes): what Redis keeps is bounded by the keys locked within this window, not by every
    /// key ever locked.
    ///
    /// Fences stay strictly increasing once a counter is gone (expired, evicted, flushed, lost
    /// in a restart or a failover): a new fence is never below the server clock in microseconds
    /// (`TIME`), and the counter only breaks ties. This rests on one assumption, stated in
    /// GUARANTEES.md: the server clock does not step back by more than this window (nor, for a
    /// counter lost otherwise, by more than the time since the key's last acquire).
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis://127.0.0.1:6379").fence_counter_ttl(3600)?;
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    pub fn fence_counter_ttl(mut self, ttl: impl IntoLockDuration) -> Result<Self> {
        self.fence_counter_ttl = ttl.into_lock_duration("fence counter ttl")?;
        Ok(self)
    }

    /// The lease of holds acquired without `exp` on this backend (renewed by the watchdog every
    /// third of it), instead of the global [`default_lease`](crate::default_lease). It bounds how
    /// long a crashed process's locks outlive it.
    pub fn default_lease(mut self, lease: impl IntoLockDuration) -> Result<Self> {
        self.default_lease = Some(lease.into_lock_duration("default lease")?);
        Ok(self)
    }

    /// How many multiplexed connections the backend keeps (default 4). Operations on one key
    /// always use the same connection, which keeps them in order. Outside 1 to
    /// [`MAX_POOL_SIZE`](RedisConfig::MAX_POOL_SIZE), connecting fails with
    /// [`LockError::InvalidArgument`].
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Prefix of every Redis key and channel the backend uses (default `lockwright:`). It may not
    /// contain `{` or `}` (connecting fails with [`LockError::InvalidArgument`]): the lock's key
    /// goes in the one hash tag, and a brace in the prefix would let two (prefix, key) pairs name
    /// the same Redis key.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long connecting may take before [`LockError::Connection`].
    pub fn connect_timeout(mut self, timeout: impl IntoLockDuration) -> Result<Self> {
        self.connect_timeout = timeout.into_lock_duration("connect timeout")?;
        Ok(self)
    }

    /// How long one operation may take before [`LockError::Backend`].
    pub fn command_timeout(mut self, timeout: impl IntoLockDuration) -> Result<Self> {
        self.command_timeout = timeout.into_lock_duration("command timeout")?;
        Ok(self)
    }

    /// Runs the backend's Redis I/O (its connections' driver tasks, the pub/sub subscriber and
    /// the command timeouts' timer) on this multi-thread tokio runtime instead of on a one-thread
    /// runtime of its own.
    ///
    /// Pass the runtime your tasks run on: their lock operations then reach Redis without
    /// crossing to another thread and back, which matters most at low concurrency (the figures
    /// are in BENCHMARKS.md). In exchange the backend works only while that runtime runs: once it
    /// has shut down, operations fail with [`LockError::Backend`]. A guard dropped then, or by
    /// its shutdown (a task holding it on that runtime), is still released: synchronously, on a
    /// connection of its own, blocking the dropping thread for that round trip. Only a release or
    /// acquire already sent when the runtime stopped can be lost (it is not repeated: it may have
    /// landed); that is logged as an error naming the key. Connecting fails with
    /// [`LockError::InvalidArgument`] for a current-thread runtime (the blocking API, called on
    /// its thread, would stall the very thread that must drive the I/O) and with
    /// [`LockError::Connection`] for a runtime built without `enable_io` and `enable_time`.
    /// The blocking API may still be called from that runtime's tasks: it waits inside
    /// `tokio::task::block_in_place`, so the I/O it waits for keeps running.
    ///
    /// ```no_run
    /// use lock_core::{RedisBackend, RedisConfig};
    ///
    /// # async fn demo() -> Result<(), lock_core::LockError> {
    /// let config = RedisConfig::new("redis://127.0.0.1:6379")
    ///     .runtime(tokio::runtime::Handle::current());
    /// let redis = RedisBackend::connect(config).await?;
    /// # Ok(()) }
    /// ```
    pub fn runtime(mut self, runtime: tokio::runtime::Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The URL with any password replaced by `***`, for logs and errors. It does not depend on
    /// the URL parsing: everything between `://` and the last `@` but the user name, and
    /// everything after `pass=` / `password=` in the query, is hidden, whatever characters the
    /// password holds (so an odd URL may show less than its password-free parts).
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("pool_size", &self.pool_size)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("default_lease", &self.default_lease)
            .field("fence_counter_ttl", &self.fence_counter_ttl)
            .field("own_runtime", &self.runtime.is_none())
            .finish()
    }
}

/// Hides passwords for logs and errors without parsing the URL: a password may hold any
/// character (`?`, `/`, `#`, `@`...), and a URL that does not parse must not show it either.
/// Over-redacting is fine, leaking is not:
/// - everything between `://` and the last `@` of the whole string is user info, shown as
///   `user:***` when it has a `:` (the user is what comes before the first one), else `***`;
/// - from the value of the first `pass` / `password` query parameter (after `?` or `&`; redis-rs
///   reads the credentials of `redis+unix://` URLs from there) to the end of the string is
///   `***`, as the value may itself hold `&` or `#`.
fn redact(url: &str) -> String {
    // Both are found in the original string: hiding one first could hide where the other starts.
    let userinfo = userinfo_secret(url);
    let query = query_credential(url).map(|value| value..url.len());
    let hidden = match (userinfo, query) {
        // The query value starts inside the user info or before it: hide from the first start.
        (Some(userinfo), Some(query)) if query.start <= userinfo.end => {
            [Some(userinfo.start.min(query.start)..url.len()), None]
        }
        (userinfo, query) => [userinfo, query],
    };
    let mut out = String::with_capacity(url.len());
    let mut shown_up_to = 0;
    for range in hidden.into_iter().flatten() {
        out.push_str(&url[shown_up_to..range.start]);
        out.push_str("***");
        shown_up_to = range.end;
    }
    out.push_str(&url[shown_up_to..]);
    out
}

/// The password part of the user info: between `://` (or the start, when no `://` comes
/// before the last `@`) and the last `@`, after the first `:` if there is one (what precedes
/// it is the user name, which stays), else all of it.
fn userinfo_secret(url: &str) -> Option<std::ops::Range<usize>> {
    let at = url.rfind('@')?;
    let start = match url.find("://") {
        Some(scheme) if scheme + 3 <= at => scheme + 3,
        _ => 0,
    };
    if start == at {
        return None;
    }
    let secret_start = url[start..at]
        .find(':')
        .map_or(start, |colon| start + colon + 1);
    Some(secret_start..at)
}

/// Where the value of the first `pass` / `password` parameter starts: a name right after `?` or
/// `&` and followed by `=`, compared as redis-rs would after percent-decoding (and, to be safe,
/// ignoring ASCII case).
fn query_credential(url: &str) -> Option<usize> {
    url.match_indices(['?', '&']).find_map(|(at, _)| {
        let rest = &url[at + 1..];
        let name_end = rest.find(['=', '&', '#'])?;
        if !rest[name_end..].starts_with('=') {
            return None;
        }
        let name = percent_decode(&rest[..name_end]);
        (name.eq_ignore_ascii_case(b"pass") || name.eq_ignore_ascii_case(b"password"))
            .then_some(at + 1 + name_end + 1)
    })
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let hex = |b: u8| (b as char).to_digit(16);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// A URL redis-rs refused, told without the error's detail: redis-rs may quote parts of the URL
/// there (an invalid `protocol` value, for one), which could be a misplaced password.
#[derive(Debug)]
struct UrlRejected(String);

impl UrlRejected {
    fn new(err: &RedisError) -> Self {
        let shown = err.to_string();
        let without_detail = match err.detail() {
            None => Some(shown.as_str()),
            Some(detail) => shown
                .strip_suffix(detail)
                .and_then(|rest| rest.strip_suffix(": ")),
        };
        UrlRejected(match without_detail {
            Some(text) if err.detail().is_none() => text.to_owned(),
            Some(text) => format!("{text} (detail withheld: it may quote the URL)"),
            None => err.category().to_owned(),
        })
    }
}

impl fmt::Display for UrlRejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the Redis URL was refused: {}", self.0)
    }
}

impl std::error::Error for UrlRejected {}

/// Locks kept in Redis, shared by every process using the same server and prefix.
///
/// Each lock operation is one round trip: a cached Lua script (`EVALSHA`; the scripts are loaded
/// on every new connection, and reloaded on `NOSCRIPT` after a `SCRIPT FLUSH`). Waiters are woken
/// through one pattern subscription per backend. The connections' I/O (their driver tasks and
/// the command timeouts' timer) runs on a small runtime the backend owns, so the blocking API
/// works in programs without tokio and inside any runtime, and the backend survives the runtimes
/// of its callers; each operation is otherwise polled by its caller, on any executor, and one
/// dropped half-way is finished there (an acquire also gives back what it got). Operations on
/// one key issued by one task or thread reach Redis in the order issued (a guard's release on
/// drop is never overtaken by the next operation on that key), except right after a
/// `SCRIPT FLUSH`, when the first call of each script is retried.
///
/// Key layout, for prefix `lockwright:` and key `job-42` (one Cluster hash tag per lock):
/// `lockwright:{job-42}` (string `owner:fence:hold count`, `:w` appended when someone waits;
/// TTL = lease),
/// `lockwright:{job-42}:fence` (the last fence; TTL = [`RedisConfig::fence_counter_ttl`]),
/// channel `lockwright:{job-42}:free`. In the hash tag, `\` is written `\\` and `}` is written
/// `\)`, so the tag always ends where the key ends and is never empty: every (prefix, key) pair
/// names its own keys, and a lock's keys share one Cluster slot.
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
    pool: deadpool_redis::Pool,
    slots: Box<[AsyncMutex<Option<deadpool_redis::Connection>>]>,
    wakeups: Arc<Wakeups>,
    hasher: foldhash::fast::RandomState,
    runtime: IoRuntime,
    /// Notified when the backend is dropped (ends the runtime watcher).
    closing: Event,
}

/// Where the backend's I/O runs: a runtime it owns (shut down without blocking, so dropping the
/// backend is fine anywhere) or one it was given ([`RedisConfig::runtime`]).
struct IoRuntime {
    owned: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    gone: Arc<RuntimeGone>,
}

/// What the backend knows of its runtime's end, and of reaching Redis without it.
#[derive(Default)]
struct RuntimeGone {
    /// Set when a given runtime has shut down: its timers would panic if used.
    flag: AtomicBool,
    /// When a synchronous release ([`RedisBackend::release_without_runtime`]) last failed. A
    /// shutdown may drop many guards at once: with the server unreachable or silent, the ones
    /// right after a failure give up at once instead of each waiting out the timeouts again.
    blocking_failed_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl IoRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    fn is_gone(&self) -> bool {
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
struct FlagOnDrop(Arc<RuntimeGone>);

impl Drop for FlagOnDrop {
    fn drop(&mut self) {
        self.0.flag.store(true, Ordering::Release);
    }
}

#[derive(Default)]
struct PendingKey {
    in_flight: std::sync::atomic::AtomicUsize,
    done: Event,
}

/// How often the subscriber PINGs its connection. Waiters on a holder without a lease end
/// (`never_expires`) are woken by pub/sub alone, and a connection that silently stops delivering
/// (half-open TCP, a frozen NAT entry) reports no error: only the missing PONG shows it. One
/// PING a second per backend costs the server next to nothing, and bounds how long a waiter
/// sleeps past a release whatever the holder's lease: this interval + the command timeout (the
/// unanswered PING) + one reconnect (100 ms pause + at most the connect timeout), after which
/// everyone re-checks.
const SUBSCRIBER_KEEPALIVE: Duration = Duration::from_secs(1);

struct Wakeups {
    stripes: Box<[Event]>,
    hasher: foldhash::fast::RandomState,
    closed: AtomicBool,
}

impl Wakeups {
    fn stripe(&self, channel: &str) -> &Event {
        &self.stripes[self.hasher.hash_one(channel) as usize % WAKE_STRIPES]
    }

    fn wake_everyone(&self) {
        for stripe in self.stripes.iter() {
            stripe.notify(usize::MAX);
        }
    }
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
        Ok(backend)
    }

    /// Reads `maxmemory` and `maxmemory-policy`: with a memory limit, any policy but
    /// `noeviction` may evict lock keys (two owners then hold one key) and fence counters (the
    /// clock floor then keeps fences growing). Says so with a `tracing` warning, in the caller's
    /// context so its subscriber sees it. A server that refuses `CONFIG GET` (managed Redis) is
    /// not an error.
    async fn warn_if_lock_keys_can_be_evicted(&self) {
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

    /// The Redis key holding `key`'s lock (see the key layout above).
    pub fn lock_key(&self, key: &str) -> String {
        self.redis_name(key, "")
    }

    fn fence_key(&self, key: &str) -> String {
        self.redis_name(key, ":fence")
    }

    fn channel(&self, key: &str) -> String {
        self.redis_name(key, ":free")
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
        let mut pool_config = deadpool_redis::PoolConfig::new(config.pool_size);
        pool_config.timeouts.create = Some(config.connect_timeout);
        pool_config.timeouts.wait = Some(config.connect_timeout);
        pool_config.timeouts.recycle = Some(config.command_timeout);
        let pool = deadpool_redis::Config {
            url: Some(config.url.clone()),
            connection: None,
            pool: Some(pool_config),
        }
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .map_err(|err| match err {
            deadpool_redis::CreatePoolError::Config(deadpool_redis::ConfigError::Redis(err)) => {
                connection(UrlRejected::new(&err).into())
            }
            err => connection(err.into()),
        })?;
        let handle = runtime.handle().clone();
        let known_holds = known_holds::KnownHolds::new(&config.redacted_url(), &config.prefix);
        let backend = RedisBackend {
            inner: Arc::new(Inner {
                slots: (0..config.pool_size)
                    .map(|_| AsyncMutex::new(None))
                    .collect(),
                config,
                pool,
                pending_releases: Default::default(),
                known_holds,
                wakeups: Arc::new(Wakeups {
                    stripes: (0..WAKE_STRIPES).map(|_| Event::new()).collect(),
                    hasher: Default::default(),
                    closed: AtomicBool::new(false),
                }),
                hasher: Default::default(),
                runtime,
                closing: Event::new(),
            }),
        };
        Ok((backend, handle))
    }

    fn connection_error(&self, err: impl std::error::Error + Send + Sync + 'static) -> LockError {
        LockError::Connection {
            target: self.inner.config.redacted_url(),
            source: err.into(),
        }
    }

    async fn check_connection(&self) -> Result<()> {
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
    async fn connection(&self, key: &str) -> std::result::Result<MultiplexedConnection, PoolError> {
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

    fn slot_of(&self, key: &str) -> usize {
        self.inner.hasher.hash_one(key) as usize % self.inner.slots.len()
    }

    /// Forgets a broken connection so the next operation gets a fresh one from the pool.
    async fn discard_connection(&self, key: &str) {
        *self.inner.slots[self.slot_of(key)].lock().await = None;
    }

    /// Runs one script on `key`'s connection, within the command timeout.
    async fn eval<T: redis::FromRedisValue>(
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

    fn pending_releases(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Arc<str>, Arc<PendingKey>>> {
        self.inner
            .pending_releases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one more release in flight for `key` (resolved by [`Self::end_pending`]).
    fn begin_pending(&self, key: &Arc<str>) -> Arc<PendingKey> {
        // Count and uncount under the map's lock, so an entry is removed only when idle.
        let mut map = self.pending_releases();
        let pending = Arc::clone(map.entry(Arc::clone(key)).or_default());
        pending.in_flight.fetch_add(1, Ordering::AcqRel);
        pending
    }

    fn end_pending(&self, key: &str, pending: &PendingKey) {
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
    fn pending_until_dropped(&self, key: &Arc<str>) -> InFlight {
        InFlight {
            pending: self.begin_pending(key),
            backend: self.clone(),
            key: Arc::clone(key),
        }
    }

    /// Waits until no release from a guard drop is in flight for `key`. Returns false, early,
    /// once `give_up` is true (an acquire whose caller left must not wait for itself).
    async fn after_pending_releases(&self, key: &str, give_up: impl Fn() -> bool) -> bool {
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
    fn run<T, F>(&self, key: &str, op: F) -> BoxFuture<'static, Result<T>>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        self.run_with_fallback(key, op, None)
    }

    /// [`Self::run`], with what to do should no runtime be left to finish it (see
    /// [`Detachable`]).
    fn run_with_fallback<T, F>(
        &self,
        key: &str,
        op: F,
        fallback: Option<Fallback>,
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
        })
    }

    /// A given runtime may shut down before the backend: a task on it notices (its tasks are
    /// dropped then), so operations fail typed instead of touching its timers.
    fn watch_runtime(&self) {
        let closing = self.inner.closing.listen();
        let gone = FlagOnDrop(Arc::clone(&self.inner.runtime.gone));
        self.inner.runtime.handle().spawn(async move {
            let _gone = gone; // dropped by a runtime shutdown, or harmlessly when the backend closes
            closing.await;
        });
    }

    fn start_subscriber(&self) {
        let client = match redis::Client::open(self.inner.config.url.as_str()) {
            Ok(client) => client,
            Err(err) => {
                let error = UrlRejected::new(&err);
                tracing::warn!(%error, "lockwright: cannot open the Redis subscriber");
                return;
            }
        };
        let pattern = format!("{}{{*}}:free", escape_glob(&self.inner.config.prefix));
        let wakeups = Arc::clone(&self.inner.wakeups);
        let connect_timeout = self.inner.config.connect_timeout;
        let command_timeout = self.inner.config.command_timeout;
        let url = self.inner.config.redacted_url();
        let closing = self.inner.closing.listen();
        let subscriber = async move {
            while !wakeups.closed.load(Ordering::Relaxed) {
                let subscribed = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.psubscribe(&pattern).await?;
                    Ok::<_, RedisError>(pubsub)
                };
                match tokio::time::timeout(connect_timeout, subscribed).await {
                    Ok(Ok(pubsub)) => {
                        // Anything released while we were not listening: everyone re-checks.
                        wakeups.wake_everyone();
                        let (mut sink, mut messages) = pubsub.split();
                        let listening = async {
                            while let Some(message) = messages.next().await {
                                wakeups
                                    .stripe(message.get_channel_name())
                                    .notify(usize::MAX);
                            }
                        };
                        let keepalive = async {
                            loop {
                                tokio::time::sleep(SUBSCRIBER_KEEPALIVE).await;
                                let ping = sink.ping::<redis::Value>();
                                match tokio::time::timeout(command_timeout, ping).await {
                                    Ok(Ok(_)) => {}
                                    Ok(Err(err)) => return Box::<dyn std::error::Error>::from(err),
                                    Err(_) => return TimeoutError(command_timeout).into(),
                                }
                            }
                        };
                        // Either way the connection is dropped (closed) below, and a new one made.
                        tokio::select! {
                            () = listening => tracing::warn!(
                                %url,
                                "lockwright: Redis subscriber disconnected; reconnecting"
                            ),
                            err = keepalive => tracing::warn!(
                                %url,
                                error = %err,
                                "lockwright: Redis subscriber did not answer PING; reconnecting"
                            ),
                        }
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(%url, error = %err, "lockwright: Redis subscriber failed")
                    }
                    Err(_) => tracing::warn!(%url, "lockwright: Redis subscriber timed out"),
                }
                wakeups.wake_everyone();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // The subscriber ends with the backend, even while it awaits messages (which may be
        // forever): dropping it closes its connection. On a given runtime that keeps running it
        // would otherwise stay there for good.
        self.inner.runtime.handle().spawn(async move {
            tokio::select! {
                () = closing => {}
                () = subscriber => {}
            }
        });
    }

    async fn release_now(
        self,
        key: Arc<str>,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    ) -> Result<Release> {
        let fence_arg = fence.map(|fence| fence.0.to_string()).unwrap_or_default();
        let scope_arg = match scope {
            ReleaseScope::One => "one",
            ReleaseScope::All => "all",
        };
        let outcome: i64 = self
            .eval(
                &key,
                &scripts::RELEASE,
                &[&self.lock_key(&key)],
                &[
                    &owner.to_string(),
                    &fence_arg,
                    scope_arg,
                    &self.channel(&key),
                ],
            )
            .await?;
        let outcome = match outcome {
            0 => Release::Freed,
            -1 => Release::NotLocked,
            -2 => Release::NotOwner,
            count => Release::StillHeld(u32::try_from(count).unwrap_or(u32::MAX)),
        };
        self.inner.known_holds.released(&key, owner, fence, outcome);
        Ok(outcome)
    }

    /// A guard's drop release that no runtime can run (see [`Detachable`]): sent synchronously
    /// on a connection of its own, within the connect and command timeouts, blocking the thread
    /// that drops it (a runtime shutting down, or a caller of a backend whose runtime is gone).
    /// One that was polled may have reached Redis already, and is not repeated: a second
    /// release could take away another hold of the same owner. That one is logged as an error,
    /// as are those not sent because the one before failed moments ago.
    fn release_without_runtime(&self, key: &str, owner: Owner, fence: Fence, polled: bool) {
        let url = self.inner.config.redacted_url();
        if polled {
            tracing::error!(
                %key,
                %url,
                fence = fence.0,
                "lockwright: a guard's release on drop was cut off in flight by a runtime \
                 shutdown; it may not have reached Redis and cannot safely be repeated: the lock \
                 stays held until its lease ends (never without one) or force_unlock"
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
                    "lockwright: a guard's release on drop, with no runtime left to run it, was \
                     not sent: the synchronous release before it failed moments ago; the lock \
                     stays held until its lease ends (never without one) or force_unlock"
                );
                return;
            }
        }
        tracing::warn!(
            %key,
            %url,
            "lockwright: no runtime left to run a guard's release on drop; releasing synchronously"
        );
        if let Err(err) = self.release_blocking(key, owner, fence) {
            *failed_at = Some(std::time::Instant::now());
            tracing::error!(
                %key,
                %url,
                error = %err,
                "lockwright: a guard's release on drop failed, with no runtime left to retry it: \
                 the lock stays held until its lease ends (never without one) or force_unlock"
            );
        }
    }

    /// The call of [`Self::release_now`] (scope one), on a plain synchronous connection.
    fn release_blocking(&self, key: &str, owner: Owner, fence: Fence) -> redis::RedisResult<i64> {
        let config = &self.inner.config;
        let client = redis::Client::open(config.url.as_str())?;
        let mut conn = client.get_connection_with_timeout(config.connect_timeout)?;
        conn.set_read_timeout(Some(config.command_timeout))?;
        conn.set_write_timeout(Some(config.command_timeout))?;
        scripts::RELEASE
            .prepare_invoke()
            .key(self.lock_key(key))
            .arg(owner.to_string())
            .arg(fence.0.to_string())
            .arg("one")
            .arg(self.channel(key))
            .invoke(&mut conn)
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

fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

fn is_connection_failure(err: &RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_connection_refusal()
        || err.is_timeout()
}

#[derive(Debug)]
struct TimeoutError(Duration);

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer from Redis within {:?}", self.0)
    }
}

impl std::error::Error for TimeoutError {}

#[derive(Debug)]
struct PoolError(deadpool_redis::PoolError);

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

/// One release in flight for a key (see [`RedisBackend::pending_until_dropped`]).
struct InFlight {
    pending: Arc<PendingKey>,
    backend: RedisBackend,
    key: Arc<str>,
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
struct Detachable<T: Send + 'static> {
    op: Option<BoxFuture<'static, T>>,
    started: bool,
    /// Set by the first poll: from then on the op may have sent something.
    polled: bool,
    runtime: tokio::runtime::Handle,
    fallback: Option<Fallback>,
    /// Already moved to `runtime`: never moved again (no respawn loop on a dead runtime).
    moved: bool,
}

/// What to do, synchronously, with a [`Detachable`] no runtime can finish; its argument tells
/// whether the op was polled.
type Fallback = Box<dyn FnOnce(bool) + Send>;

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
        drop(self.runtime.spawn(Detachable {
            op: Some(op),
            started: true,
            polled: self.polled,
            runtime: self.runtime.clone(),
            fallback: self.fallback.take(),
            moved: true,
        }));
    }
}

/// An acquire polled in its caller's task. Dropped before it answered (the caller gave up), it
/// must not leave a hold nobody owns: the rest of it runs on the backend's runtime, which gives
/// back any hold it gets, and until then later operations on the key from this process wait
/// (a pending entry), so the caller's next operation sees the key released.
struct Acquiring {
    /// `None` when the caller left before anything was sent.
    op: Option<BoxFuture<'static, Option<Result<TryAcquire>>>>,
    started: bool,
    abandoned: Arc<AtomicBool>,
    /// Set by the op just before it sends the script.
    sent: Arc<AtomicBool>,
    backend: RedisBackend,
    key: Arc<str>,
    owner: Owner,
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
        };
        drop(self.backend.inner.runtime.handle().spawn(async move {
            let _in_flight = in_flight;
            let outcome = op.await;
            unanswered.answered();
            if let Some(Ok(TryAcquire::Acquired { fence, .. })) = outcome {
                // Given back like a dropped guard's hold: even should this runtime shut down.
                backend.release_on_drop(&key, owner, fence);
            }
        }));
    }
}

/// Travels with the rest of an abandoned acquire: dropped before its reply came (the runtime
/// finishing it shut down) after the script was sent, it logs an error. The acquire may have
/// taken the lock, and its fence came with the lost reply: that hold cannot be given back, and
/// stays until its lease ends (never, without one). Not fixable without the reply; loud instead.
struct Unanswered {
    key: Arc<str>,
    sent: Arc<AtomicBool>,
    url: String,
    answered: bool,
}

impl Unanswered {
    fn answered(&mut self) {
        self.answered = true;
    }
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if !self.answered && self.sent.load(Ordering::Acquire) {
            tracing::error!(
                key = %self.key,
                url = %self.url,
                "lockwright: an abandoned acquire was cut off in flight by a runtime shutdown; \
                 if it took the lock, the hold cannot be given back (its fence was in the lost \
                 reply) and stays until its lease ends (never without one) or force_unlock"
            );
        }
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
                sent.store(true, Ordering::Release);
                let reply: Result<Vec<i64>> = backend
                    .eval(
                        &key,
                        &scripts::ACQUIRE,
                        &[&backend.lock_key(&key), &backend.fence_key(&key)],
                        &[
                            &owner.to_string(),
                            &lease_millis(lease),
                            &lease_millis(Some(backend.inner.config.fence_counter_ttl)),
                            &backend.inner.known_holds.ended_fence_arg(&key, owner),
                        ],
                    )
                    .await;
                Some(reply.and_then(|reply| match reply.as_slice() {
                    [1, fence, count] => {
                        let (fence, hold_count) = (
                            Fence(*fence as u64),
                            u32::try_from(*count).unwrap_or(u32::MAX),
                        );
                        Ok(TryAcquire::Acquired { fence, hold_count })
                    }
                    [0, pttl, _] => Ok(TryAcquire::Held {
                        remaining: remaining_from_pttl(*pttl),
                    }),
                    other => Err(LockError::Backend {
                        key: Arc::clone(&key),
                        source: format!("unexpected acquire reply {other:?}").into(),
                    }),
                }))
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
        self.run_with_fallback(
            key,
            backend.release_now(key.into(), owner, fence, scope),
            Some(lost),
        )
    }

    fn force_unlock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            let freed: i64 = backend
                .eval(
                    &key_owned,
                    &scripts::FORCE_UNLOCK,
                    &[&backend.lock_key(&key_owned)],
                    &[&backend.channel(&key_owned)],
                )
                .await?;
            Ok(freed == 1)
        })
    }

    fn inspect<'a>(&'a self, key: &'a str, owner: Owner) -> BoxFuture<'a, Result<LockState>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            let reply: Vec<i64> = backend
                .eval(
                    &key_owned,
                    &scripts::INSPECT,
                    &[&backend.lock_key(&key_owned)],
                    &[&owner.to_string()],
                )
                .await?;
            match reply.as_slice() {
                [0] => Ok(LockState::FREE),
                [1, mine, count, fence, pttl] => Ok(LockState {
                    locked: true,
                    held_by_owner: *mine == 1,
                    hold_count: u32::try_from(*count).unwrap_or(u32::MAX),
                    fence: Some(Fence(*fence as u64)),
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
            let extended: i64 = backend
                .eval(
                    &key_owned,
                    &scripts::EXTEND,
                    &[&backend.lock_key(&key_owned)],
                    &[
                        &owner.to_string(),
                        &fence.0.to_string(),
                        &lease_millis(lease),
                    ],
                )
                .await?;
            Ok(extended == 1)
        })
    }

    fn extend_many<'a>(
        &'a self,
        holds: &'a [RenewHold],
        lease: Duration,
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        let backend = self.clone();
        let holds = holds.to_vec();
        let Some(first) = holds.first() else {
            return Box::pin(async { Ok(Vec::new()) });
        };
        let first_key = Arc::clone(&first.key);
        self.run(&first_key, async move {
            let lease = lease_millis(Some(lease));
            let mut renewed = Vec::with_capacity(holds.len());
            for batch in holds.chunks(RENEW_BATCH) {
                let keys: Vec<String> = batch.iter().map(|h| backend.lock_key(&h.key)).collect();
                let mut args = vec![lease.clone()];
                for hold in batch {
                    args.push(hold.owner.to_string());
                    args.push(hold.fence.0.to_string());
                }
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let live: Vec<i64> = backend
                    .eval(&batch[0].key, &scripts::EXTEND_MANY, &keys, &args)
                    .await?;
                renewed.extend(live.into_iter().map(|live| live == 1));
            }
            Ok(renewed)
        })
    }

    fn default_lease(&self) -> Option<Duration> {
        self.inner.config.default_lease
    }

    fn identity(&self) -> usize {
        Arc::as_ptr(&self.inner) as *const () as usize
    }

    fn listen(&self, key: &str) -> EventListener {
        self.inner.wakeups.stripe(&self.channel(key)).listen()
    }

    fn release_on_drop(&self, key: &str, owner: Owner, fence: Fence) {
        let key: Arc<str> = key.into();
        if self.inner.runtime.is_gone() {
            // The backend's given runtime has shut down: no operation can run on it any more.
            self.release_without_runtime(&key, owner, fence, false);
            return;
        }
        let in_flight = self.pending_until_dropped(&key);
        let backend = self.clone();
        let fallback: Fallback = {
            let (backend, key) = (self.clone(), Arc::clone(&key));
            Box::new(move |polled| backend.release_without_runtime(&key, owner, fence, polled))
        };
        let release = Detachable {
            op: Some(Box::pin(async move {
                let _in_flight = in_flight;
                if backend.inner.runtime.is_gone() {
                    backend.release_without_runtime(&key, owner, fence, false);
                    return;
                }
                let released = backend
                    .release_now(key, owner, Some(fence), ReleaseScope::One)
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
        };
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
