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

enum Deployment {
    /// One server, through a deadpool-redis pool.
    Server {
        client: redis::Client,
        pool: deadpool_redis::Pool,
    },
    /// The master the Sentinels name, looked up on every connect.
    Sentinel(Sentinels),
    /// A Cluster; its connection follows the cluster's topology by itself.
    Cluster(ClusterClient),
}

impl Connector {
    /// Reads the configuration into a connector; nothing is contacted yet.
    pub(super) fn new(config: &RedisConfig) -> Result<Self, LockError> {
        let connection = |source: BoxError| LockError::Connection {
            target: config.redacted_url(),
            source,
        };
        let nodes = Nodes::of(config).map_err(connection)?;
        let tls = read_certificates(&config.tls).map_err(connection)?;
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
                let mut builder = ClusterClientBuilder::new(infos)
                    .connection_timeout(config.connect_timeout)
                    .response_timeout(config.command_timeout);
                if let Some(certs) = tls {
                    builder = builder.certs(certs);
                }
                if insecure {
                    builder = builder.tls(redis::TlsMode::Insecure);
                }
                Deployment::Cluster(builder.build().map_err(rejected)?)
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
            Deployment::Cluster(client) => {
                HeldConn::Own(Connection::Cluster(client.get_async_connection().await?))
            }
        };
        Ok(Held { conn, generation })
    }

    /// The client of the one server, or of the current master (asking the Sentinels). Not for a
    /// cluster, whose clients are per node.
    pub(super) async fn master(&self) -> Result<redis::Client, BoxError> {
        match &self.deployment {
            Deployment::Server { client, .. } => Ok(client.clone()),
            Deployment::Sentinel(sentinels) => Ok(sentinels.connect_master().await?.0),
            Deployment::Cluster(_) => Err("a cluster has no one master".into()),
        }
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
            Deployment::Cluster(client) => Ok(BlockingConnection::Cluster(Box::new(
                client.get_connection()?,
            ))),
        }
    }
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

#[derive(Debug)]
struct BadUrl(String);

impl std::fmt::Display for BadUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for BadUrl {}

impl Nodes {
    fn of(config: &RedisConfig) -> Result<Nodes, BoxError> {
        let is_tls = |url: &str| url.starts_with("rediss://");
        let all_or_none = |urls: &[String], what: &str| -> Result<bool, BoxError> {
            if urls.is_empty() {
                return Err(BadUrl(format!("no {what} given")).into());
            }
            let tls = urls.iter().filter(|url| is_tls(url)).count();
            if tls != 0 && tls != urls.len() {
                return Err(BadUrl(format!(
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
        let (hosts, path) = after.split_once('/').unwrap_or((after, ""));
        let hosts: Vec<&str> = hosts.split(',').filter(|host| !host.is_empty()).collect();
        if hosts.is_empty() {
            return Err(BadUrl(format!("no hosts in the {scheme}+{kind}:// URL")).into());
        }
        let node = |host: &str, with_userinfo: bool, tail: &str| match userinfo {
            Some(userinfo) if with_userinfo => format!("{scheme}://{userinfo}@{host}{tail}"),
            _ => format!("{scheme}://{host}{tail}"),
        };
        let tls = scheme == "rediss";
        if kind == "cluster" {
            let tail = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            return Ok(Nodes {
                tls,
                form: Form::Cluster(hosts.iter().map(|host| node(host, true, &tail)).collect()),
            });
        }
        let mut parts = path.splitn(2, '/');
        let master = parts.next().unwrap_or_default();
        if master.is_empty() {
            return Err(BadUrl(
                "the redis+sentinel:// URL names no master: redis+sentinel://host:port/master_name"
                    .into(),
            )
            .into());
        }
        let db = match parts.next().filter(|db| !db.is_empty()) {
            None => 0,
            Some(db) => db
                .parse()
                .map_err(|_| BadUrl(format!("{db:?} is not a database number")))?,
        };
        // The user info is the master's: the Sentinels take theirs from
        // `RedisConfig::sentinel_credentials`. It is read the way redis-rs reads a URL's.
        let credentials = match userinfo {
            None => None,
            Some(_) => {
                let info = node(hosts[0], true, "")
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

/// The CA and client certificate files, read now so a missing one is reported at connect.
fn read_certificates(tls: &TlsSettings) -> Result<Option<TlsCertificates>, BoxError> {
    let read = |what: &str, path: &Path| -> Result<Vec<u8>, BoxError> {
        let bytes = std::fs::read(path)
            .map_err(|err| BadUrl(format!("cannot read the {what} {}: {err}", path.display())))?;
        if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            return Err(BadUrl(format!("the {what} {} holds no PEM data", path.display())).into());
        }
        Ok(bytes)
    };
    let root_cert = match &tls.ca_file {
        Some(path) => Some(read("CA file", path)?),
        None => None,
    };
    let client_tls = match &tls.client_certificate {
        Some((certificate, key)) => Some(redis::ClientTlsConfig {
            client_cert: read("client certificate", certificate)?,
            client_key: read("client key", key)?,
        }),
        None => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}
