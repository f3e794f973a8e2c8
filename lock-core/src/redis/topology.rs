//! Where the servers are, and the one seam the rest of the backend gets connections through:
//! one server (`redis://`, `rediss://`, a unix socket), the master that Sentinels name, or a
//! Cluster. Each form is read from the configuration once, at connect, into a [`Connector`];
//! the operations above it only see a [`Connection`] that runs commands.

use std::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use event_listener::Event;

use deadpool_redis::redis::{
    self,
    aio::{ConnectionLike, MultiplexedConnection},
    cluster::{ClusterClient, ClusterClientBuilder},
    cluster_async::ClusterConnection,
    Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisFuture, RedisResult, TlsCertificates, Value,
};

use super::config::{RedisConfig, TlsSettings, Topology, UrlRejected};
use super::sentinel::{MasterSettings, Sentinels};
use crate::error::LockError;

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

type BoxError = Box<dyn Error + Send + Sync>;

/// A connection that runs commands, whatever the topology: a multiplexed connection to one
/// server (or to the current master), or a Cluster connection that routes each command to the
/// node serving its key's slot. Cloning shares the connection.
#[derive(Clone)]
pub(super) enum Connection {
    Server(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Server(conn) => conn.req_packed_command(cmd),
            Connection::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Server(conn) => conn.req_packed_commands(cmd, offset, count),
            Connection::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Server(conn) => conn.get_db(),
            Connection::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A connection held by one of the backend's slots. One from the pool goes back to it when
/// the slot lets it go in good order; one found broken or demoted is taken out of the pool.
pub(super) struct Held {
    conn: HeldConn,
    /// The connector's [`Generation`] when the master it goes to was looked up.
    generation: u64,
}

enum HeldConn {
    Pooled(deadpool_redis::Connection),
    Own(Connection),
}

impl Held {
    pub(super) fn connection(&self) -> Connection {
        match &self.conn {
            HeldConn::Pooled(conn) => Connection::Server(MultiplexedConnection::clone(conn)),
            HeldConn::Own(conn) => conn.clone(),
        }
    }

    /// Whether it still goes to the master the Sentinels name (always, for other topologies).
    pub(super) fn is_current(&self, connector: &Connector) -> bool {
        self.generation == connector.generation.current()
    }

    /// Lets the connection go for good: a pooled one is removed from its pool (deadpool would
    /// otherwise hand it out again after a PING, which a demoted master still answers).
    pub(super) fn discard(self) {
        if let HeldConn::Pooled(conn) = self.conn {
            drop(deadpool_redis::Connection::take(conn));
        }
    }
}

/// The Cluster hash slot of a Redis name: CRC16 (XMODEM) of its hash tag, modulo 16384. The
/// backend's names always have a non-empty tag (see `RedisBackend::redis_name`).
pub(super) fn cluster_slot(name: &str) -> u16 {
    let bytes = name.as_bytes();
    let tag = bytes
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let len = bytes[open + 1..].iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &bytes[open + 1..open + 1 + len])
        })
        .unwrap_or(bytes);
    crc16::State::<crc16::XMODEM>::calculate(tag) % 16384
}

/// Which master connections are made for: moved on each time the Sentinels replace the master
/// (`+switch-master`, see `sentinel.rs`) and each time a connection to it breaks
/// ([`Connector::master_may_be_gone`]). A connection made for an earlier generation is dropped
/// before its next use, so nothing more is sent to a master that was replaced, even while it still takes writes
/// (a replaced master stays one until the Sentinels turn it into a replica, a failover timeout or
/// so later, and what it takes meanwhile is lost). Never moves for other topologies.
#[derive(Default)]
pub(super) struct Generation {
    current: AtomicU64,
    changed: Event,
}

impl Generation {
    pub(super) fn current(&self) -> u64 {
        self.current.load(Ordering::Acquire)
    }

    pub(super) fn advance(&self) {
        self.current.fetch_add(1, Ordering::AcqRel);
        self.changed.notify(usize::MAX);
    }

    /// Resolves once the generation is no longer `seen`.
    pub(super) async fn past(&self, seen: u64) {
        loop {
            let listener = self.changed.listen();
            if self.current() != seen {
                return;
            }
            listener.await;
        }
    }
}

/// Makes the connections of one deployment.
pub(super) struct Connector {
    deployment: Deployment,
    pub(super) generation: Generation,
}

// One per backend, made once: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Deployment {
    /// One server, through a deadpool-redis pool.
    Server {
        client: redis::Client,
        pool: deadpool_redis::Pool,
    },
    /// The master the Sentinels name, looked up on every connect.
    Sentinel(Sentinels),
    /// A Cluster; its connection follows the cluster's topology by itself.
    Cluster {
        client: ClusterClient,
        /// For the synchronous release of last resort: its reads are bounded by the command
        /// timeout (the async client's cannot be: see `cluster_builder`).
        blocking: ClusterClient,
        /// What builds it, for the subscriber's RESP3 client.
        nodes: Vec<ConnectionInfo>,
        certs: Option<TlsCertificates>,
        insecure: bool,
        connect_timeout: std::time::Duration,
    },
}

impl Connector {
    /// Reads the configuration into a connector; nothing is contacted yet.
    pub(super) fn new(config: &RedisConfig) -> Result<Self, LockError> {
        let connection = |source: BoxError| LockError::Connection {
            target: config.redacted_url(),
            source,
        };
        let nodes = Nodes::of(config).map_err(connection)?;
        // Before the files are read: these settings are wrong whatever the files hold.
        if config.tls.is_set() && !nodes.tls {
            return Err(LockError::invalid(
                "tls",
                "TLS settings were given, but the URL does not ask for TLS: use `rediss://` \
                 (or `rediss+cluster://`, `rediss+sentinel://`)",
            ));
        }
        if config.tls.accept_invalid_certificates {
            tracing::warn!(
                url = %config.redacted_url(),
                "lockwright: TLS certificate verification is OFF \
                 (danger_accept_invalid_certificates_for_development): anyone on the path can \
                 read and change lock traffic"
            );
        }
        let tls = read_certificates(&config.tls).map_err(connection)?;
        let insecure = config.tls.accept_invalid_certificates;
        let rejected = |err: redis::RedisError| connection(UrlRejected::new(&err).into());
        let deployment = match nodes.form {
            Form::Server(url) => {
                let info = connection_info(&url, insecure).map_err(rejected)?;
                let client = match tls {
                    Some(certs) => redis::Client::build_with_tls(info, certs),
                    None => redis::Client::open(info),
                }
                .map_err(rejected)?;
                let manager = deadpool_redis::Manager::new(client.get_connection_info().clone())
                    .map_err(rejected)?;
                let mut pool_config = deadpool_redis::PoolConfig::new(config.pool_size);
                pool_config.timeouts.create = Some(config.connect_timeout);
                pool_config.timeouts.wait = Some(config.connect_timeout);
                pool_config.timeouts.recycle = Some(config.command_timeout);
                let pool = deadpool_redis::Pool::builder(manager)
                    .config(pool_config)
                    .runtime(deadpool_redis::Runtime::Tokio1)
                    .build()
                    .map_err(|err| connection(err.into()))?;
                Deployment::Server { client, pool }
            }
            Form::Cluster(urls) => {
                let infos = urls
                    .iter()
                    .map(|url| connection_info(url, insecure))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(rejected)?;
                // No retries by the client: it resends a request whose connection broke or
                // timed out, which may have run already, and a lock operation run twice takes
                // or gives back a hold twice. `eval_then_wait` sends again only what the
                // cluster refused without running it (connection.rs, `refused_before_running`).
                let builder =
                    cluster_builder(&infos, &tls, insecure, config.connect_timeout).retries(0);
                let blocking = cluster_builder(&infos, &tls, insecure, config.connect_timeout)
                    .response_timeout(config.command_timeout)
                    .retries(0)
                    .build()
                    .map_err(rejected)?;
                Deployment::Cluster {
                    client: builder.build().map_err(rejected)?,
                    blocking,
                    nodes: infos,
                    certs: tls,
                    insecure,
                    connect_timeout: config.connect_timeout,
                }
            }
            Form::Sentinel {
                master,
                sentinels,
                credentials,
                db,
            } => {
                let infos = sentinels
                    .iter()
                    .map(|url| connection_info(url, insecure))
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(rejected)?;
                let clients = infos
                    .into_iter()
                    .map(|mut info| {
                        if let Some((user, password)) = &config.sentinel_credentials {
                            info.redis.username.clone_from(user);
                            info.redis.password = Some(password.clone());
                        }
                        match &tls {
                            Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
                            None => redis::Client::open(info),
                        }
                    })
                    .collect::<RedisResult<Vec<_>>>()
                    .map_err(rejected)?;
                let (username, password) = match credentials {
                    Some((user, password)) => (user, Some(password)),
                    None => (None, None),
                };
                let master_settings = MasterSettings {
                    redis: RedisConnectionInfo {
                        db,
                        username,
                        password,
                        ..RedisConnectionInfo::default()
                    },
                    tls: nodes.tls.then_some(insecure),
                    certificates: tls,
                };
                Deployment::Sentinel(Sentinels::new(
                    master,
                    clients,
                    master_settings,
                    config.connect_timeout,
                ))
            }
        };
        Ok(Connector {
            deployment,
            generation: Generation::default(),
        })
    }

    /// A RESP3 client of the same cluster whose pushes (sharded messages, unsubscribes,
    /// disconnections) go to `push`, for the wake-up subscriber. `None` on other topologies.
    pub(super) fn cluster_subscriber(
        &self,
        push: impl redis::aio::AsyncPushSender,
    ) -> Option<ClusterClient> {
        let Deployment::Cluster {
            nodes,
            certs,
            insecure,
            connect_timeout,
            ..
        } = &self.deployment
        else {
            return None;
        };
        cluster_builder(nodes, certs, *insecure, *connect_timeout)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push)
            .build()
            .ok()
    }

    pub(super) fn is_cluster(&self) -> bool {
        matches!(self.deployment, Deployment::Cluster { .. })
    }

    /// A new connection (for a cluster, one that reaches every node).
    pub(super) async fn connect(&self) -> Result<Held, BoxError> {
        // Read before the lookup: should the master be replaced while it runs, the connection
        // counts as one to the replaced master.
        let generation = self.generation.current();
        let conn = match &self.deployment {
            Deployment::Server { pool, .. } => HeldConn::Pooled(pool.get().await?),
            Deployment::Sentinel(sentinels) => {
                HeldConn::Own(Connection::Server(sentinels.connect_master().await?.1))
            }
            Deployment::Cluster { client, .. } => {
                HeldConn::Own(Connection::Cluster(client.get_async_connection().await?))
            }
        };
        Ok(Held { conn, generation })
    }

    /// A new connection of its own, not from the pool: its driver task runs on the runtime
    /// this is awaited on (a caller's lane, see `lanes`), where a pooled one may have been made
    /// on another.
    pub(super) async fn connect_own(&self) -> Result<Held, BoxError> {
        let generation = self.generation.current();
        let conn = match &self.deployment {
            Deployment::Server { client, .. } => HeldConn::Own(Connection::Server(
                client.get_multiplexed_async_connection().await?,
            )),
            Deployment::Sentinel(_) | Deployment::Cluster { .. } => return self.connect().await,
        };
        Ok(Held { conn, generation })
    }

    /// The client of the one server, or of the current master (asking the Sentinels). Not for a
    /// cluster, whose clients are per node.
    pub(super) async fn master(&self) -> Result<redis::Client, BoxError> {
        match &self.deployment {
            Deployment::Server { client, .. } => Ok(client.clone()),
            Deployment::Sentinel(sentinels) => Ok(sentinels.connect_master().await?.0),
            Deployment::Cluster { .. } => Err("a cluster has no one master".into()),
        }
    }

    /// A client of every master: the one server, the master the Sentinels name now, or each
    /// master of the cluster (from `CLUSTER NODES`, with the seed nodes' credentials and TLS
    /// settings), for operating tools that must reach every master (`SCAN`, `INFO`). Reads the
    /// cluster's view once: a failover afterwards is not followed.
    pub(super) async fn masters(&self) -> Result<Vec<redis::Client>, BoxError> {
        let Deployment::Cluster {
            client,
            nodes,
            certs,
            ..
        } = &self.deployment
        else {
            return Ok(vec![self.master().await?]);
        };
        let mut conn = client.get_async_connection().await?;
        let listing: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn)
            .await?;
        let seed = nodes.first().ok_or("no cluster nodes given")?;
        let mut masters = Vec::new();
        for (host, port) in cluster_masters(&listing) {
            masters.push(node_client(seed, certs, host, port)?);
        }
        if masters.is_empty() {
            return Err(BadSetting("the cluster lists no master that serves slots".into()).into());
        }
        Ok(masters)
    }

    /// A synchronous connection to the cluster node at `address` (`host:port`, as a `MOVED` or
    /// `ASK` names it), with the seed nodes' credentials and TLS settings, bounded like
    /// [`Self::blocking`]'s: for the release of last resort, which follows a redirection itself.
    pub(super) fn blocking_node(
        &self,
        config: &RedisConfig,
        address: &str,
    ) -> Result<redis::Connection, BoxError> {
        let Deployment::Cluster { nodes, certs, .. } = &self.deployment else {
            return Err("only a cluster redirects".into());
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
            .ok_or_else(|| format!("a redirection to an odd address: {address}"))?;
        let seed = nodes.first().ok_or("no cluster nodes given")?;
        let client = node_client(seed, certs, host.to_owned(), port)?;
        let conn = client.get_connection_with_timeout(config.connect_timeout)?;
        let timeout = Some(config.command_timeout);
        conn.set_read_timeout(timeout)?;
        conn.set_write_timeout(timeout)?;
        Ok(conn)
    }

    /// A connection to the master broke (or answered as a replica): with Sentinel, the master
    /// may be gone or replaced, so every slot looks it up again before its next command instead
    /// of finding out from its own failure. (A timeout is not taken as a sign: a slow server
    /// would make every slot reconnect.) Nothing for other topologies: their connections are
    /// to the one server, or follow the cluster themselves.
    pub(super) fn master_may_be_gone(&self) {
        if let Deployment::Sentinel(_) = self.deployment {
            self.generation.advance();
        }
    }

    /// For Sentinel, until dropped: the watch of the Sentinels' switches (see
    /// [`Sentinels::watch_switches`]). For other topologies it returns at once.
    pub(super) async fn watch_switches(&self, url: &str, command_timeout: Duration) {
        if let Deployment::Sentinel(sentinels) = &self.deployment {
            sentinels
                .watch_switches(&self.generation, url, command_timeout)
                .await;
        }
    }

    /// A synchronous connection for the key's server, for the release of last resort (no
    /// runtime left to run an async one).
    pub(super) fn blocking(&self, config: &RedisConfig) -> Result<BlockingConnection, BoxError> {
        let timeout = Some(config.command_timeout);
        match &self.deployment {
            Deployment::Server { client, .. } => {
                let conn = client.get_connection_with_timeout(config.connect_timeout)?;
                conn.set_read_timeout(timeout)?;
                conn.set_write_timeout(timeout)?;
                Ok(BlockingConnection::Server(conn))
            }
            Deployment::Sentinel(sentinels) => Ok(BlockingConnection::Server(
                sentinels.blocking_master(config.command_timeout)?,
            )),
            Deployment::Cluster { blocking, .. } => {
                // Bounded like the one server's: this runs while threads dropping guards wait.
                let conn = blocking.get_connection()?;
                conn.set_read_timeout(timeout)?;
                conn.set_write_timeout(timeout)?;
                Ok(BlockingConnection::Cluster(Box::new(conn)))
            }
        }
    }
}

/// The (host, port) of each healthy master with slots in a `CLUSTER NODES` listing (lines of
/// `id host:port@bus[,hostname] flags master-id ping pong epoch state slots...`); the announced
/// host name when there is one (a TLS certificate names it), else the address.
fn cluster_masters(listing: &str) -> Vec<(String, u16)> {
    listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            let healthy_master = flags.split(',').any(|flag| flag == "master")
                && !flags
                    .split(',')
                    .any(|flag| matches!(flag, "fail" | "fail?" | "noaddr" | "handshake"));
            if !healthy_master || fields.len() < 9 {
                return None; // a replica, a failed master, or a master without slots
            }
            let (address, hostname) = match fields[1].split_once(',') {
                Some((address, hostname)) => (address, Some(hostname)),
                None => (fields[1], None),
            };
            let address = address.split('@').next()?;
            let (ip, port) = address.rsplit_once(':')?;
            let host = hostname.filter(|name| !name.is_empty()).unwrap_or(ip);
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// A synchronous connection, whatever the topology.
pub(super) enum BlockingConnection {
    Server(redis::Connection),
    Cluster(Box<redis::cluster::ClusterConnection>),
}

impl BlockingConnection {
    pub(super) fn invoke<T: redis::FromRedisValue>(
        &mut self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            BlockingConnection::Server(conn) => invocation.invoke(conn),
            BlockingConnection::Cluster(conn) => invocation.invoke(&mut **conn),
        }
    }
}

/// Every configured form, as node lists.
struct Nodes {
    tls: bool,
    form: Form,
}

enum Form {
    Server(String),
    Cluster(Vec<String>),
    Sentinel {
        master: String,
        sentinels: Vec<String>,
        credentials: Option<(Option<String>, String)>,
        db: i64,
    },
}

/// A URL or certificate file that cannot be used, told in full (it shows no secret).
#[derive(Debug)]
struct BadSetting(String);

impl std::fmt::Display for BadSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for BadSetting {}

impl Nodes {
    fn of(config: &RedisConfig) -> Result<Nodes, BoxError> {
        let is_tls = |url: &str| url.starts_with("rediss://");
        let all_or_none = |urls: &[String], what: &str| -> Result<bool, BoxError> {
            if urls.is_empty() {
                return Err(BadSetting(format!("no {what} given")).into());
            }
            let tls = urls.iter().filter(|url| is_tls(url)).count();
            if tls != 0 && tls != urls.len() {
                return Err(BadSetting(format!(
                    "some {what} use TLS (rediss://) and some do not: all or none"
                ))
                .into());
            }
            Ok(tls != 0)
        };
        match &config.topology {
            Topology::Url(url) => Self::parse(url),
            Topology::Cluster(nodes) => Ok(Nodes {
                tls: all_or_none(nodes, "cluster nodes")?,
                form: Form::Cluster(nodes.clone()),
            }),
            Topology::Sentinel {
                master,
                sentinels,
                master_credentials,
            } => Ok(Nodes {
                tls: all_or_none(sentinels, "sentinels")?,
                form: Form::Sentinel {
                    master: master.clone(),
                    sentinels: sentinels.clone(),
                    credentials: master_credentials.clone(),
                    db: 0,
                },
            }),
        }
    }

    /// `redis+cluster://[userinfo@]h1:p1,h2:p2[/...]` and
    /// `redis+sentinel://[userinfo@]h1:p1,h2:p2/master[/db]` (and their `rediss+` forms) into
    /// node lists; any other URL is one server's.
    fn parse(url: &str) -> Result<Nodes, BoxError> {
        let (form, rest) = match url.split_once("://") {
            Some(("redis+cluster", rest)) => ("redis cluster", rest),
            Some(("rediss+cluster", rest)) => ("rediss cluster", rest),
            Some(("redis+sentinel", rest)) => ("redis sentinel", rest),
            Some(("rediss+sentinel", rest)) => ("rediss sentinel", rest),
            _ => {
                return Ok(Nodes {
                    tls: url.starts_with("rediss://"),
                    form: Form::Server(url.to_owned()),
                })
            }
        };
        let (scheme, kind) = form.split_once(' ').expect("two words");
        // The user info ends at the last `@` (a password may hold `,` or `/`).
        let (userinfo, after) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        // The query (`?protocol=3`, `?password=...`) and any fragment go with each data node's
        // URL, never into a host, the master's name or an error message.
        let (after, query) = match after.find(['?', '#']) {
            Some(at) => (&after[..at], &after[at..]),
            None => (after, ""),
        };
        let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
        let hosts: Vec<&str> = hosts.split(',').filter(|host| !host.is_empty()).collect();
        if hosts.is_empty() {
            return Err(BadSetting(format!("no hosts in the {scheme}+{kind}:// URL")).into());
        }
        let node = |host: &str, with_userinfo: bool, tail: &str| match userinfo {
            Some(userinfo) if with_userinfo => format!("{scheme}://{userinfo}@{host}{tail}"),
            _ => format!("{scheme}://{host}{tail}"),
        };
        let tls = scheme == "rediss";
        if kind == "cluster" {
            let tail = if path.is_empty() {
                query.to_owned()
            } else {
                format!("/{path}{query}")
            };
            return Ok(Nodes {
                tls,
                form: Form::Cluster(hosts.iter().map(|host| node(host, true, &tail)).collect()),
            });
        }
        let mut parts = path.splitn(2, '/');
        let master = parts.next().unwrap_or_default();
        if master.is_empty() {
            return Err(BadSetting(
                "the redis+sentinel:// URL names no master: redis+sentinel://host:port/master_name"
                    .into(),
            )
            .into());
        }
        let db = match parts.next().filter(|db| !db.is_empty()) {
            None => 0,
            Some(db) => db.parse().map_err(|_| {
                BadSetting(
                    "the database after the master's name in the redis+sentinel:// URL is \
                         not a number"
                        .into(),
                )
            })?,
        };
        // The user info is the master's: the Sentinels take theirs from
        // `RedisConfig::sentinel_credentials`. It is read the way redis-rs reads a URL's.
        let credentials = match (userinfo, query) {
            (None, "") => None,
            _ => {
                let info = node(hosts[0], true, query)
                    .into_connection_info()
                    .map_err(|err| UrlRejected::new(&err))?;
                info.redis
                    .password
                    .map(|password| (info.redis.username, password))
            }
        };
        Ok(Nodes {
            tls,
            form: Form::Sentinel {
                master: master.to_owned(),
                sentinels: hosts.iter().map(|host| node(host, false, "")).collect(),
                credentials,
                db,
            },
        })
    }
}

/// A client of the cluster node `host:port`, with the seed node's credentials and TLS settings.
fn node_client(
    seed: &ConnectionInfo,
    certs: &Option<TlsCertificates>,
    host: String,
    port: u16,
) -> RedisResult<redis::Client> {
    let mut info = seed.clone();
    info.addr = match &seed.addr {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host,
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host, port),
    };
    match certs {
        Some(certs) => redis::Client::build_with_tls(info, certs.clone()),
        None => redis::Client::open(info),
    }
}

/// The cluster's client settings. No response timeout: redis-rs would time requests on the
/// caller's runtime, and the blocking API's callers have none; `eval` bounds every operation
/// with the command timeout, on the backend's runtime.
fn cluster_builder(
    nodes: &[ConnectionInfo],
    certs: &Option<TlsCertificates>,
    insecure: bool,
    connect_timeout: std::time::Duration,
) -> ClusterClientBuilder {
    let mut builder = ClusterClientBuilder::new(nodes.to_vec()).connection_timeout(connect_timeout);
    if let Some(certs) = certs {
        builder = builder.certs(certs.clone());
    }
    if insecure {
        builder = builder.tls(redis::TlsMode::Insecure);
    }
    builder
}

/// A URL as redis-rs reads it, with certificate verification off when asked.
fn connection_info(url: &str, insecure: bool) -> RedisResult<ConnectionInfo> {
    let mut info = url.into_connection_info()?;
    if let ConnectionAddr::TcpTls {
        insecure: no_verify,
        ..
    } = &mut info.addr
    {
        *no_verify |= insecure;
    }
    Ok(info)
}

/// The CA and client certificate files, read and checked now, so that a missing, unreadable or
/// unusable one is reported at connect, naming the file (redis-rs would only say that the
/// certificates were refused, through the URL's error). The key's contents are never shown.
fn read_certificates(tls: &TlsSettings) -> Result<Option<TlsCertificates>, BoxError> {
    let root_cert = match &tls.ca_file {
        Some(path) => {
            let bytes = read_certificate_file("CA file", path)?;
            let mut roots = rustls::RootCertStore::empty();
            for certificate in CertificateDer::pem_slice_iter(&bytes) {
                // Parsed in read_certificate_file.
                let certificate = certificate.map_err(|err| unusable("CA file", path, &err))?;
                roots
                    .add(certificate)
                    .map_err(|err| unusable("CA file", path, &err))?;
            }
            Some(bytes)
        }
        None => None,
    };
    let client_tls = match &tls.client_certificate {
        Some((certificate, key)) => {
            let client_cert = read_certificate_file("client certificate", certificate)?;
            let client_key = read_pem("client key", key)?;
            if let Err(err) = PrivateKeyDer::from_pem_slice(&client_key) {
                return Err(match err {
                    rustls::pki_types::pem::Error::NoItemsFound => BadSetting(format!(
                        "the client key {} holds no private key",
                        key.display()
                    ))
                    .into(),
                    err => unusable("client key", key, &err),
                });
            }
            Some(redis::ClientTlsConfig {
                client_cert,
                client_key,
            })
        }
        None => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// A PEM file's bytes; a missing or unreadable file, or one without a PEM section, is an error
/// naming it.
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>, BoxError> {
    let bytes = std::fs::read(path)
        .map_err(|err| BadSetting(format!("cannot read the {what} {}: {err}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(BadSetting(format!("the {what} {} holds no PEM data", path.display())).into());
    }
    Ok(bytes)
}

/// A PEM file that holds at least one certificate, and no broken PEM section.
fn read_certificate_file(what: &str, path: &Path) -> Result<Vec<u8>, BoxError> {
    let bytes = read_pem(what, path)?;
    let mut certificates = 0;
    for certificate in CertificateDer::pem_slice_iter(&bytes) {
        certificate.map_err(|err| unusable(what, path, &err))?;
        certificates += 1;
    }
    if certificates == 0 {
        return Err(BadSetting(format!(
            "the {what} {} holds no certificate (no `BEGIN CERTIFICATE` section)",
            path.display()
        ))
        .into());
    }
    Ok(bytes)
}

fn unusable(what: &str, path: &Path, err: &dyn std::fmt::Display) -> BoxError {
    BadSetting(format!(
        "the {what} {} cannot be used: {err}",
        path.display()
    ))
    .into()
}

/// A connection that failed in the TLS handshake, with what to check first.
#[derive(Debug)]
pub(super) struct TlsFailure {
    hint: String,
    source: BoxError,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS handshake failed: {}; {}", self.hint, self.source)
    }
}

impl Error for TlsFailure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// `err`, with a hint in plain words when it is a TLS failure: rustls names the reason
/// (`UnknownIssuer`, `CertificateRequired`...), not what in the settings to look at.
pub(super) fn explain_tls_failure(err: BoxError, tls: &TlsSettings) -> BoxError {
    use rustls::{AlertDescription as Alert, CertificateError as Cert};
    let Some(failure) = rustls_error(&*err) else {
        return err;
    };
    let hint = match failure {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => match &tls.ca_file {
            Some(ca) => format!(
                "the server's certificate is not signed by the CA in {} (tls_ca_file)",
                ca.display()
            ),
            None => "the server's certificate is not signed by a CA of the system's roots: give \
                     its CA with tls_ca_file"
                .to_owned(),
        },
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => "the server's certificate is not for the host in the URL: connect by a name it \
              holds, or give the server a certificate for this one"
            .to_owned(),
        rustls::Error::InvalidCertificate(
            Cert::Expired
            | Cert::ExpiredContext { .. }
            | Cert::NotValidYet
            | Cert::NotValidYetContext { .. },
        ) => "the server's certificate has expired or is not valid yet (or a clock is off)"
            .to_owned(),
        rustls::Error::InvalidCertificate(_) => "the server's certificate was refused".to_owned(),
        rustls::Error::AlertReceived(
            alert @ (Alert::CertificateRequired
            | Alert::HandshakeFailure
            | Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateUnknown
            | Alert::DecryptError
            | Alert::AccessDenied),
        ) => match &tls.client_certificate {
            None if matches!(alert, Alert::CertificateRequired | Alert::HandshakeFailure) => {
                "the server asks for a client certificate (tls-auth-clients): give one with \
                 tls_client_certificate"
                    .to_owned()
            }
            None => "the server refused the handshake".to_owned(),
            Some((certificate, _)) => format!(
                "the server refused the client certificate {} (tls_client_certificate): its \
                 CA must be one the server trusts (tls-ca-cert-file)",
                certificate.display()
            ),
        },
        _ => "the TLS handshake failed".to_owned(),
    };
    Box::new(TlsFailure { hint, source: err })
}

/// The rustls error in `err`'s chain, if any (redis-rs hands it over inside an `io::Error`).
fn rustls_error<'a>(err: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        let inner = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if inner.is_some() {
            return inner;
        }
        next = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::cluster_masters;

    #[test]
    fn cluster_masters_are_the_healthy_masters_with_slots_by_announced_name() {
        let listing = "\
a1 10.0.0.1:7000@17000,node-1.internal myself,master - 0 0 1 connected 0-5460
b2 10.0.0.2:7000@17000 master - 0 0 2 connected 5461-10922
c3 10.0.0.3:7000@17000 master,fail - 0 0 3 connected 10923-16383
d4 10.0.0.4:7000@17000 slave b2 0 0 2 connected
e5 10.0.0.5:7000@17000 master - 0 0 0 connected
";
        assert_eq!(
            cluster_masters(listing),
            [
                ("node-1.internal".to_owned(), 7000),
                ("10.0.0.2".to_owned(), 7000)
            ]
        );
    }
}
