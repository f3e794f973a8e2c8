//! Sentinel deployments for the tests: a master, one replica (`--replicaof`) and three
//! sentinels (`redis-server <conf> --sentinel`), each a real process on a free loopback port,
//! killed on drop (and with the test process). No mock: a missing binary fails loudly.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lock_core::RedisConfig;

use super::{
    free_port, kill_with_the_test_process, require_redis_server, FreezingProxy, RedisServer,
    INSTALL_HINT,
};

/// The name the sentinels monitor the master under.
pub const MASTER_NAME: &str = "mymaster";

/// How long a set may take to come up, or a failover to finish: liveness bounds only.
pub const SETTLE: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct SentinelOptions {
    /// `requirepass` and `masterauth` on master and replica, `sentinel auth-pass` in the
    /// sentinels.
    pub server_password: Option<String>,
    /// `requirepass` in the sentinels' own configuration.
    pub sentinel_password: Option<String>,
    /// `sentinel down-after-milliseconds`.
    pub down_after_ms: u64,
    /// `sentinel failover-timeout`: also how long after a switch the sentinels wait before
    /// turning an old master that still says it is one into a replica, or re-pointing a replica
    /// that replicates from another address (see `replicate_through_proxy`).
    pub failover_timeout_ms: u64,
    /// The replica replicates through a [`FreezingProxy`], so a test can hold replication back
    /// (freeze it) while the master still acknowledges writes.
    pub replicate_through_proxy: bool,
}

impl Default for SentinelOptions {
    fn default() -> Self {
        SentinelOptions {
            server_password: None,
            sentinel_password: None,
            down_after_ms: 1000,
            failover_timeout_ms: 2000,
            replicate_through_proxy: false,
        }
    }
}

/// One `redis-server --sentinel`, killed on drop.
pub struct SentinelProcess {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl SentinelProcess {
    fn start(master_port: u16, options: &SentinelOptions) -> Self {
        require_redis_server();
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("lockwright-sentinel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             dir {dir}\n\
             logfile {dir}/sentinel.log\n\
             sentinel resolve-hostnames no\n\
             sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n\
             sentinel down-after-milliseconds {MASTER_NAME} {down_after}\n\
             sentinel failover-timeout {MASTER_NAME} {failover_timeout}\n\
             sentinel parallel-syncs {MASTER_NAME} 1\n",
            dir = dir.display(),
            down_after = options.down_after_ms,
            failover_timeout = options.failover_timeout_ms,
        );
        if let Some(password) = &options.server_password {
            conf.push_str(&format!("sentinel auth-pass {MASTER_NAME} {password}\n"));
        }
        if let Some(password) = &options.sentinel_password {
            // Sentinels use their own `requirepass` to talk to each other too.
            conf.push_str(&format!("requirepass {password}\n"));
        }
        let conf_file = dir.join("sentinel.conf");
        std::fs::write(&conf_file, conf).unwrap();
        let child = Command::new("redis-server")
            .arg(&conf_file)
            .arg("--sentinel")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start redis-server --sentinel: {err}. {INSTALL_HINT}")
            });
        kill_with_the_test_process(child.id());
        let sentinel = SentinelProcess { child, port, dir };
        sentinel.wait_listening();
        sentinel
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let mut reply = [0u8; 64];
                // `-NOAUTH` also proves it is up.
                if stream.write_all(b"PING\r\n").is_ok() && stream.read(&mut reply).unwrap_or(0) > 0
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server --sentinel on port {} did not start within 10 s",
            self.port
        );
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A master, one replica and three sentinels that monitor the master as [`MASTER_NAME`] with a
/// quorum of 2. Which server is master changes with failovers: ask [`SentinelSet::master_port`].
pub struct SentinelSet {
    /// The first master, then the first replica.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<SentinelProcess>,
    /// Between the replica and the first master, with `replicate_through_proxy`.
    pub proxy: Option<FreezingProxy>,
    pub options: SentinelOptions,
}

impl SentinelSet {
    pub fn start() -> Self {
        Self::start_with(SentinelOptions::default())
    }

    /// Starts every process and waits until each sentinel sees the master, the replica (in
    /// sync) and both other sentinels: from then on a failover can be agreed on.
    pub fn start_with(options: SentinelOptions) -> Self {
        let mut server_args: Vec<String> = vec![
            // Replicas sync at once instead of after the default 5 s of diskless-sync delay.
            "--repl-diskless-sync-delay".into(),
            "0".into(),
        ];
        if let Some(password) = &options.server_password {
            server_args.extend([
                "--requirepass".into(),
                password.clone(),
                "--masterauth".into(),
                password.clone(),
            ]);
        }
        let start = |extra: &[String]| {
            let args: Vec<&str> = server_args
                .iter()
                .chain(extra)
                .map(String::as_str)
                .collect();
            RedisServer::start_with(&args)
        };
        let master = start(&[]);
        let proxy = options
            .replicate_through_proxy
            .then(|| FreezingProxy::start(master.port));
        let upstream = proxy.as_ref().map_or(master.port, |proxy| proxy.port);
        let replica = start(&[
            "--replicaof".into(),
            "127.0.0.1".into(),
            upstream.to_string(),
        ]);
        let sentinels = (0..3)
            .map(|_| SentinelProcess::start(master.port, &options))
            .collect();
        let set = SentinelSet {
            servers: vec![master, replica],
            sentinels,
            proxy,
            options,
        };
        set.wait_ready(set.servers[0].port, set.servers[1].port);
        set
    }

    /// The sentinels' URLs (their password, if any, goes in `sentinel_credentials`).
    pub fn sentinel_urls(&self) -> Vec<String> {
        self.sentinels
            .iter()
            .map(|sentinel| format!("redis://127.0.0.1:{}", sentinel.port))
            .collect()
    }

    /// `redis+sentinel://[:password@]h1:p1,h2:p2,h3:p3/mymaster`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|sentinel| format!("127.0.0.1:{}", sentinel.port))
            .collect();
        let userinfo = self
            .options
            .server_password
            .as_ref()
            .map_or(String::new(), |password| format!(":{password}@"));
        format!(
            "redis+sentinel://{userinfo}{}/{MASTER_NAME}",
            hosts.join(",")
        )
    }

    /// A configuration for this set, from [`SentinelSet::url`], with the sentinels' password.
    pub fn config(&self) -> RedisConfig {
        let config = RedisConfig::new(self.url());
        match &self.options.sentinel_password {
            Some(password) => config.sentinel_credentials(None, password.clone()),
            None => config,
        }
    }

    /// A plain connection to one server of the set, by port.
    pub fn server_conn(&self, port: u16) -> redis::Connection {
        let url = match &self.options.server_password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        };
        let client = redis::Client::open(url).unwrap();
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap_or_else(|err| panic!("connect to the server on port {port}: {err}"));
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        conn
    }

    fn sentinel_conn(&self, index: usize) -> redis::RedisResult<redis::Connection> {
        let port = self.sentinels[index].port;
        let url = match &self.options.sentinel_password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{port}"),
            None => format!("redis://127.0.0.1:{port}"),
        };
        let conn = redis::Client::open(url)?.get_connection_with_timeout(Duration::from_secs(2))?;
        conn.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(conn)
    }

    /// The server of the set on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|server| server.port == port)
            .unwrap_or_else(|| panic!("no server of the set on port {port}"))
    }

    /// The master's port as each sentinel names it (`None` for one that does not answer).
    pub fn named_masters(&self) -> Vec<Option<u16>> {
        (0..self.sentinels.len())
            .map(|index| {
                let mut conn = self.sentinel_conn(index).ok()?;
                let addr: Option<(String, String)> = redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(MASTER_NAME)
                    .query(&mut conn)
                    .ok()?;
                addr.and_then(|(_, port)| port.parse().ok())
            })
            .collect()
    }

    /// The master's port, as the first sentinel that answers names it.
    pub fn master_port(&self) -> u16 {
        self.named_masters()
            .into_iter()
            .flatten()
            .next()
            .expect("no sentinel names a master")
    }

    /// The other server of the set.
    pub fn other_than(&self, port: u16) -> u16 {
        self.servers
            .iter()
            .map(|server| server.port)
            .find(|other| *other != port)
            .expect("two servers")
    }

    /// Asks a sentinel for a failover (`SENTINEL FAILOVER mymaster`), retrying while the
    /// sentinels are not ready for one (a failover in progress, no good replica yet).
    pub fn failover(&self) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let answer: redis::RedisResult<String> = self.sentinel_conn(0).and_then(|mut conn| {
                redis::cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(MASTER_NAME)
                    .query(&mut conn)
            });
            match answer {
                Ok(_) => return,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("SENTINEL FAILOVER refused for now: {err}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(err) => panic!("SENTINEL FAILOVER: {err}"),
            }
        }
    }

    /// Waits until every live sentinel names `new_master`.
    pub fn wait_until_sentinels_name(&self, new_master: u16) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let named = self.named_masters();
            if named.iter().flatten().count() > 0
                && named.iter().flatten().all(|port| *port == new_master)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the sentinels do not all name {new_master}: {named:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until a majority of the sentinels names a master other than `old_master`, and
    /// returns it.
    pub fn wait_for_new_master(&self, old_master: u16) -> u16 {
        let deadline = Instant::now() + SETTLE;
        loop {
            let named = self.named_masters();
            let new: Vec<u16> = named
                .iter()
                .flatten()
                .copied()
                .filter(|port| *port != old_master)
                .collect();
            if new.len() >= 2 {
                return new[0];
            }
            assert!(
                Instant::now() < deadline,
                "no failover away from {old_master} within {SETTLE:?}: {named:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `INFO replication` of the server on `port`, as fields.
    pub fn replication(&self, port: u16) -> HashMap<String, String> {
        self.try_replication(port)
            .unwrap_or_else(|err| panic!("INFO replication on port {port}: {err}"))
    }

    /// [`SentinelSet::replication`], or the error (a sentinel reconfiguring the server kills
    /// its clients, ours included).
    pub fn try_replication(&self, port: u16) -> redis::RedisResult<HashMap<String, String>> {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut self.server_conn(port))?;
        Ok(info
            .lines()
            .filter_map(|line| line.trim().split_once(':'))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }

    /// Waits until the server on `port` is a replica of `master`, in sync.
    pub fn wait_replica_of(&self, port: u16, master: u16) {
        let deadline = Instant::now() + SETTLE;
        loop {
            let info = self.try_replication(port).unwrap_or_default();
            if info.get("role").map(String::as_str) == Some("slave")
                && info.get("master_port").map(String::as_str) == Some(&master.to_string())
                && info.get("master_link_status").map(String::as_str) == Some("up")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "port {port} is not a replica of {master} in sync: {info:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every sentinel sees `master` as master, `replica` as its replica with the
    /// link up, and both other sentinels; and the replica is in sync.
    pub fn wait_ready(&self, master: u16, replica: u16) {
        let deadline = Instant::now() + SETTLE;
        let upstream = self.proxy.as_ref().map_or(master, |proxy| proxy.port);
        self.wait_replica_of(replica, upstream);
        for index in 0..self.sentinels.len() {
            loop {
                let seen = self.sentinel_conn(index).and_then(|mut conn| {
                    let master_info: HashMap<String, String> = redis::cmd("SENTINEL")
                        .arg("MASTER")
                        .arg(MASTER_NAME)
                        .query(&mut conn)?;
                    let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(MASTER_NAME)
                        .query(&mut conn)?;
                    Ok((master_info, replicas))
                });
                let ready = match &seen {
                    Ok((master_info, replicas)) => {
                        let field = |name: &str| master_info.get(name).map(String::as_str);
                        field("port") == Some(&master.to_string())
                            && field("flags") == Some("master")
                            && field("num-other-sentinels") == Some("2")
                            && replicas.iter().any(|r| {
                                r.get("port").map(String::as_str) == Some(&replica.to_string())
                                    && r.get("flags").map(String::as_str) == Some("slave")
                                    && r.get("master-link-status").map(String::as_str) == Some("ok")
                            })
                    }
                    Err(_) => false,
                };
                if ready {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "sentinel {index} not ready within {SETTLE:?}: {seen:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// One set shared by the tests of a binary that need no failover (each uses its own keys).
pub fn shared_sentinel() -> &'static SentinelSet {
    static SHARED: OnceLock<SentinelSet> = OnceLock::new();
    SHARED.get_or_init(SentinelSet::start)
}

/// A backend on [`shared_sentinel`], configured through the `redis+sentinel://` URL form.
pub fn shared_sentinel_backend() -> lock_core::SharedBackend {
    static SHARED: OnceLock<lock_core::RedisBackend> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            lock_core::RedisBackend::connect_blocking(shared_sentinel().config())
                .expect("connect to the shared sentinel set")
        })
        .shared()
}

/// A backend on [`shared_sentinel`] whose holds its replica confirms
/// (`wait_replicas(1, 1 s)`).
pub fn shared_sentinel_replicated_backend() -> lock_core::SharedBackend {
    static SHARED: OnceLock<lock_core::RedisBackend> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let config = shared_sentinel().config().wait_replicas(1, 1).unwrap();
            lock_core::RedisBackend::connect_blocking(config)
                .expect("connect to the shared sentinel set")
        })
        .shared()
}
