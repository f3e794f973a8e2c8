//! The master that Sentinels name: found by asking them in turn (the one that answered last
//! first), each answer checked with `ROLE` on the master itself, so a Sentinel that has not heard
//! of a failover yet (they learn of one from each other, within seconds) costs one more question,
//! not a failed operation. And the watch of their `+switch-master` announcements, which moves
//! the connector's [`Generation`] on when the master is replaced.

use std::error::Error;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use deadpool_redis::redis::{
    self, aio::MultiplexedConnection, ConnectionAddr, ConnectionInfo, RedisConnectionInfo,
    RedisError, TlsCertificates, Value,
};
use futures_util::StreamExt;

use super::connection::TimeoutError;
use super::subscriber::SUBSCRIBER_KEEPALIVE;
use super::topology::Generation;

type BoxError = Box<dyn Error + Send + Sync>;

/// The Sentinels' channel announcing a new master: `<name> <old ip> <old port> <new ip> <new
/// port>`.
const SWITCH_MASTER: &str = "+switch-master";

/// How to reach the master once a Sentinel has named it.
pub(super) struct MasterSettings {
    /// Database, user and password.
    pub(super) redis: RedisConnectionInfo,
    /// `Some(accept invalid certificates)` for TLS.
    pub(super) tls: Option<bool>,
    pub(super) certificates: Option<TlsCertificates>,
}

pub(super) struct Sentinels {
    /// One client per Sentinel, with the Sentinels' own credentials and TLS.
    sentinels: Vec<redis::Client>,
    master_name: String,
    master: MasterSettings,
    /// The Sentinel that named the master last: asked first next time.
    preferred: AtomicUsize,
    /// The master found by the last lookup, for the synchronous last-resort release.
    last_master: Mutex<Option<redis::Client>>,
    /// For each Sentinel, and for the master it names.
    connect_timeout: Duration,
}

/// No Sentinel named a master that answered as one.
#[derive(Debug)]
struct NoMaster {
    master_name: String,
    /// What each Sentinel said (no passwords: addresses and server errors only).
    answers: Vec<String>,
}

impl fmt::Display for NoMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach the master {:?} through any Sentinel: {}",
            self.master_name,
            self.answers.join("; ")
        )
    }
}

impl Error for NoMaster {}

/// A Sentinel's answer that does not lead to the master.
#[derive(Debug)]
struct NotTheMaster(String);

impl fmt::Display for NotTheMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for NotTheMaster {}

impl Sentinels {
    pub(super) fn new(
        master_name: String,
        sentinels: Vec<redis::Client>,
        master: MasterSettings,
        connect_timeout: Duration,
    ) -> Self {
        Sentinels {
            sentinels,
            master_name,
            master,
            preferred: AtomicUsize::new(0),
            last_master: Mutex::new(None),
            connect_timeout,
        }
    }

    fn master_client(&self, host: String, port: u16) -> redis::RedisResult<redis::Client> {
        let addr = match self.master.tls {
            Some(insecure) => ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                tls_params: None,
            },
            None => ConnectionAddr::Tcp(host, port),
        };
        let info = ConnectionInfo {
            addr,
            redis: self.master.redis.clone(),
        };
        match &self.master.certificates {
            Some(certificates) => redis::Client::build_with_tls(info, certificates.clone()),
            None => redis::Client::open(info),
        }
    }

    /// The Sentinels in the order to ask them: the one that answered last first.
    fn in_turn(&self) -> impl Iterator<Item = usize> + '_ {
        let count = self.sentinels.len();
        let first = self.preferred.load(Ordering::Relaxed) % count;
        (0..count).map(move |i| (first + i) % count)
    }

    fn remember(&self, index: usize, master: &redis::Client) {
        self.preferred.store(index, Ordering::Relaxed);
        *self.last_master.lock().unwrap_or_else(|p| p.into_inner()) = Some(master.clone());
    }

    fn sentinel_address(&self, index: usize) -> String {
        address(&self.sentinels[index]).map_or_else(
            || format!("sentinel {index}"),
            |(host, port)| format!("{host}:{port}"),
        )
    }

    /// Asks the Sentinels in turn for the master, each within the connect timeout, and returns
    /// a connection to the first master named that says it is one.
    pub(super) async fn connect_master(
        &self,
    ) -> Result<(redis::Client, MultiplexedConnection), BoxError> {
        let mut answers = Vec::new();
        for index in self.in_turn() {
            match tokio::time::timeout(self.connect_timeout, self.ask(index)).await {
                Ok(Ok((client, conn))) => {
                    self.remember(index, &client);
                    return Ok((client, conn));
                }
                Ok(Err(err)) => answers.push(format!("{}: {err}", self.sentinel_address(index))),
                Err(_) => answers.push(format!(
                    "{}: {}",
                    self.sentinel_address(index),
                    TimeoutError(self.connect_timeout)
                )),
            }
        }
        Err(NoMaster {
            master_name: self.master_name.clone(),
            answers,
        }
        .into())
    }

    async fn ask(&self, index: usize) -> Result<(redis::Client, MultiplexedConnection), BoxError> {
        let mut sentinel = self.sentinels[index]
            .get_multiplexed_async_connection()
            .await?;
        let named: Option<(String, u16)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.master_name)
            .query_async(&mut sentinel)
            .await?;
        let (host, port) = named
            .ok_or_else(|| NotTheMaster(format!("knows no master named {:?}", self.master_name)))?;
        let named = format!("{host}:{port}");
        let reached = async {
            let client = self.master_client(host, port)?;
            let mut master = client.get_multiplexed_async_connection().await?;
            let role = redis::cmd("ROLE").query_async(&mut master).await;
            check_role(role)?;
            Ok::<_, BoxError>((client, master))
        };
        reached
            .await
            .map_err(|err| NotTheMaster(format!("names {named}, which {err}")).into())
    }

    /// A synchronous connection to the master, for the release of last resort (no runtime left
    /// to run the lookup above): the master last found if it still says it is one, else the
    /// first one a Sentinel names that does, each step within the connect and command timeouts.
    pub(super) fn blocking_master(
        &self,
        command_timeout: Duration,
    ) -> Result<redis::Connection, BoxError> {
        let connect = |client: &redis::Client| -> Result<redis::Connection, BoxError> {
            let mut conn = client.get_connection_with_timeout(self.connect_timeout)?;
            conn.set_read_timeout(Some(command_timeout))?;
            conn.set_write_timeout(Some(command_timeout))?;
            let role = redis::cmd("ROLE").query(&mut conn);
            check_role(role)?;
            Ok(conn)
        };
        let last = self
            .last_master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut answers = Vec::new();
        if let Some(client) = last {
            match connect(&client) {
                Ok(conn) => return Ok(conn),
                Err(err) => answers.push(format!("the master last found: {err}")),
            }
        }
        for index in self.in_turn() {
            let asked = || -> Result<redis::Connection, BoxError> {
                let sentinel = &self.sentinels[index];
                let mut conn = sentinel.get_connection_with_timeout(self.connect_timeout)?;
                conn.set_read_timeout(Some(command_timeout))?;
                conn.set_write_timeout(Some(command_timeout))?;
                let named: Option<(String, u16)> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(&self.master_name)
                    .query(&mut conn)?;
                let (host, port) = named.ok_or_else(|| {
                    NotTheMaster(format!("knows no master named {:?}", self.master_name))
                })?;
                let named = format!("{host}:{port}");
                let client = self.master_client(host, port)?;
                let conn = connect(&client)
                    .map_err(|err| NotTheMaster(format!("names {named}, which {err}")))?;
                self.remember(index, &client);
                Ok(conn)
            };
            match asked() {
                Ok(conn) => return Ok(conn),
                Err(err) => answers.push(format!("{}: {err}", self.sentinel_address(index))),
            }
        }
        Err(NoMaster {
            master_name: self.master_name.clone(),
            answers,
        }
        .into())
    }

    /// Until dropped: listens to one Sentinel's `+switch-master` at a time (the next one when it
    /// fails or stops answering PING), and moves `generation` on when our master is replaced, so
    /// operations and the wake-up subscriber leave the replaced master at once. A switch missed
    /// while no Sentinel was listened to is caught on resubscribing, by comparing the master the
    /// Sentinels name then with the last one known.
    pub(super) async fn watch_switches(
        &self,
        generation: &Generation,
        url: &str,
        command_timeout: Duration,
    ) {
        let mut known = self
            .last_master
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(address);
        let mut next = 0usize;
        loop {
            let index = next % self.sentinels.len();
            next = next.wrapping_add(1);
            let subscribed = async {
                let mut pubsub = self.sentinels[index].get_async_pubsub().await?;
                pubsub.subscribe(SWITCH_MASTER).await?;
                Ok::<_, RedisError>(pubsub)
            };
            match tokio::time::timeout(self.connect_timeout, subscribed).await {
                Ok(Ok(pubsub)) => {
                    // Listening from here on; what happened before is read from the Sentinels.
                    if let Ok((master, _)) = self.connect_master().await {
                        let named = address(&master);
                        if known.is_some() && named.is_some() && named != known {
                            tracing::warn!(
                                %url,
                                "lockwright: the Sentinels name another master than before; \
                                 dropping the connections to the old one"
                            );
                            generation.advance();
                        }
                        known = named.or(known);
                    }
                    let (mut sink, mut messages) = pubsub.split();
                    let listening = async {
                        while let Some(message) = messages.next().await {
                            let Ok(payload) = message.get_payload::<String>() else {
                                continue;
                            };
                            let fields: Vec<&str> = payload.split(' ').collect();
                            let [name, _, _, host, port] = fields[..] else {
                                continue;
                            };
                            if name != self.master_name {
                                continue;
                            }
                            tracing::warn!(
                                %url,
                                new_master = %format!("{host}:{port}"),
                                "lockwright: Sentinel switched masters; dropping the connections \
                                 to the old one"
                            );
                            generation.advance();
                            known = port.parse().ok().map(|port| (host.to_owned(), port));
                            // For the synchronous release, which starts from the last master.
                            let _ = self.connect_master().await;
                        }
                    };
                    let keepalive = async {
                        loop {
                            tokio::time::sleep(SUBSCRIBER_KEEPALIVE).await;
                            let ping = sink.ping::<Value>();
                            match tokio::time::timeout(command_timeout, ping).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(err)) => return BoxError::from(err),
                                Err(_) => return TimeoutError(command_timeout).into(),
                            }
                        }
                    };
                    tokio::select! {
                        () = listening => tracing::warn!(
                            %url,
                            "lockwright: Sentinel switch watch disconnected; reconnecting"
                        ),
                        err = keepalive => tracing::warn!(
                            %url,
                            error = %err,
                            "lockwright: Sentinel switch watch did not answer PING; reconnecting"
                        ),
                    }
                }
                Ok(Err(err)) => tracing::warn!(
                    %url,
                    sentinel = %self.sentinel_address(index),
                    error = %err,
                    "lockwright: Sentinel switch watch cannot subscribe; trying the next Sentinel"
                ),
                Err(_) => tracing::warn!(
                    %url,
                    sentinel = %self.sentinel_address(index),
                    "lockwright: Sentinel switch watch timed out; trying the next Sentinel"
                ),
            }
            // A short pause, and a longer one once every Sentinel was tried in turn.
            let pause = if next % self.sentinels.len() == 0 {
                1000
            } else {
                100
            };
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

/// Whether a `ROLE` reply is a master's. A server that refuses `ROLE` (an ACL without it) is
/// taken at the Sentinel's word; one that cannot be asked is not taken.
fn check_role(role: redis::RedisResult<Vec<Value>>) -> Result<(), BoxError> {
    let role = match role {
        Ok(role) => role,
        Err(err)
            if err.code() == Some("NOPERM") || err.kind() == redis::ErrorKind::ResponseError =>
        {
            return Ok(())
        }
        Err(err) => return Err(err.into()),
    };
    let is_master = role.first().is_some_and(|first| {
        redis::from_redis_value::<String>(first).is_ok_and(|role| role == "master")
    });
    if is_master {
        Ok(())
    } else {
        Err(NotTheMaster("is not a master (not yet, or no more)".into()).into())
    }
}

/// Host and port of a client's server (none for a Unix socket).
pub(super) fn address(client: &redis::Client) -> Option<(String, u16)> {
    match &client.get_connection_info().addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            Some((host.clone(), *port))
        }
        _ => None,
    }
}
