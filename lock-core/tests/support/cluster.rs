//! A real Redis Cluster for the tests: 3 masters with one replica each, started with
//! `redis-server --cluster-enabled yes` and joined by `redis-cli --cluster create`, on loopback
//! ports, killed on drop.

use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lock_core::{RedisBackend, RedisConfig, SharedBackend};

use super::{RedisServer, INSTALL_HINT};

/// A running cluster. `nodes[..3]` were created as masters, `nodes[3..]` as their replicas
/// (which one is master changes with failovers: ask [`RedisCluster::masters`]).
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// With [`RedisCluster::start_tls`]: each node's TLS port (beside its plain one, which the
    /// harness administers it through), and the CA that signed the nodes' certificates.
    pub tls: Option<(Vec<u16>, std::path::PathBuf)>,
}

/// The cluster options of every node: a short node timeout so failovers in the tests take
/// seconds, no full-coverage requirement so a killed master's slots do not stop the rest, and
/// replicas synced at once (the diskless sync otherwise waits 5 s for more replicas).
const NODE_ARGS: [&str; 10] = [
    "--repl-diskless-sync-delay",
    "0",
    "--cluster-enabled",
    "yes",
    "--cluster-node-timeout",
    "1500",
    "--cluster-require-full-coverage",
    "no",
    "--cluster-allow-reads-when-down",
    "no",
];

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A cluster whose nodes also listen for TLS (certificates for `localhost` and `127.0.0.1`
    /// from the test CA, `support::tls`) and speak TLS on the cluster bus and for replication.
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let pki = super::tls::pki();
        let mut tls_ports = Vec::new();
        let mut ca_file = None;
        let nodes: Vec<RedisServer> = (0..6)
            .map(|_| {
                let mut args: Vec<String> = NODE_ARGS.iter().map(|a| a.to_string()).collect();
                if tls {
                    let dir = std::env::temp_dir().join(format!(
                        "lockwright-cluster-tls-{}-{}",
                        std::process::id(),
                        tls_ports.len()
                    ));
                    std::fs::create_dir_all(&dir).unwrap();
                    let write = |name: &str, contents: &str| {
                        let path = dir.join(name);
                        std::fs::write(&path, contents).unwrap();
                        path.display().to_string()
                    };
                    let port = super::free_port();
                    tls_ports.push(port);
                    args.extend([
                        "--tls-port".to_owned(),
                        port.to_string(),
                        "--tls-cert-file".to_owned(),
                        write("server.pem", &pki.server.certificate),
                        "--tls-key-file".to_owned(),
                        write("server-key.pem", &pki.server.key),
                        "--tls-ca-cert-file".to_owned(),
                        write("ca.pem", &pki.ca),
                        // A node dialing another's bus (or its master) is a TLS client: it
                        // shows the client certificate (the server one is for server auth).
                        "--tls-client-cert-file".to_owned(),
                        write("client.pem", &pki.client.certificate),
                        "--tls-client-key-file".to_owned(),
                        write("client-key.pem", &pki.client.key),
                        "--tls-auth-clients".to_owned(),
                        "no".to_owned(),
                        "--tls-cluster".to_owned(),
                        "yes".to_owned(),
                        "--tls-replication".to_owned(),
                        "yes".to_owned(),
                    ]);
                    ca_file = Some(dir.join("ca.pem"));
                }
                if !tls {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    return RedisServer::start_cluster_node(&args);
                }
                // With TLS the bus would listen at the TLS port + 10000, while `redis-cli
                // --cluster create` meets nodes at their plain port + 10000: say which.
                RedisServer::start_on_picked(cluster_port, |port| {
                    let mut args = args.clone();
                    args.extend(["--cluster-port".to_owned(), (port + 10_000).to_string()]);
                    args
                })
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output()
            .unwrap_or_else(|err| panic!("cannot run redis-cli: {err}. {INSTALL_HINT}"));
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        let cluster = RedisCluster {
            nodes,
            tls: ca_file.map(|ca| (tls_ports, ca)),
        };
        cluster.wait_healthy();
        cluster
    }

    /// `redis+cluster://` URL of every node.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// `rediss+cluster://` URL of every node's TLS port (for a [`RedisCluster::start_tls`]
    /// cluster), and the CA file to trust.
    pub fn tls_url(&self) -> (String, std::path::PathBuf) {
        let (ports, ca) = self.tls.as_ref().expect("a TLS cluster");
        let hosts: Vec<String> = ports
            .iter()
            .map(|port| format!("localhost:{port}"))
            .collect();
        (format!("rediss+cluster://{}", hosts.join(",")), ca.clone())
    }

    pub fn node_urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// Waits until every live node reports `cluster_state:ok` and sees 3 masters with slots.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let healthy = self
                .nodes
                .iter()
                .filter(|node| node.is_running())
                .all(|node| {
                    // A whole cluster, and every replica in sync with its master (a replica
                    // that never synced cannot take over).
                    let info = node.command(&["CLUSTER", "INFO"]);
                    let replication = node.command(&["INFO", "replication"]);
                    info.contains("cluster_state:ok")
                        && info.contains("cluster_size:3")
                        && (replication.contains("role:master")
                            || replication.contains("master_link_status:up"))
                });
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the cluster did not become healthy in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The indexes of the nodes that are masters now.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .filter(|&i| self.nodes[i].command(&["ROLE"]).starts_with("master"))
            .collect()
    }

    /// The index of the node serving `slot` now (asked of a live node).
    pub fn master_of_slot(&self, slot: u16) -> usize {
        let asker = self.nodes.iter().find(|node| node.is_running()).unwrap();
        let mut raw = asker.raw();
        let slots: Vec<Vec<redis::Value>> =
            redis::cmd("CLUSTER").arg("SLOTS").query(&mut raw).unwrap();
        let int = |value: &redis::Value| match value {
            redis::Value::Int(n) => *n,
            other => panic!("unexpected CLUSTER SLOTS entry {other:?}"),
        };
        for range in slots {
            let (start, end) = (int(&range[0]) as u16, int(&range[1]) as u16);
            if (start..=end).contains(&slot) {
                let redis::Value::Array(master) = &range[2] else {
                    panic!("unexpected CLUSTER SLOTS entry {range:?}");
                };
                let port = int(&master[1]) as u16;
                return self.nodes.iter().position(|n| n.port == port).unwrap();
            }
        }
        panic!("no master serves slot {slot}");
    }
}

/// Hash slot of a Redis key (CRC16 of its hash tag, as the cluster computes it).
pub fn slot_of(key: &str) -> u16 {
    let bytes = key.as_bytes();
    let tagged = match bytes.iter().position(|&b| b == b'{') {
        Some(open) => match bytes[open + 1..].iter().position(|&b| b == b'}') {
            Some(len) if len > 0 => &bytes[open + 1..open + 1 + len],
            _ => bytes,
        },
        None => bytes,
    };
    crc16(tagged) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= (byte as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One cluster and one backend shared by the tests of a binary (each test its own keys).
pub fn shared_cluster() -> &'static (RedisCluster, RedisBackend) {
    static SHARED: OnceLock<(RedisCluster, RedisBackend)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cluster = RedisCluster::start();
        let backend = RedisBackend::connect_blocking(RedisConfig::new(cluster.url()))
            .expect("connect to the test cluster");
        (cluster, backend)
    })
}

pub fn shared_cluster_backend() -> SharedBackend {
    shared_cluster().1.shared()
}

/// A free port whose cluster bus port (port + 10000) is free too.
/// A cluster of one master holding every slot, reached only through a [`FreezingProxy`]: the
/// node announces the proxy's port as its own, so a cluster client's every connection (the slot
/// map's too) goes through the proxy. For faults a real cluster's connections must meet.
///
/// [`FreezingProxy`]: super::FreezingProxy
pub struct ProxiedCluster {
    pub node: RedisServer,
    pub proxy: super::FreezingProxy,
}

impl ProxiedCluster {
    pub fn start() -> Self {
        let port = cluster_port();
        let proxy = super::FreezingProxy::start(port);
        let (announced, bus) = (proxy.port.to_string(), (port + 10_000).to_string());
        let mut args: Vec<&str> = NODE_ARGS.to_vec();
        args.extend([
            "--cluster-announce-port",
            &announced,
            "--cluster-announce-bus-port",
            &bus,
        ]);
        let node = RedisServer::start_on(port, &args);
        let added = node.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]);
        assert!(
            added.eq_ignore_ascii_case("ok"),
            "CLUSTER ADDSLOTSRANGE: {added}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !node
            .command(&["CLUSTER", "INFO"])
            .contains("cluster_state:ok")
        {
            assert!(
                Instant::now() < deadline,
                "the one-node cluster is not ok in 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ProxiedCluster { node, proxy }
    }

    /// The `redis+cluster://` URL of the node, through the proxy.
    pub fn url(&self) -> String {
        format!("redis+cluster://127.0.0.1:{}", self.proxy.port)
    }
}

fn cluster_port() -> u16 {
    loop {
        let port = super::free_port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

impl RedisServer {
    /// A node with the cluster options: its port and its cluster bus port (port + 10000) free.
    pub fn start_cluster_node(extra_args: &[&str]) -> Self {
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        Self::start_on_picked(cluster_port, |_| extra_args.clone())
    }

    /// Whether it accepts connections.
    pub fn is_running(&self) -> bool {
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_millis(200),
        )
        .is_ok()
    }

    /// A plain synchronous connection to this one node.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("raw connection to a node")
    }

    /// Runs one command on this node and gives its reply as text (bulk strings joined by
    /// newlines).
    pub fn command(&self, args: &[&str]) -> String {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        let value: redis::Value = cmd.query(&mut self.raw()).expect("node command");
        fn text(value: &redis::Value) -> String {
            match value {
                redis::Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                redis::Value::VerbatimString { text, .. } => text.clone(),
                redis::Value::Int(n) => n.to_string(),
                redis::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join("\n"),
                other => format!("{other:?}"),
            }
        }
        text(&value)
    }
}

/// A second backend on the shared cluster whose holds are confirmed by one replica.
pub fn shared_cluster_replicated_backend() -> SharedBackend {
    static SHARED: OnceLock<RedisBackend> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let config = RedisConfig::new(shared_cluster().0.url())
                .wait_replicas(1, 1)
                .expect("a valid wait");
            RedisBackend::connect_blocking(config).expect("connect to the test cluster")
        })
        .shared()
}
