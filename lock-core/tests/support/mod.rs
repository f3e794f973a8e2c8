//! Test harness: a real `redis-server` per test binary (or per test), started on a free port and
//! stopped with the test process. No mock: a missing binary fails loudly.

#![allow(dead_code)]

pub mod cluster;
pub mod fenced;
pub mod logs;
pub mod processes;
pub mod python;
pub mod sentinel;
pub mod tls;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lock_core::{RedisBackend, RedisConfig, SharedBackend};

pub const INSTALL_HINT: &str =
    "redis-server was not found on PATH. The Redis tests run against a real \
     server and never skip: install it with `apt-get install redis-server` (Debian/Ubuntu), or \
     run `.ci/run` as root, which installs it.";

/// A running `redis-server`, killed on drop.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    /// `port` is a TLS port (`--tls-port`, plain TCP off).
    tls: bool,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments (e.g. `["--requirepass", "pw"]`).
    pub fn start_with(extra_args: &[&str]) -> Self {
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        Self::start_on_picked(free_port, |_| extra_args.clone())
    }

    /// Starts a server on a port `pick` gives, with the arguments `args` makes for that port.
    /// A port found free is free only until someone binds it: when another process (a test's
    /// client connection, another test's server) took it, or a cluster node's bus port beside
    /// it, before the server bound it, another port is picked (up to 5 times).
    pub fn start_on_picked(pick: impl Fn() -> u16, args: impl Fn(u16) -> Vec<String>) -> Self {
        let mut last = String::new();
        for _ in 0..5 {
            let port = pick();
            let dir = Self::new_dir(port);
            let extra_args = args(port);
            let child = spawn(port, false, &dir, &extra_args);
            let mut server = RedisServer {
                child,
                port,
                dir,
                extra_args,
                tls: false,
            };
            match server.try_wait_ready() {
                Ok(()) => return server,
                // Dropped: killed, its directory removed.
                Err(failure) if failure.contains("Address already in use") => last = failure,
                Err(failure) => panic!("{failure}"),
            }
        }
        panic!("5 picked ports were taken before redis-server bound them; the last:\n{last}")
    }

    /// Starts a server on `port` with extra `redis-server` arguments.
    pub fn start_on(port: u16, extra_args: &[&str]) -> Self {
        let dir = Self::new_dir(port);
        let extra_args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        Self::start_in(port, dir, extra_args, false)
    }

    /// A fresh, empty directory for the server on `port` (its snapshot, log, certificates).
    pub fn new_dir(port: u16) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("lockwright-redis-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Starts a server on `port` (a TLS port when `tls`: then `extra_args` must name its
    /// certificates), working in `dir` (removed on drop).
    pub fn start_in(port: u16, dir: PathBuf, extra_args: Vec<String>, tls: bool) -> Self {
        let child = spawn(port, tls, &dir, &extra_args);
        let mut server = RedisServer {
            child,
            port,
            dir,
            extra_args,
            tls,
        };
        server.wait_ready();
        server
    }

    /// The directory the server works in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's snapshot file (`SAVE` writes it; a restart loads it).
    pub fn snapshot_file(&self) -> PathBuf {
        self.dir.join("dump.rdb")
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills and starts it again on the same port (data is not persisted).
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.port, self.tls, &self.dir, &self.extra_args);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        if let Err(failure) = self.try_wait_ready() {
            panic!("{failure}");
        }
    }

    /// Waits until the server answers; what went wrong otherwise (with its log).
    fn try_wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "redis-server on port {} exited at start ({status}); its log:\n{}",
                    self.port,
                    std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                ));
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                // Not forever: the port may be another process's that never answers.
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                if self.tls {
                    // A plain PING would only end the handshake; the server listens: it is up
                    // (connections wait in the backlog until its event loop runs).
                    return Ok(());
                }
                let mut reply = [0u8; 64];
                if stream.write_all(b"PING\r\n").is_ok() {
                    if let Ok(n) = stream.read(&mut reply) {
                        // `-NOAUTH` also proves the server is up.
                        if n > 0 {
                            return Ok(());
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server on port {} did not start within 10 s",
            self.port
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Fails loudly, with the install hint, when `redis-server` cannot be run.
pub fn require_redis_server() {
    match Command::new("redis-server").arg("--version").output() {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
        Err(err) => panic!("cannot run redis-server: {err}. {INSTALL_HINT}"),
    }
}

fn spawn(port: u16, tls: bool, dir: &Path, extra_args: &[String]) -> Child {
    require_redis_server();
    // A TLS server listens on its TLS port alone (`--tls-port` is only given to TLS servers: a
    // redis-server built without TLS would refuse it).
    let listen = if tls {
        vec![
            "--port".to_owned(),
            "0".to_owned(),
            "--tls-port".to_owned(),
            port.to_string(),
        ]
    } else {
        vec!["--port".to_owned(), port.to_string()]
    };
    let mut args: Vec<String> = listen;
    args.extend(
        [
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
            "--loglevel",
            "warning",
        ]
        .iter()
        .map(|a| a.to_string()),
    );
    args.extend(extra_args.iter().cloned());
    args.extend([
        "--logfile".to_owned(),
        dir.join("redis.log").display().to_string(),
    ]);
    let server = Command::new("redis-server")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start redis-server: {err}. {INSTALL_HINT}"));
    kill_with_the_test_process(server.id());
    server
}

/// A watchdog kills the process `pid` if the test process dies first (a shared server lives in
/// a static, which is never dropped). It exits by itself once that process is gone.
pub fn kill_with_the_test_process(pid: u32) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(
            r#"while kill -0 "$1" 2>/dev/null; do
  kill -0 "$2" 2>/dev/null || { kill -9 "$1"; exit 0; }
  sleep 0.2
done"#,
        )
        .arg("sh")
        .arg(pid.to_string())
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A loopback port nothing listens on right now.
/// A plain connection to `url`, beside the backend under test (to inspect or disturb Redis).
pub fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .expect("raw redis connection")
}

/// Calls one batch queue has in flight at most (`MAX_SENDERS` in `src/redis/batch.rs`):
/// operations issued while that many are in flight queue behind them.
#[allow(dead_code)] // not every test binary uses it
pub const BATCH_SENDERS: usize = 2;

/// Script calls the server has run so far (`EVALSHA`, and `EVAL` after a `NOSCRIPT`).
pub fn script_calls(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query(conn).unwrap();
    info.lines()
        .filter(|line| line.starts_with("cmdstat_evalsha:") || line.starts_with("cmdstat_eval:"))
        .filter_map(|line| {
            line.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free local port")
}

/// One server and one backend shared by the tests of a binary (each test uses its own keys).
pub fn shared_redis() -> &'static (RedisServer, RedisBackend) {
    static SHARED: OnceLock<(RedisServer, RedisBackend)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let server = RedisServer::start();
        let backend = RedisBackend::connect_blocking(RedisConfig::new(server.url()))
            .expect("connect to the test redis-server");
        (server, backend)
    })
}

pub fn shared_redis_backend() -> SharedBackend {
    shared_redis().1.shared()
}

/// A backend on the shared server whose I/O runs on a runtime it was given
/// ([`RedisConfig::runtime`]): a multi-thread runtime that lives as long as the test binary.
pub fn redis_on_given_runtime() -> &'static (tokio::runtime::Runtime, RedisBackend) {
    static SHARED: OnceLock<(tokio::runtime::Runtime, RedisBackend)> = OnceLock::new();
    SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the backend's I/O");
        let config = RedisConfig::new(shared_redis().0.url()).runtime(runtime.handle().clone());
        // `connect_blocking` works inside the tests' own runtimes, where `block_on` would not.
        let backend = RedisBackend::connect_blocking(config).expect("connect on the given runtime");
        (runtime, backend)
    })
}

/// A loopback TCP proxy in front of a server (std threads copying bytes both ways) that can
/// FREEZE connections: stop forwarding in both directions while keeping both sockets open, as a
/// half-open TCP connection or a frozen NAT entry does. The client's writes still succeed (they
/// fill the kernel buffers); nothing reaches the server and no reply or close comes back.
///
/// Connections are told apart by what their client sent: one whose client sent `SUBSCRIBE`,
/// `PSUBSCRIBE` or `SSUBSCRIBE` (sniffed in the client-to-server bytes) is a subscriber.
/// [`freeze_subscribers`] freezes the subscriber connections open at that moment; connections
/// opened later are forwarded normally, so a client that reconnects gets through.
///
/// It can also LOSE A REPLY ([`lose_next_script_reply`]): the next script call (`EVALSHA` or
/// `EVAL`) reaches the server, and the proxy closes that connection when the reply comes back,
/// instead of delivering it, as a connection that breaks at the wrong moment does.
///
/// [`freeze_subscribers`]: FreezingProxy::freeze_subscribers
/// [`lose_next_script_reply`]: FreezingProxy::lose_next_script_reply
pub struct FreezingProxy {
    pub port: u16,
    state: std::sync::Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    connections: std::sync::Mutex<Vec<std::sync::Arc<ProxiedConnection>>>,
    stop: std::sync::atomic::AtomicBool,
    /// New connections start frozen (accepted, then never forwarded): a server that takes
    /// connections and answers nothing.
    freeze_new: std::sync::atomic::AtomicBool,
    /// The next script call's reply is to be lost.
    lose_script_reply: std::sync::atomic::AtomicBool,
    /// How many replies were lost so.
    replies_lost: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct ProxiedConnection {
    frozen: std::sync::atomic::AtomicBool,
    subscriber: std::sync::atomic::AtomicBool,
    /// A script call whose reply is to be lost went out on it: the next bytes from the server
    /// are dropped, and the connection closed.
    muted: std::sync::atomic::AtomicBool,
}

impl FreezingProxy {
    /// Listens on a free loopback port and forwards every connection to `127.0.0.1:target_port`.
    pub fn start(target_port: u16) -> Self {
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = std::sync::Arc::new(ProxyState::default());
        let accepting = std::sync::Arc::clone(&state);
        std::thread::spawn(move || {
            while !accepting.stop.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(err) => panic!("proxy accept: {err}"),
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", target_port)) else {
                    continue; // server down: the client sees its connection closed
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let connection = std::sync::Arc::new(ProxiedConnection::default());
                if accepting.freeze_new.load(Ordering::Relaxed) {
                    connection.frozen.store(true, Ordering::Relaxed);
                }
                accepting
                    .connections
                    .lock()
                    .unwrap()
                    .push(std::sync::Arc::clone(&connection));
                for (from, to, sniff) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let (state, connection) = (
                        std::sync::Arc::clone(&accepting),
                        std::sync::Arc::clone(&connection),
                    );
                    std::thread::spawn(move || pump(from, to, sniff, &state, &connection));
                }
            }
        });
        FreezingProxy { port, state }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many connections have sent `SUBSCRIBE`, `PSUBSCRIBE` or `SSUBSCRIBE` and are not
    /// frozen.
    pub fn live_subscribers(&self) -> usize {
        use std::sync::atomic::Ordering;
        let connections = self.state.connections.lock().unwrap();
        connections
            .iter()
            .filter(|c| c.subscriber.load(Ordering::Relaxed) && !c.frozen.load(Ordering::Relaxed))
            .count()
    }

    /// Freezes the subscriber connections open now; returns how many.
    pub fn freeze_subscribers(&self) -> usize {
        self.freeze(|c| c.subscriber.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Freezes every connection open now; returns how many.
    pub fn freeze_all(&self) -> usize {
        self.freeze(|_| true)
    }

    /// How many connections it has taken so far.
    pub fn connections_taken(&self) -> usize {
        self.state.connections.lock().unwrap().len()
    }

    /// Freezes the connections it took after its first `first` ones; returns how many.
    pub fn freeze_taken_after(&self, first: usize) -> usize {
        use std::sync::atomic::Ordering;
        let connections = self.state.connections.lock().unwrap();
        for connection in connections.iter().skip(first) {
            connection.frozen.store(true, Ordering::Relaxed);
        }
        connections.len().saturating_sub(first)
    }

    /// Freezes every connection open now and every one opened from now on: the server seems
    /// to take connections and never answer.
    pub fn freeze_everything(&self) -> usize {
        self.state
            .freeze_new
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.freeze_all()
    }

    /// The next script call's reply is lost: the call reaches the server, which runs it, and
    /// its connection is closed when the reply comes back.
    pub fn lose_next_script_reply(&self) {
        self.state
            .lose_script_reply
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// How many replies [`lose_next_script_reply`](Self::lose_next_script_reply) lost.
    pub fn replies_lost(&self) -> usize {
        self.state
            .replies_lost
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn freeze(&self, which: impl Fn(&ProxiedConnection) -> bool) -> usize {
        use std::sync::atomic::Ordering;
        let connections = self.state.connections.lock().unwrap();
        let mut frozen = 0;
        for connection in connections.iter().filter(|c| which(c)) {
            connection.frozen.store(true, Ordering::Relaxed);
            frozen += 1;
        }
        frozen
    }
}

impl Drop for FreezingProxy {
    /// Stops every pump: the sockets, frozen ones too, are closed.
    fn drop(&mut self) {
        self.state
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Copies `from` to `to` until either closes or the proxy stops; while the connection is frozen
/// it neither reads nor writes (bytes already read are held back, never delivered).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    sniff: bool,
    state: &ProxyState,
    connection: &ProxiedConnection,
) {
    use std::sync::atomic::Ordering;
    let stopped = || state.stop.load(Ordering::Relaxed);
    let frozen = || connection.frozen.load(Ordering::Relaxed);
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buffer = [0u8; 16 * 1024];
    while !stopped() {
        if frozen() {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => break,
        };
        // The command's own bulk string, so a key that merely contains the word is no match.
        let sent = |command: &[u8]| {
            buffer[..n]
                .windows(command.len())
                .any(|w| w.eq_ignore_ascii_case(command))
        };
        if sniff
            && (sent(b"$9\r\nSUBSCRIBE\r\n")
                || sent(b"$10\r\nPSUBSCRIBE\r\n")
                || sent(b"$10\r\nSSUBSCRIBE\r\n"))
        {
            connection.subscriber.store(true, Ordering::Relaxed);
        }
        if sniff
            && (sent(b"$7\r\nEVALSHA\r\n") || sent(b"$4\r\nEVAL\r\n"))
            && state.lose_script_reply.swap(false, Ordering::SeqCst)
        {
            // Muted before the call goes out, so its reply is read muted.
            connection.muted.store(true, Ordering::SeqCst);
        }
        if !sniff && connection.muted.load(Ordering::SeqCst) {
            state.replies_lost.fetch_add(1, Ordering::SeqCst);
            break; // the reply is dropped, and both sockets closed
        }
        while frozen() && !stopped() {
            std::thread::sleep(Duration::from_millis(10));
        }
        if stopped() || to.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// One round of the given runtime's shutdown: a task on the runtime given to a backend made from
/// `config` holds the never-expiring lock `name`; the runtime then shuts down (`"drop"` or
/// `"shutdown_background"`), and `observer` must see the key free within 5 s: the guard's drop
/// release, with no runtime left to run it, went out synchronously.
pub fn assert_the_given_runtimes_shutdown_releases(
    config: RedisConfig,
    observer: &SharedBackend,
    shutdown: &str,
    name: &str,
) {
    let (runtime, _backend) = held_on_a_given_runtime(config, name);
    let probe = lock_core::Lock::with_backend(name, observer);
    assert!(probe.is_locked_blocking().unwrap());
    match shutdown {
        "drop" => drop(runtime),
        _ => runtime.shutdown_background(),
    }
    let start = Instant::now();
    while probe.is_locked_blocking().unwrap() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{shutdown}: {name} still held (it never expires)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A never-expiring hold of `name`, taken by a task on a new runtime given to a backend made
/// from `config` (`RedisConfig::runtime`); the task then waits forever, so the runtime's
/// shutdown drops the guard with no runtime left to run its release. Returns the runtime and
/// the backend.
pub fn held_on_a_given_runtime(
    config: RedisConfig,
    name: &str,
) -> (tokio::runtime::Runtime, SharedBackend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = config.runtime(runtime.handle().clone());
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    let lock = lock_core::Lock::with_backend(name, &backend).never_expires();
    let (acquired, is_acquired) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _guard = lock.acquire().await.unwrap();
        acquired.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    is_acquired.recv_timeout(Duration::from_secs(5)).unwrap();
    (runtime, backend)
}

/// [`assert_the_given_runtimes_shutdown_releases`] for a pool slot: a task on the given runtime
/// holds a never-expiring slot of the pool `name` (of 1); after the shutdown `observer` must see
/// the pool empty within 5 s.
pub fn assert_the_given_runtimes_shutdown_gives_back_the_slot(
    config: RedisConfig,
    observer: &SharedBackend,
    shutdown: &str,
    name: &str,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = config.runtime(runtime.handle().clone());
    let backend = RedisBackend::connect_blocking(config).unwrap().shared();
    let pool = lock_core::Pool::with_backend(name, 1, &backend).never_expires();
    let (acquired, is_acquired) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _slot = pool.acquire().await.unwrap();
        acquired.send(()).unwrap();
        std::future::pending::<()>().await;
    });
    is_acquired.recv_timeout(Duration::from_secs(5)).unwrap();
    let probe = lock_core::Pool::with_backend(name, 1, observer);
    assert_eq!(probe.size_blocking().unwrap(), 1);
    match shutdown {
        "drop" => drop(runtime),
        _ => runtime.shutdown_background(),
    }
    let start = Instant::now();
    while probe.size_blocking().unwrap() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{shutdown}: the slot of {name} is still taken (it never expires)"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Everything an error shows: its `Display` and `Debug`, and those of each source, for checks
/// that a secret appears nowhere.
pub fn everything_shown(err: &lock_core::LockError) -> String {
    let mut shown = format!("{err}\n{err:?}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        shown.push_str(&format!("\n{cause}\n{cause:?}"));
        source = cause.source();
    }
    shown
}
