//! Settings of the Redis backend: `RedisConfig`, and the redaction that keeps passwords out of
//! `Debug`, errors and logs.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use deadpool_redis::redis::RedisError;

#[cfg(doc)]
use super::RedisBackend;
use crate::duration::IntoLockDuration;
use crate::error::Result;
#[cfg(doc)]
use crate::LockError;

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
    pub(super) topology: Topology,
    pub(super) tls: TlsSettings,
    pub(super) sentinel_credentials: Option<(Option<String>, String)>,
    pub(super) pool_size: usize,
    pub(super) prefix: String,
    pub(super) connect_timeout: Duration,
    pub(super) command_timeout: Duration,
    pub(super) default_lease: Option<Duration>,
    pub(super) fence_counter_ttl: Duration,
    pub(super) wait_replicas: Option<WaitReplicas>,
    pub(super) runtime: Option<tokio::runtime::Handle>,
    /// py-cachify mode (see `py_cachify.rs`), when set.
    pub(super) py_cachify: Option<super::py_cachify::PyCachify>,
}

/// [`RedisConfig::wait_replicas`]: how many replicas must acknowledge a hold's write, and how
/// long the master waits for them.
#[derive(Clone, Copy, Debug)]
pub(super) struct WaitReplicas {
    pub(super) replicas: usize,
    pub(super) timeout: Duration,
}

impl WaitReplicas {
    /// `WAIT`'s timeout: whole milliseconds, rounded up, at least 1 (`0` would wait forever).
    pub(super) fn millis(&self) -> u64 {
        u64::try_from(self.timeout.as_nanos().div_ceil(1_000_000))
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

impl RedisConfig {
    /// The largest [`pool_size`](RedisConfig::pool_size): each connection is a socket and a
    /// slot of per-key ordering, and more than this only adds load on the server.
    pub const MAX_POOL_SIZE: usize = 1024;

    /// The key prefix of every Redis name and channel unless [`prefix`](RedisConfig::prefix)
    /// sets another: `lockwright:`.
    ///
    /// ```
    /// assert_eq!(lock_core::RedisConfig::DEFAULT_PREFIX, "lockwright:");
    /// ```
    pub const DEFAULT_PREFIX: &'static str = "lockwright:";

    /// Settings for the deployment at `url`, in any form, so one `REDIS_URL`-style setting picks
    /// the topology:
    /// - one server: `redis://[user:password@]host[:port][/db]`, `rediss://...` (TLS, see
    ///   [`tls_ca_file`](RedisConfig::tls_ca_file)), `redis+unix:///path/to/socket` or
    ///   `unix:///path/to/socket`;
    /// - a Cluster: `redis+cluster://[user:password@]host1:port1,host2:port2` (seed nodes;
    ///   `rediss+cluster://` for TLS), as [`RedisConfig::cluster`];
    /// - Sentinel: `redis+sentinel://[user:password@]host1:port1,host2:port2/master_name`
    ///   (`rediss+sentinel://` for TLS to the servers and the sentinels), as
    ///   [`RedisConfig::sentinel`]; the user and password are the master's.
    ///
    /// The URL is read when connecting: a malformed one is a [`LockError::Connection`] then.
    ///
    /// Defaults: pool of 2 connections, key prefix `lockwright:`, 5 s connect and command
    /// timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        RedisConfig {
            topology: Topology::Url(url),
            tls: TlsSettings::default(),
            sentinel_credentials: None,
            pool_size: 2,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            connect_timeout: Duration::from_secs(5),
            command_timeout: Duration::from_secs(5),
            default_lease: None,
            fence_counter_ttl: Duration::from_secs(600),
            py_cachify: None,
            wait_replicas: None,
            runtime: None,
        }
    }

    /// Settings for a Redis Cluster reached through these seed nodes (`redis://host:port`,
    /// with user and password as in [`RedisConfig::new`]; `rediss://` for TLS). The rest of the
    /// nodes is discovered from them, and followed through slot migrations and failovers. An
    /// operation the cluster refused without running it (`MOVED`, `ASK`, `TRYAGAIN`,
    /// `CLUSTERDOWN`...) is sent again after a pause, within the command timeout; one whose
    /// connection broke is not (it may have run), and fails with
    /// [`LockError::Backend`](crate::LockError::Backend).
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::cluster(["redis://:pw@10.0.0.1:7000", "redis://:pw@10.0.0.2:7000"]);
    /// assert_eq!(
    ///     config.redacted_url(),
    ///     "cluster redis://:***@10.0.0.1:7000,redis://:***@10.0.0.2:7000"
    /// );
    /// // The same, from one URL:
    /// let config = RedisConfig::new("redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000");
    /// assert_eq!(config.redacted_url(), "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:7000");
    /// ```
    pub fn cluster<I, S>(nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        let mut config = Self::new(String::new());
        config.topology = Topology::Cluster(nodes);
        config
    }

    /// Settings for the master that these Sentinels (`redis://host:port` each) know as
    /// `master_name`. Connections go to the current master, found through the Sentinels on
    /// every (re)connect. The backend listens to the Sentinels' `+switch-master` announcements:
    /// once they replace the master, no further command goes to the old one (which takes writes
    /// for a while still, until the Sentinels turn it into a replica, and loses them then); its
    /// connections are dropped and the wake-up subscriber moves to the new master. A connection
    /// that finds itself talking to a demoted master anyway (`READONLY`) is dropped, and the
    /// operation retried once on the master a fresh lookup finds. The master's user and
    /// password go in [`RedisConfig::sentinel_master_credentials`] (or in the
    /// `redis+sentinel://` URL form); the Sentinels' own, if they need one, in
    /// [`RedisConfig::sentinel_credentials`].
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::sentinel("mymaster", ["redis://10.0.0.1:26379"])
    ///     .sentinel_master_credentials(None, "secret");
    /// assert_eq!(
    ///     config.redacted_url(),
    ///     "sentinel master \"mymaster\" via redis://10.0.0.1:26379"
    /// );
    /// assert!(!format!("{config:?}").contains("secret"));
    /// // The same, from one URL:
    /// let config = RedisConfig::new("redis+sentinel://:secret@10.0.0.1:26379/mymaster");
    /// assert!(!config.redacted_url().contains("secret"));
    /// ```
    pub fn sentinel<I, S>(master_name: impl Into<String>, sentinels: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let sentinels: Vec<String> = sentinels.into_iter().map(Into::into).collect();
        let mut config = Self::new(String::new());
        config.topology = Topology::Sentinel {
            master: master_name.into(),
            sentinels,
            master_credentials: None,
        };
        config
    }

    /// The master's ACL user (or `None`) and password, for [`RedisConfig::sentinel`] (the
    /// `redis+sentinel://user:password@...` form sets them from the URL). Never shown in
    /// `Debug`, errors or logs.
    pub fn sentinel_master_credentials(
        mut self,
        user: Option<&str>,
        password: impl Into<String>,
    ) -> Self {
        if let Topology::Sentinel {
            master_credentials, ..
        } = &mut self.topology
        {
            *master_credentials = Some((user.map(str::to_owned), password.into()));
        }
        self
    }

    /// The Sentinels' own ACL user (or `None`) and password, when they require one
    /// (`requirepass` in sentinel.conf). Never shown in `Debug`, errors or logs.
    pub fn sentinel_credentials(mut self, user: Option<&str>, password: impl Into<String>) -> Self {
        self.sentinel_credentials = Some((user.map(str::to_owned), password.into()));
        self
    }

    /// Trusts the certificate authorities in this PEM file for `rediss://` connections, instead
    /// of the system's roots (the default): for a server whose certificate a private CA signed.
    /// The server's certificate must still name the URL's host (a DNS name or an IP address).
    ///
    /// The file is read when connecting: a missing or unreadable file, one without PEM, or one
    /// that holds no certificate is a [`LockError::Connection`] naming the file; so is a server
    /// whose certificate these CAs did not sign (`UnknownIssuer`), or whose certificate is for
    /// another name. With a URL that does not ask for TLS (`redis://`), connecting fails with
    /// [`LockError::InvalidArgument`].
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("rediss://redis.internal:6380").tls_ca_file("/etc/redis/ca.pem");
    /// ```
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.ca_file = Some(path.into());
        self
    }

    /// Presents this client certificate and its private key (PEM files) to servers that ask for
    /// one (mutual TLS: `tls-auth-clients yes`). Read when connecting, like
    /// [`tls_ca_file`](RedisConfig::tls_ca_file): a missing file, a certificate file without a
    /// certificate or a key file without a private key is a [`LockError::Connection`] naming the
    /// file (never showing the key). A server that asks for a certificate and gets none, or
    /// refuses this one, is a [`LockError::Connection`] at connect that says so.
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("rediss://redis.internal:6380")
    ///     .tls_ca_file("/etc/redis/ca.pem")
    ///     .tls_client_certificate("/etc/myapp/client.pem", "/etc/myapp/client-key.pem");
    /// ```
    pub fn tls_client_certificate(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.client_certificate = Some((certificate.into(), key.into()));
        self
    }

    /// **Development only**: accepts any server certificate, whoever signed it and whatever
    /// name it has. Anyone between the client and the server can then read and change lock
    /// traffic, and pose as the server; connecting logs a `tracing` warning each time. Never use
    /// it in production: give the CA with [`tls_ca_file`](RedisConfig::tls_ca_file) instead.
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// // A local server with a self-signed certificate, on a developer's machine.
    /// let config = RedisConfig::new("rediss://localhost:6380")
    ///     .danger_accept_invalid_certificates_for_development();
    /// ```
    pub fn danger_accept_invalid_certificates_for_development(mut self) -> Self {
        self.tls.accept_invalid_certificates = true;
        self
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

    /// Confirms every hold with its replicas: an acquire, each watchdog renewal, and each
    /// [`extend`](crate::LockGuard::extend) or [`persist`](crate::LockGuard::persist) succeed
    /// only once `replicas` replicas have acknowledged the write (`WAIT replicas timeout`, sent
    /// on the connection that carried it), within `timeout`.
    ///
    /// Why: replication is asynchronous. Without it, a hold the master acknowledged but had not
    /// yet sent to a replica when it died is lost when Sentinel promotes that replica, and
    /// another client acquires the key there while the first still believes it holds it. With
    /// it, an acquire the replicas do not confirm in time is undone (released with its owner and
    /// fence, as an acquire cancelled mid-way is) and fails with
    /// [`LockError::NotReplicated`]; an unconfirmed renewal counts as failed (the hold is
    /// declared lost when its lease could end, as for any failed renewal); an unconfirmed
    /// `extend`/`persist` returns `NotReplicated` (the master did extend it; the error says the
    /// extension may not survive a failover).
    ///
    /// What it does not buy: `WAIT` is not consensus. A failover may still promote a replica
    /// that missed the write (Sentinel picks among the replicas by priority and replication
    /// offset, not by which acknowledged what), a replica that acknowledged may lose the write
    /// in its own restart, and an undo that fails (the master died meanwhile) leaves a hold
    /// nobody owns until its lease ends. Fences still protect the resource (GUARANTEES.md).
    ///
    /// Cost: each confirmed write waits for a replica round trip, and `WAIT` blocks the
    /// connection it is sent on: the backend's connections are shared (multiplexed) by every
    /// operation on the keys of their slot, so those wait too, up to `timeout` when the replicas
    /// are slow or gone. Keep `timeout` short (well under the command timeout and the leases),
    /// and a [`pool_size`](RedisConfig::pool_size) large enough that one slow `WAIT` holds up
    /// few keys. Releases are not confirmed (a lost release leaves a hold that ends with its
    /// lease, and its owner will not re-enter it). On a Cluster, `WAIT` goes to every primary,
    /// so each needs `replicas` replicas.
    ///
    /// ```
    /// use lock_core::RedisConfig;
    ///
    /// let config = RedisConfig::new("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster")
    ///     .wait_replicas(1, 0.1)?;
    /// # Ok::<(), lock_core::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::InvalidArgument`] for 0 replicas or an invalid timeout.
    pub fn wait_replicas(
        mut self,
        replicas: usize,
        timeout: impl IntoLockDuration,
    ) -> Result<Self> {
        if replicas == 0 {
            return Err(crate::error::LockError::invalid(
                "wait replicas",
                "0 replicas confirm nothing: leave wait_replicas out instead",
            ));
        }
        let timeout = timeout.into_lock_duration("wait replicas timeout")?;
        self.wait_replicas = Some(WaitReplicas { replicas, timeout });
        Ok(self)
    }

    /// The lease of holds acquired without `exp` on this backend (renewed by the watchdog every
    /// third of it), instead of the global [`default_lease`](crate::default_lease). It bounds how
    /// long a crashed process's locks outlive it.
    pub fn default_lease(mut self, lease: impl IntoLockDuration) -> Result<Self> {
        self.default_lease = Some(lease.into_lock_duration("default lease")?);
        Ok(self)
    }

    /// How many multiplexed connections the backend keeps (default 2). Operations on one key
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

    /// Runs all of the backend's Redis I/O (its connections' driver tasks, the pub/sub
    /// subscriber, the lease watchdog's renewals, guards' releases on drop and the command
    /// timeouts' timer) on this multi-thread tokio runtime instead of on a one-thread runtime of
    /// its own.
    ///
    /// Without it, tasks of a multi-thread runtime already do their own operations' I/O on that
    /// runtime (a lane of their own, see [`RedisBackend`](super::RedisBackend)); with it, so does
    /// the rest, and no thread of the backend's own runs at all. Pass the runtime your tasks run
    /// on (the figures are in BENCHMARKS.md). In exchange the backend works only while that runtime runs: once it
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
        let list = |urls: &[String]| urls.iter().map(|url| redact(url)).collect::<Vec<_>>();
        match &self.topology {
            Topology::Url(url) => redact(url),
            Topology::Cluster(nodes) => format!("cluster {}", list(nodes).join(",")),
            Topology::Sentinel {
                master, sentinels, ..
            } => format!(
                "sentinel master {master:?} via {}",
                list(sentinels).join(",")
            ),
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("tls", &self.tls)
            .field(
                "sentinel_credentials",
                &self.sentinel_credentials.as_ref().map(|_| "***"),
            )
            .field("pool_size", &self.pool_size)
            .field("prefix", &self.prefix)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("default_lease", &self.default_lease)
            .field("fence_counter_ttl", &self.fence_counter_ttl)
            .field("wait_replicas", &self.wait_replicas)
            .field("own_runtime", &self.runtime.is_none())
            .field("py_cachify", &self.py_cachify)
            .finish()
    }
}

/// How the configuration names the deployment. The URL form is read at connect (see
/// `topology.rs`), where every form becomes one list of nodes.
#[derive(Clone)]
pub(super) enum Topology {
    Url(String),
    Cluster(Vec<String>),
    Sentinel {
        master: String,
        sentinels: Vec<String>,
        /// The master's (user, password), set apart from the Sentinels' URLs.
        master_credentials: Option<(Option<String>, String)>,
    },
}

/// Certificates for `rediss://`, read when connecting.
#[derive(Clone, Debug, Default)]
pub(super) struct TlsSettings {
    pub(super) ca_file: Option<PathBuf>,
    pub(super) client_certificate: Option<(PathBuf, PathBuf)>,
    pub(super) accept_invalid_certificates: bool,
}

impl TlsSettings {
    pub(super) fn is_set(&self) -> bool {
        self.ca_file.is_some()
            || self.client_certificate.is_some()
            || self.accept_invalid_certificates
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
pub(super) fn redact(url: &str) -> String {
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
pub(super) fn userinfo_secret(url: &str) -> Option<std::ops::Range<usize>> {
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
pub(super) fn query_credential(url: &str) -> Option<usize> {
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

pub(super) fn percent_decode(text: &str) -> Vec<u8> {
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
pub(super) struct UrlRejected(pub(super) String);

impl UrlRejected {
    pub(super) fn new(err: &RedisError) -> Self {
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
