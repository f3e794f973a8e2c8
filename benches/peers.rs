//! lockwright side by side with what Redis allows and with its peers, in one run, against one
//! `redis-server`: lock+unlock throughput and contended hand-off latency.
//!
//! Run: `cargo bench --bench peers` (the result is a markdown report on stdout; progress goes to
//! stderr). It starts its own `redis-server` on a free port, or uses `REDIS_URL` when set.
//!
//! Throughput, lock+unlock pairs per second on distinct keys, at concurrency 1 and 50 (tokio tasks,
//! or OS threads for the blocking API), every lock with a 30 s lease:
//! - **floor**: `SET key token NX PX 30000` + a compare-and-delete script (`EVALSHA`), over one
//!   multiplexed redis-rs connection shared by all tasks: the least a safe Redis lock does;
//! - **lockwright**: the async handle API (`Lock::acquire` + `LockGuard::release`), a
//!   `#[locked]` async function, the blocking API in threads, and the async handle without `exp`
//!   (lease renewed by the watchdog);
//! - **rslock** 0.10 (Redlock on one server);
//! - a **diagnostic** row: lockwright's own script (an acquire, then a release) sent over the floor's
//!   connection with nothing around them: the best any client of these scripts could do, which
//!   splits lockwright's gap to the floor into the scripts' server-side cost and its client's;
//! - **py-cachify** 3.1, run by `benches/pycachify_bench.sh` in a throwaway venv when `python3` is
//!   available (its figures come from the same server, right after ours).
//!
//! Contenders are interleaved: each round runs every contender once per concurrency, in a rotated
//! order, and the tables give the median of the rounds, so load that comes and goes on the
//! machine hits all of them alike.
//!
//! Concurrency curve (`peers/curve.rs`): the floor, lockwright's async handle (default config) and
//! rslock at c = 1, 10, 50, 200 and 1000 tasks on distinct keys, interleaved over the rounds like
//! the table, with redis-server CPU and context switches per pair (`peers/probe.rs`); drawn to
//! `BENCHMARKS-concurrency.svg` at the repository root (`peers/chart.rs`, plotters), which
//! BENCHMARKS.md embeds. The goals table checks that past its peak lockwright's throughput does
//! not fall as concurrency rises.
//!
//! Hand-off: one holder and 1, 10, then 100 waiters on one key; the time from just before the holder's
//! release call to the return of the next holder's acquire. lockwright waiters are woken by the
//! release (pub/sub); the floor's waiters poll `SET NX PX`, either every 1 ms (a tokio sleep of
//! 1 ms, which tokio's millisecond timer makes 1-2 ms) or in a busy loop (`yield_now` between
//! attempts: the lowest latency polling can reach, at the cost of a round trip per waiter per
//! ~100 us); py-cachify polls every 100 ms.
//!
//! Environment: `PEERS_SECONDS` (per contender per round, default 2), `PEERS_ROUNDS` (default 3),
//! `PEERS_CLUSTER=0` (skip the cluster row, which starts a 6-node cluster: `peers/cluster.rs`),
//! `PEERS_CURVE=0` (skip the concurrency curve: 3 contenders × 5 concurrencies per round),
//! `PEERS_HANDOFFS` (samples per hand-off case, default 200), `PEERS_PY_HANDOFFS` (py-cachify's,
//! default 40: each costs ~100 ms), `PEERS_PYTHON=0` (skip py-cachify), `PYCACHIFY_VENV` (reuse a
//! venv), `REDIS_URL`. Run without `--bench` (e.g. `cargo test --benches`) it only smoke-tests
//! every workload for a few milliseconds.

#[path = "../lock-core/tests/support/mod.rs"]
mod support;

#[path = "peers/cluster.rs"]
mod cluster;

#[path = "peers/probe.rs"]
mod probe;

#[path = "peers/curve.rs"]
mod curve;

#[path = "peers/chart.rs"]
mod chart;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use lockwright::{
    locked, Lock, LockError, MemoryBackend, RedisBackend, RedisConfig, SharedBackend,
};
use redis::aio::MultiplexedConnection;

/// Every lock in the throughput runs has this lease (py-cachify's default `exp`).
const LEASE: Duration = Duration::from_secs(30);
/// `RedisConfig`'s default fence counter TTL (10 minutes), for the raw script calls.
const FENCE_COUNTER_TTL_MS: &str = "600000";
/// The high concurrency.
const MANY: usize = 50;
/// The concurrency curve's chart, relative to the repository root (BENCHMARKS.md embeds it).
const CURVE_CHART: &str = "BENCHMARKS-concurrency.svg";
/// How far (in % of the peak) lockwright's curve may dip past its peak and still count as not
/// falling: the spread between rounds of one run on the 2-core machine.
const CURVE_DROP_TOLERANCE: f64 = 10.0;
/// lockwright's own script (a batch of lock operations): the diagnostic contender sends an
/// acquire and a release, each a batch of one, without the backend around them, to split the
/// gap to the floor into server-side and client-side cost.
const LOCKWRIGHT_BATCH: &str = include_str!("../lock-core/src/redis/batch.lua");
/// The floor's compare-and-delete (Redis' distlock page).
const FLOOR_RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

// ---------------------------------------------------------------------------------------------
// Settings

struct Settings {
    seconds: f64,
    rounds: usize,
    handoffs: usize,
    py_handoffs: usize,
    python: bool,
    /// Run the concurrency curve (`PEERS_CURVE=0` skips it).
    curve: bool,
    quick: bool,
}

impl Settings {
    fn from_env() -> Self {
        let quick = !std::env::args().any(|arg| arg == "--bench");
        let var = |name: &str, default: f64| env_number(name).unwrap_or(default);
        if quick {
            return Settings {
                seconds: 0.05,
                rounds: 1,
                handoffs: 5,
                py_handoffs: 0,
                python: false,
                curve: true,
                quick,
            };
        }
        Settings {
            seconds: var("PEERS_SECONDS", 2.0),
            rounds: var("PEERS_ROUNDS", 3.0) as usize,
            handoffs: var("PEERS_HANDOFFS", 200.0) as usize,
            py_handoffs: var("PEERS_PY_HANDOFFS", 40.0) as usize,
            python: std::env::var("PEERS_PYTHON").map_or(true, |v| v != "0"),
            curve: std::env::var("PEERS_CURVE").map_or(true, |v| v != "0"),
            quick,
        }
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.seconds)
    }
}

fn env_number(name: &str) -> Option<f64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn warm_up(settings: &Settings) -> Duration {
    Duration::from_secs_f64(settings.seconds.min(0.5))
}

// ---------------------------------------------------------------------------------------------
// The contenders

/// The backend `#[locked]` functions use (`backend = peers_backend()`).
static BACKEND: OnceLock<SharedBackend> = OnceLock::new();

fn peers_backend() -> &'static SharedBackend {
    BACKEND.get().expect("backend set up in main")
}

#[locked(key = "peers-locked-{i}", exp = 30, backend = peers_backend())]
async fn locked_pair(i: usize) -> Result<(), LockError> {
    std::hint::black_box(i);
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Contender {
    Floor,
    Handle,
    HandleOnCallersRuntime,
    Locked,
    Blocking,
    Watchdog,
    Rslock,
    Scripts,
}

impl Contender {
    const ALL: [Contender; 8] = [
        Contender::Floor,
        Contender::Handle,
        Contender::HandleOnCallersRuntime,
        Contender::Locked,
        Contender::Blocking,
        Contender::Watchdog,
        Contender::Rslock,
        Contender::Scripts,
    ];

    fn label(self) -> &'static str {
        match self {
            Contender::Floor => "floor: SET NX PX + compare-and-delete script, 1 multiplexed conn",
            Contender::Handle => "lockwright async handle (`acquire` + `release`)",
            Contender::HandleOnCallersRuntime => {
                "lockwright async handle, I/O on the callers' runtime (`RedisConfig::runtime`)"
            }
            Contender::Locked => "lockwright `#[locked]` async fn",
            Contender::Blocking => "lockwright blocking API (OS threads)",
            Contender::Watchdog => "lockwright async handle, no `exp` (watchdog-renewed lease)",
            Contender::Rslock => "rslock 0.10 (`lock` + `unlock`)",
            Contender::Scripts => {
                "diagnostic: lockwright's script (an acquire, then a release) sent raw over the floor's connection"
            }
        }
    }

    /// The py-cachify figure of the same API shape, for the ratio column.
    fn pycachify_peer(self) -> Option<&'static str> {
        match self {
            Contender::Handle | Contender::HandleOnCallersRuntime | Contender::Watchdog => {
                Some("async")
            }
            Contender::Locked => Some("decorator"),
            Contender::Blocking => Some("sync"),
            Contender::Floor | Contender::Rslock | Contender::Scripts => None,
        }
    }
}

/// What the async contenders share.
struct Peers {
    floor: MultiplexedConnection,
    floor_release: redis::Script,
    lockwright_batch: redis::Script,
    backend: SharedBackend,
    /// The same server through a backend whose I/O runs on the bench's runtime.
    backend_on_callers_runtime: SharedBackend,
    rslock: rslock::LockManager,
    nonce: u64,
    /// The bench's own redis-server (for its context switches); `None` with `REDIS_URL`.
    redis_pid: Option<u32>,
}

/// Completed pairs of one worker: `(before the deadline, in all)`.
type Count = (u64, u64);

/// Runs `$pair` until `$deadline`; evaluates to the worker's [`Count`].
macro_rules! pairs_until {
    ($deadline:expr, $pair:expr) => {{
        let mut counted = 0u64;
        loop {
            $pair;
            if Instant::now() >= $deadline {
                break (counted, counted + 1);
            }
            counted += 1;
        }
    }};
}

async fn async_worker(peers: Arc<Peers>, which: Contender, i: usize, deadline: Instant) -> Count {
    match which {
        Contender::Floor => {
            let mut conn = peers.floor.clone();
            let key = format!("peers:floor:{i}");
            let mut serial = 0u64;
            pairs_until!(deadline, {
                serial += 1;
                let token = format!("{:016x}-{i}-{serial}", peers.nonce);
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(LEASE.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .expect("floor SET");
                assert!(set.is_some(), "floor key {key} was taken");
                let freed: i64 = peers
                    .floor_release
                    .key(&key)
                    .arg(&token)
                    .invoke_async(&mut conn)
                    .await
                    .expect("floor release");
                assert_eq!(freed, 1, "floor release of {key}");
            })
        }
        Contender::Handle => {
            let lock = Lock::with_backend(format!("peers-handle-{i}"), &peers.backend).exp(LEASE);
            pairs_until!(deadline, {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
            })
        }
        Contender::HandleOnCallersRuntime => {
            let lock = Lock::with_backend(
                format!("peers-handle-here-{i}"),
                &peers.backend_on_callers_runtime,
            )
            .exp(LEASE);
            pairs_until!(deadline, {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
            })
        }
        Contender::Watchdog => {
            let lock = Lock::with_backend(format!("peers-watchdog-{i}"), &peers.backend);
            pairs_until!(deadline, {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
            })
        }
        Contender::Locked => pairs_until!(deadline, locked_pair(i).await.expect("#[locked]")),
        Contender::Rslock => {
            let key = format!("peers:rslock:{i}");
            pairs_until!(deadline, {
                let lock = peers
                    .rslock
                    .lock(key.as_str(), LEASE)
                    .await
                    .expect("rslock lock");
                peers.rslock.unlock(&lock).await;
            })
        }
        Contender::Scripts => {
            let mut conn = peers.floor.clone();
            let key = format!("peers-scripts:{{{i}}}");
            let fence_key = format!("{key}:fence");
            let owner = format!("{:016x}-task-{i}", peers.nonce);
            let lease = LEASE.as_millis().to_string();
            pairs_until!(deadline, {
                let acquired: Vec<Vec<i64>> = peers
                    .lockwright_batch
                    .key(&key)
                    .key(&fence_key)
                    .arg("PUBLISH")
                    .arg(FENCE_COUNTER_TTL_MS)
                    .arg("a")
                    .arg(&owner)
                    .arg(&lease)
                    .arg("0") // no hold of this owner ended: nothing is a ghost
                    .invoke_async(&mut conn)
                    .await
                    .expect("acquire script");
                assert_eq!(acquired[0][0], 1, "{key} was taken");
                let freed: Vec<Vec<i64>> = peers
                    .lockwright_batch
                    .key(&key)
                    .arg("PUBLISH")
                    .arg(FENCE_COUNTER_TTL_MS)
                    .arg("r")
                    .arg(&owner)
                    .arg(acquired[0][1].to_string())
                    .arg("one")
                    .invoke_async(&mut conn)
                    .await
                    .expect("release script");
                assert_eq!(freed[0][0], 0, "release of {key}");
            })
        }
        Contender::Blocking => unreachable!("threads, not tasks"),
    }
}

fn blocking_worker(backend: &SharedBackend, i: usize, deadline: Instant) -> Count {
    let lock = Lock::with_backend(format!("peers-blocking-{i}"), backend).exp(LEASE);
    pairs_until!(deadline, {
        let guard = lock.acquire_blocking().expect("acquire_blocking");
        guard.release_blocking().expect("release_blocking");
    })
}

/// Pairs/s of `which` with `concurrency` workers for `duration`, and the pairs completed in all.
fn measure(
    rt: &tokio::runtime::Runtime,
    peers: &Arc<Peers>,
    which: Contender,
    concurrency: usize,
    duration: Duration,
) -> (f64, u64) {
    let counts: Vec<Count> = if which == Contender::Blocking {
        let deadline = Instant::now() + duration;
        std::thread::scope(|scope| {
            let workers: Vec<_> = (0..concurrency)
                .map(|i| scope.spawn(move || blocking_worker(&peers.backend, i, deadline)))
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).collect()
        })
    } else {
        rt.block_on(async {
            let deadline = Instant::now() + duration;
            let workers: Vec<_> = (0..concurrency)
                .map(|i| tokio::spawn(async_worker(Arc::clone(peers), which, i, deadline)))
                .collect();
            let mut counts = Vec::with_capacity(concurrency);
            for worker in workers {
                counts.push(worker.await.unwrap());
            }
            counts
        })
    };
    let counted: u64 = counts.iter().map(|c| c.0).sum();
    let completed: u64 = counts.iter().map(|c| c.1).sum();
    (counted as f64 / duration.as_secs_f64(), completed)
}

/// [`measure`] between two [`probe::Snapshot`]s: pairs/s, pairs completed, and what each pair
/// cost redis-server (CPU) and both processes (context switches).
fn measure_probed(
    rt: &tokio::runtime::Runtime,
    peers: &Arc<Peers>,
    which: Contender,
    concurrency: usize,
    duration: Duration,
) -> (f64, u64, probe::PairCost) {
    let mut conn = peers.floor.clone();
    let before = rt.block_on(probe::Snapshot::take(&mut conn, peers.redis_pid));
    let (rate, pairs) = measure(rt, peers, which, concurrency, duration);
    let after = rt.block_on(probe::Snapshot::take(&mut conn, peers.redis_pid));
    (rate, pairs, before.per_pair(&after, pairs))
}

// ---------------------------------------------------------------------------------------------
// Hand-off latency

#[derive(Clone, Copy, Debug)]
enum Handoff {
    /// lockwright waiters: `acquire()` with `nowait(false)`, woken by the release.
    Lockwright,
    /// The floor's waiters poll `SET NX PX`, sleeping this long between attempts (`None`: only
    /// `yield_now`, a busy loop).
    FloorPoll(Option<Duration>),
}

/// What the participants of one hand-off experiment share.
struct Relay {
    base: Instant,
    /// Nanoseconds since `base` (+1) just before the last release call; 0 when none pending.
    released_at: AtomicU64,
    /// Participants inside their acquire call.
    waiting: AtomicUsize,
    samples: Mutex<Vec<Duration>>,
    recorded: tokio::sync::watch::Sender<usize>,
    done: AtomicBool,
    target: usize,
    participants: usize,
}

/// The hand-off cases: waiters on one key besides the holder.
const HANDOFF_WAITERS: [usize; 3] = [1, 10, 100];

/// How long a holder keeps the lock after everyone else is queued, so they are all waiting
/// (listening, or between polls) when it releases.
const HOLD: Duration = Duration::from_millis(3);

enum Held {
    Guard(lockwright::LockGuard),
    Token(String),
}

async fn handoff_acquire(
    how: Handoff,
    lock: &Lock,
    conn: &mut MultiplexedConnection,
    key: &str,
    token: String,
) -> Held {
    match how {
        Handoff::Lockwright => Held::Guard(lock.acquire().await.expect("hand-off acquire")),
        Handoff::FloorPoll(pause) => loop {
            let set: Option<String> = redis::cmd("SET")
                .arg(key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LEASE.as_millis() as u64)
                .query_async(conn)
                .await
                .expect("floor SET");
            if set.is_some() {
                return Held::Token(token);
            }
            match pause {
                Some(pause) => tokio::time::sleep(pause).await,
                None => tokio::task::yield_now().await,
            }
        },
    }
}

async fn handoff_release(
    held: Held,
    conn: &mut MultiplexedConnection,
    script: &redis::Script,
    key: &str,
) {
    match held {
        Held::Guard(guard) => guard.release().await.expect("hand-off release"),
        Held::Token(token) => {
            let freed: i64 = script
                .key(key)
                .arg(&token)
                .invoke_async(conn)
                .await
                .expect("floor release");
            assert_eq!(freed, 1);
        }
    }
}

async fn participant(relay: Arc<Relay>, peers: Arc<Peers>, how: Handoff, key: String, me: usize) {
    let lock = Lock::with_backend(key.as_str(), &peers.backend)
        .nowait(false)
        .timeout(60)
        .exp(LEASE);
    let mut conn = peers.floor.clone();
    let mut recorded = relay.recorded.subscribe();
    let mut serial = 0u64;
    while !relay.done.load(Ordering::Acquire) {
        serial += 1;
        let token = format!("{:016x}-h{me}-{serial}", peers.nonce);
        relay.waiting.fetch_add(1, Ordering::AcqRel);
        let held = handoff_acquire(how, &lock, &mut conn, &key, token).await;
        let now = relay.base.elapsed().as_nanos() as u64;
        relay.waiting.fetch_sub(1, Ordering::AcqRel);
        let released_at = relay.released_at.swap(0, Ordering::AcqRel);
        if released_at != 0 {
            let mut samples = relay.samples.lock().unwrap();
            samples.push(Duration::from_nanos(now - (released_at - 1)));
            if samples.len() >= relay.target {
                relay.done.store(true, Ordering::Release);
            }
            relay.recorded.send_replace(samples.len());
        }
        if relay.done.load(Ordering::Acquire) {
            handoff_release(held, &mut conn, &peers.floor_release, &key).await;
            break;
        }
        // Everyone else queued, then a little more so they are all parked or between polls.
        while relay.waiting.load(Ordering::Acquire) < relay.participants - 1 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tokio::time::sleep(HOLD).await;
        let before = *recorded.borrow_and_update();
        relay.released_at.store(
            relay.base.elapsed().as_nanos() as u64 + 1,
            Ordering::Release,
        );
        handoff_release(held, &mut conn, &peers.floor_release, &key).await;
        // Queue again only once the next holder has recorded, so each hand-off goes to a
        // participant that was already waiting.
        while *recorded.borrow_and_update() == before && !relay.done.load(Ordering::Acquire) {
            if recorded.changed().await.is_err() {
                break;
            }
        }
    }
}

/// Hand-off latencies (sorted) of `how` with one holder and `waiters` waiters.
fn handoff(
    rt: &tokio::runtime::Runtime,
    peers: &Arc<Peers>,
    how: Handoff,
    waiters: usize,
    samples: usize,
    key: String,
) -> Vec<Duration> {
    let relay = Arc::new(Relay {
        base: Instant::now(),
        released_at: AtomicU64::new(0),
        waiting: AtomicUsize::new(0),
        samples: Mutex::new(Vec::with_capacity(samples)),
        recorded: tokio::sync::watch::Sender::new(0),
        done: AtomicBool::new(false),
        target: samples,
        participants: waiters + 1,
    });
    rt.block_on(async {
        let tasks: Vec<_> = (0..=waiters)
            .map(|me| {
                tokio::spawn(participant(
                    Arc::clone(&relay),
                    Arc::clone(peers),
                    how,
                    key.clone(),
                    me,
                ))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let mut samples = std::mem::take(&mut *relay.samples.lock().unwrap());
    samples.sort();
    samples
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((sorted.len() as f64 * q / 100.0).ceil() as usize).max(1);
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------------
// Memory backend (same run as py-cachify's in-memory lock)

fn memory_pairs(rt: &tokio::runtime::Runtime, duration: Duration, blocking: bool) -> f64 {
    let lock = Lock::with_backend("peers-memory", &MemoryBackend::shared()).exp(LEASE);
    let start = Instant::now();
    let deadline = start + duration;
    let mut pairs = 0u64;
    if blocking {
        while Instant::now() < deadline {
            for _ in 0..64 {
                drop(lock.acquire_blocking().expect("memory acquire"));
            }
            pairs += 64;
        }
    } else {
        rt.block_on(async {
            while Instant::now() < deadline {
                for _ in 0..64 {
                    drop(lock.acquire().await.expect("memory acquire"));
                }
                pairs += 64;
            }
        });
    }
    pairs as f64 / start.elapsed().as_secs_f64()
}

// ---------------------------------------------------------------------------------------------
// Server-side cost: INFO commandstats around a short run

#[derive(Default, Clone, Copy)]
struct ServerCost {
    round_trips_per_pair: f64,
    /// Time in the commands themselves (INFO commandstats).
    usec_per_pair: f64,
    /// The whole server process, network I/O included (INFO cpu).
    cpu_usec_per_pair: f64,
}

/// Commands a client sends. Commands run inside scripts are counted by Redis too (and inside
/// their script's time), so `set` counts only for the contenders that send it themselves: the
/// floor and rslock; lockwright's scripts call `SET` inside.
fn top_level_commands(which: Contender) -> &'static [&'static str] {
    match which {
        Contender::Floor | Contender::Rslock => &["set", "evalsha", "eval", "script|load"],
        _ => &["evalsha", "eval", "script|load"],
    }
}

async fn command_stats(conn: &mut MultiplexedConnection) -> HashMap<String, (u64, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO commandstats");
    let mut stats = HashMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let field = |wanted: &str| -> u64 {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(wanted)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        stats.insert(name.to_owned(), (field("calls"), field("usec")));
    }
    stats
}

fn server_cost(
    rt: &tokio::runtime::Runtime,
    peers: &Arc<Peers>,
    which: Contender,
    duration: Duration,
) -> ServerCost {
    let mut conn = peers.floor.clone();
    rt.block_on(async {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut conn)
            .await
            .expect("CONFIG RESETSTAT");
    });
    let (_, pairs, cost) = measure_probed(rt, peers, which, MANY, duration);
    let stats = rt.block_on(command_stats(&mut conn));
    let (calls, usec) = top_level_commands(which)
        .iter()
        .filter_map(|name| stats.get(*name))
        .fold((0, 0), |(c, u), (calls, usec)| (c + calls, u + usec));
    ServerCost {
        round_trips_per_pair: calls as f64 / pairs as f64,
        usec_per_pair: usec as f64 / pairs as f64,
        cpu_usec_per_pair: cost.redis_cpu_usec,
    }
}

// ---------------------------------------------------------------------------------------------
// py-cachify

/// py-cachify's figures (from `benches/pycachify_bench.sh`), or why there are none.
enum PyCachify {
    Measured(serde_json::Value),
    Missing(String),
}

impl PyCachify {
    fn run(settings: &Settings, url: &str) -> PyCachify {
        if !settings.python {
            return PyCachify::Missing("not run (PEERS_PYTHON=0 or smoke test)".into());
        }
        if Command::new("python3")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            return PyCachify::Missing("python3 is not available".into());
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pycachify_bench.sh");
        eprintln!("py-cachify: {script} (venv + pip install, then its workloads)...");
        let output = Command::new("sh")
            .arg(script)
            .arg(url)
            .args(["--seconds", &settings.seconds.to_string()])
            .args(["--rounds", &settings.rounds.to_string()])
            .args(["--handoffs", &settings.py_handoffs.to_string()])
            .stderr(Stdio::inherit())
            .output();
        let output = match output {
            Ok(output) => output,
            Err(err) => return PyCachify::Missing(format!("cannot run {script}: {err}")),
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let Some(line) = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
        else {
            return PyCachify::Missing(format!("no output from {script}"));
        };
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(value) => match value.get("error").and_then(|e| e.as_str()) {
                Some(error) => PyCachify::Missing(error.to_owned()),
                None => PyCachify::Measured(value),
            },
            Err(err) => PyCachify::Missing(format!("unreadable output ({err}): {line}")),
        }
    }

    fn number(&self, name: &str) -> Option<f64> {
        match self {
            PyCachify::Measured(value) => value.get(name)?.as_f64(),
            PyCachify::Missing(_) => None,
        }
    }

    fn pairs(&self, shape: &str, concurrency: usize) -> Option<f64> {
        self.number(&format!("{shape}_c{concurrency}"))
    }

    fn handoff(&self, waiters: usize) -> Option<(f64, f64, u64)> {
        let PyCachify::Measured(value) = self else {
            return None;
        };
        let h = value.get(format!("handoff_{waiters}"))?;
        Some((
            h.get("p50_ms")?.as_f64()?,
            h.get("p99_ms")?.as_f64()?,
            h.get("n")?.as_u64()?,
        ))
    }

    fn why_missing(&self) -> Option<&str> {
        match self {
            PyCachify::Missing(why) => Some(why),
            PyCachify::Measured(_) => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Report helpers

fn pairs_text(rate: f64) -> String {
    let whole = rate.round() as u64;
    let digits = whole.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(a: f64, b: Option<f64>) -> String {
    match b {
        Some(b) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "n/a".into(),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

fn shell(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// One row of the goals table; `met` is `None` when the figure is missing.
fn goal_row(out: &mut String, goal: &str, measured: &str, met: Option<bool>) {
    let verdict = match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "",
    };
    let _ = writeln!(out, "| {goal} | {measured} | {verdict} |");
}

/// The lowest of some ratios, if there are any.
fn lowest(ratios: impl Iterator<Item = f64>) -> Option<f64> {
    ratios.reduce(f64::min)
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let settings = Settings::from_env();
    let server = match std::env::var("REDIS_URL") {
        Ok(_) => None,
        Err(_) => Some(support::RedisServer::start()),
    };
    let url = std::env::var("REDIS_URL")
        .unwrap_or_else(|_| server.as_ref().expect("server started").url());
    let load_before = load_average();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let workers = env_number("PEERS_WORKERS").map_or(cores, |w| w as usize);
    let rt = if workers == 0 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(workers);
        builder
    }
    .enable_all()
    .build()
    .expect("tokio runtime");

    let mut config = RedisConfig::new(url.as_str());
    if let Some(pool) = env_number("PEERS_POOL") {
        config = config.pool_size(pool as usize);
    }
    let backend_on_callers_runtime =
        RedisBackend::connect_blocking(config.clone().runtime(rt.handle().clone()))
            .expect("connect lockwright's RedisBackend on the bench's runtime")
            .shared();
    let backend = RedisBackend::connect_blocking(config)
        .expect("connect lockwright's RedisBackend")
        .shared();
    assert!(
        BACKEND.set(Arc::clone(&backend)).is_ok(),
        "backend set once"
    );
    let (floor, redis_version) = rt.block_on(async {
        let client = redis::Client::open(url.as_str()).expect("redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("floor connection");
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .expect("INFO");
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("unknown")
            .to_owned();
        (conn, version)
    });
    let peers = Arc::new(Peers {
        floor,
        floor_release: redis::Script::new(FLOOR_RELEASE),
        lockwright_batch: redis::Script::new(LOCKWRIGHT_BATCH),
        backend,
        backend_on_callers_runtime,
        rslock: rslock::LockManager::new(vec![url.as_str()]),
        nonce: std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::process::id(),
        ),
        redis_pid: server.as_ref().map(support::RedisServer::pid),
    });
    let duration = settings.duration();

    // Profiling aid: `PEERS_ONLY=Handle` (a contender's name) runs just that contender, at the
    // concurrencies in `PEERS_CONCURRENCY` (default "1,50"), for the rounds, and stops.
    if let Ok(only) = std::env::var("PEERS_ONLY") {
        let which = Contender::ALL
            .into_iter()
            .find(|c| format!("{c:?}").eq_ignore_ascii_case(&only))
            .unwrap_or_else(|| panic!("PEERS_ONLY: no contender {only:?} in {:?}", Contender::ALL));
        let concurrencies: Vec<usize> = std::env::var("PEERS_CONCURRENCY")
            .unwrap_or_else(|_| "1,50".into())
            .split(',')
            .map(|c| c.trim().parse().expect("PEERS_CONCURRENCY: numbers"))
            .collect();
        for concurrency in concurrencies {
            measure(&rt, &peers, which, concurrency, warm_up(&settings));
            for _ in 0..settings.rounds {
                let (rate, _) = measure(&rt, &peers, which, concurrency, duration);
                println!("{which:?} c={concurrency}: {} pairs/s", pairs_text(rate));
            }
        }
        return;
    }

    // Warm-up: connections, scripts, pools, caches.
    eprintln!("warm-up...");
    let warm = warm_up(&settings);
    for which in Contender::ALL {
        measure(&rt, &peers, which, MANY, warm);
        measure(&rt, &peers, which, 1, warm);
    }

    // Throughput, interleaved rounds.
    let mut runs: HashMap<(Contender, usize), Vec<f64>> = HashMap::new();
    for round in 0..settings.rounds {
        for k in 0..Contender::ALL.len() {
            let which = Contender::ALL[(k + round) % Contender::ALL.len()];
            for concurrency in [1, MANY] {
                let (rate, _) = measure(&rt, &peers, which, concurrency, duration);
                runs.entry((which, concurrency)).or_default().push(rate);
            }
        }
        eprintln!(
            "round {}/{}: {}",
            round + 1,
            settings.rounds,
            Contender::ALL
                .iter()
                .map(|c| format!(
                    "{c:?} {:.0}/{:.0}",
                    runs[&(*c, 1)].last().unwrap(),
                    runs[&(*c, MANY)].last().unwrap()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let rate = |which: Contender, concurrency: usize| median(&runs[&(which, concurrency)]);

    // Server-side cost per pair at concurrency 50.
    eprintln!("server-side cost...");
    let cost_duration = Duration::from_secs_f64(settings.seconds.min(1.0));
    let costs: Vec<(Contender, ServerCost)> = Contender::ALL
        .iter()
        .map(|&which| (which, server_cost(&rt, &peers, which, cost_duration)))
        .collect();

    // The concurrency curve, and its chart.
    let curve = settings
        .curve
        .then(|| curve::Curve::run(&rt, &peers, duration, warm, settings.rounds));
    // The smoke test draws too (so the chart code runs in CI), but not over the committed chart.
    let chart_dir = if settings.quick {
        env!("CARGO_TARGET_TMPDIR")
    } else {
        env!("CARGO_MANIFEST_DIR")
    };
    let chart_path = std::path::Path::new(chart_dir).join(CURVE_CHART);
    let chart_result = curve.as_ref().map(|curve| {
        curve.draw(
            &chart_path,
            &format!(
                "lock+unlock pairs/s by concurrency, one redis-server {redis_version}, {cores} cores{}",
                if settings.quick { " (smoke test: figures meaningless)" } else { "" }
            ),
        )
    });

    // Hand-off latency.
    let cases = [
        ("lockwright (woken by the release)", Handoff::Lockwright),
        (
            "floor, polling SET NX PX every 1 ms",
            Handoff::FloorPoll(Some(Duration::from_millis(1))),
        ),
        ("floor, busy polling SET NX PX", Handoff::FloorPoll(None)),
    ];
    let mut handoffs = Vec::new();
    for (name, how) in cases {
        for waiters in HANDOFF_WAITERS {
            eprintln!("hand-off: {name}, {waiters} waiter(s)...");
            let samples = handoff(
                &rt,
                &peers,
                how,
                waiters,
                settings.handoffs,
                format!("peers-handoff-{how:?}-{waiters}"),
            );
            handoffs.push((name, waiters, samples));
        }
    }

    // Memory backend.
    let memory: Vec<(bool, f64)> = [true, false]
        .into_iter()
        .map(|blocking| {
            memory_pairs(&rt, warm, blocking);
            let rounds: Vec<f64> = (0..settings.rounds)
                .map(|_| memory_pairs(&rt, duration, blocking))
                .collect();
            (blocking, median(&rounds))
        })
        .collect();
    let load_after_rust = load_average();

    // py-cachify, against the same server.
    let py = PyCachify::run(&settings, &url);
    let load_after = load_average();

    // ----- report -----
    let mut out = String::new();
    let date = shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]);
    let _ = writeln!(out, "## Run of {date}\n");
    let _ = writeln!(
        out,
        "- command: `cargo bench --bench peers`{}",
        if settings.quick {
            " (smoke test: figures meaningless)"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "- machine: {cores} cores ({}), {}; load average before / after our runs / after py-cachify: {load_before} / {load_after_rust} / {load_after}",
        cpu_model(),
        shell("uname", &["-sr"]),
    );
    let _ = writeln!(
        out,
        "- redis-server {redis_version} on loopback ({}), {}; {}; lockwright `RedisBackend` with {}",
        if server.is_some() { "started by the bench" } else { "REDIS_URL" },
        shell("rustc", &["--version"]),
        if workers == 0 { "tokio current-thread runtime".to_owned() } else { format!("tokio multi-thread runtime with {workers} workers") },
        match env_number("PEERS_POOL") { Some(pool) => format!("pool_size({pool})"), None => "its default config (pool of 2 connections)".to_owned() },
    );
    let _ = writeln!(
        out,
        "- {} rounds × {} s per contender and concurrency, interleaved; figures are the medians of the rounds; every lock has a 30 s lease",
        settings.rounds, settings.seconds
    );
    match &py {
        PyCachify::Measured(v) => {
            let _ = writeln!(
                out,
                "- py-cachify {} with redis-py {} on Python {}, same server, right after",
                v["py_cachify"].as_str().unwrap_or("?"),
                v["redis_py"].as_str().unwrap_or("?"),
                v["python"].as_str().unwrap_or("?")
            );
        }
        PyCachify::Missing(why) => {
            let _ = writeln!(out, "- py-cachify: **not measured**: {why}");
        }
    }

    let _ = writeln!(
        out,
        "\n### Throughput: lock+unlock pairs/s, distinct keys\n"
    );
    let _ = writeln!(
        out,
        "| contender | c=1 | c=50 | c=1 vs floor | c=50 vs floor | c=1 vs rslock | c=50 vs rslock | c=1 vs py-cachify | c=50 vs py-cachify |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for which in Contender::ALL {
        let (one, many) = (rate(which, 1), rate(which, MANY));
        let py_peer = |c| which.pycachify_peer().and_then(|shape| py.pairs(shape, c));
        let rs = |c| (which != Contender::Rslock).then(|| rate(Contender::Rslock, c));
        let fl = |c| (which != Contender::Floor).then(|| rate(Contender::Floor, c));
        let cell = |a: f64, b: Option<f64>| match b {
            None => "—".to_owned(),
            b => ratio(a, b),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            which.label(),
            pairs_text(one),
            pairs_text(many),
            cell(one, fl(1)),
            cell(many, fl(MANY)),
            cell(one, rs(1)),
            cell(many, rs(MANY)),
            if which.pycachify_peer().is_some() {
                ratio(one, py_peer(1))
            } else {
                "—".into()
            },
            if which.pycachify_peer().is_some() {
                ratio(many, py_peer(MANY))
            } else {
                "—".into()
            },
        );
    }
    for (shape, label) in [
        ("async", "py-cachify `async with lock(key)`"),
        ("decorator", "py-cachify `@lock(key=...)` async function"),
        ("sync", "py-cachify `with lock(key)` (threads)"),
    ] {
        match (py.pairs(shape, 1), py.pairs(shape, MANY)) {
            (Some(one), Some(many)) => {
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {} | {} | {} | {} | — | — |",
                    pairs_text(one),
                    pairs_text(many),
                    ratio(one, Some(rate(Contender::Floor, 1))),
                    ratio(many, Some(rate(Contender::Floor, MANY))),
                    ratio(one, Some(rate(Contender::Rslock, 1))),
                    ratio(many, Some(rate(Contender::Rslock, MANY))),
                );
            }
            _ => {
                let _ = writeln!(out, "| {label} | not measured | not measured | | | | | | |");
            }
        }
    }
    let _ = writeln!(
        out,
        "\nThe py-cachify ratio compares like with like: the async handle with `async with lock`, \
         `#[locked]` with its `@lock` decorator, the blocking API with `with lock` in threads."
    );

    let _ = writeln!(out, "\nPer-round figures (c=1 / c=50):\n");
    for which in Contender::ALL {
        let fmt = |c| {
            runs[&(which, c)]
                .iter()
                .map(|r| pairs_text(*r))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "- {}: {} / {}", which.label(), fmt(1), fmt(MANY));
    }

    let _ = writeln!(
        out,
        "\n### Server-side cost per pair (c=50; INFO commandstats and INFO cpu)\n"
    );
    let _ = writeln!(
        out,
        "| contender | round trips per pair | µs in commands per pair | redis-server CPU µs per pair |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (which, cost) in &costs {
        let _ = writeln!(
            out,
            "| {} | {:.2} | {:.2} | {:.2} |",
            which.label(),
            cost.round_trips_per_pair,
            cost.usec_per_pair,
            cost.cpu_usec_per_pair
        );
    }

    if let (Some(curve), Some(chart_result)) = (&curve, &chart_result) {
        out.push_str(&curve.section(&chart_path, chart_result));
    }

    let _ = writeln!(
        out,
        "\n### Contended hand-off: release call → next holder's acquire returns\n"
    );
    let _ = writeln!(
        out,
        "| waiting side | waiters | p50 ms | p99 ms | samples |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|");
    for (name, waiters, samples) in &handoffs {
        if samples.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "| {name} | {waiters} | {} | {} | {} |",
            ms(percentile(samples, 50.0)),
            ms(percentile(samples, 99.0)),
            samples.len()
        );
    }
    for waiters in [1, 10] {
        match py.handoff(waiters) {
            Some((p50, p99, n)) => {
                let _ = writeln!(
                    out,
                    "| py-cachify (polls every 100 ms) | {waiters} | {p50:.3} | {p99:.3} | {n} |"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "| py-cachify (polls every 100 ms) | {waiters} | not measured | | |"
                );
            }
        }
    }

    let _ = writeln!(
        out,
        "\n### In-memory: uncontended lock+unlock pairs/s, one key, one thread / task\n"
    );
    let _ = writeln!(out, "| contender | pairs/s | vs py-cachify in-memory |");
    let _ = writeln!(out, "|---|---:|---:|");
    for (blocking, rate) in &memory {
        let (label, peer) = if *blocking {
            (
                "lockwright `MemoryBackend`, blocking (`acquire_blocking` + drop)",
                "memory_sync",
            )
        } else {
            (
                "lockwright `MemoryBackend`, async (`acquire().await` + drop)",
                "memory_async",
            )
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} |",
            pairs_text(*rate),
            ratio(*rate, py.number(peer))
        );
    }
    for (name, label) in [
        ("memory_sync", "py-cachify in-memory `with lock(key)`"),
        (
            "memory_async",
            "py-cachify in-memory `async with lock(key)`",
        ),
    ] {
        match py.number(name) {
            Some(rate) => {
                let _ = writeln!(out, "| {label} | {} | — |", pairs_text(rate));
            }
            None => {
                let _ = writeln!(out, "| {label} | not measured | |");
            }
        }
    }

    // Goals, for the default backend and for the one on the callers' runtime.
    let throughput_goals = |which: Contender| {
        let vs_py = lowest(
            [1, MANY]
                .iter()
                .filter_map(|&c| Some(rate(which, c) / py.pairs("async", c)?)),
        );
        (
            rate(which, 1) / rate(Contender::Floor, 1),
            rate(which, MANY) / rate(Contender::Floor, MANY),
            rate(which, MANY) / rate(Contender::Rslock, MANY),
            vs_py,
        )
    };
    let lw_handoffs = handoffs
        .iter()
        .filter(|(name, _, s)| name.starts_with("lockwright") && !s.is_empty())
        .map(|(_, w, s)| (*w, percentile(s, 50.0), percentile(s, 99.0)));
    let mem_vs_py = lowest(memory.iter().filter_map(|(blocking, rate)| {
        let peer = if *blocking {
            "memory_sync"
        } else {
            "memory_async"
        };
        Some(rate / py.number(peer)?)
    }));
    let not_measured = format!("not measured: {}", py.why_missing().unwrap_or("?"));
    let _ = writeln!(out, "\n### Goals (async handle API; same run)\n");
    let _ = writeln!(out, "| goal | measured | |");
    let _ = writeln!(out, "|---|---:|---|");
    let ratio_row = |out: &mut String, goal: &str, value: f64, target: f64| {
        goal_row(out, goal, &format!("{value:.2}×"), Some(value >= target))
    };
    for (which, how) in [
        (Contender::Handle, "default config"),
        (
            Contender::HandleOnCallersRuntime,
            "`RedisConfig::runtime(<the callers' runtime>)`",
        ),
    ] {
        let (c1, c50, vs_rslock, py_min) = throughput_goals(which);
        ratio_row(&mut out, &format!("c=1 ≥ 0.95× floor, {how}"), c1, 0.95);
        ratio_row(&mut out, &format!("c=50 ≥ 0.9× floor, {how}"), c50, 0.9);
        ratio_row(
            &mut out,
            &format!("c=50 ≥ 1.3× rslock, {how}"),
            vs_rslock,
            1.3,
        );
        let py_goal = format!("≥ 15× py-cachify (lower of c=1, c=50), {how}");
        match py_min {
            Some(r) => ratio_row(&mut out, &py_goal, r, 15.0),
            None => goal_row(&mut out, &py_goal, &not_measured, None),
        }
    }
    for (waiters, p50, p99) in lw_handoffs {
        let plural = if waiters == 1 { "" } else { "s" };
        for (name, value, bound_ms) in [("p50", p50, 1), ("p99", p99, 5)] {
            goal_row(
                &mut out,
                &format!("hand-off {name} ≤ {bound_ms} ms ({waiters} waiter{plural})"),
                &format!("{} ms", ms(value)),
                Some(value <= Duration::from_millis(bound_ms)),
            );
        }
    }
    if let Some(curve) = &curve {
        let (peak_at, drop) = curve.drop_after_peak();
        goal_row(
            &mut out,
            &format!(
                "past saturation lockwright's throughput does not fall as concurrency rises \
                 (largest drop from the peak to any higher c of {:?}; met when ≤ {CURVE_DROP_TOLERANCE}%, \
                 the noise between rounds)",
                curve::CONCURRENCIES
            ),
            &format!("{drop:.1}% (peak at c={peak_at})"),
            Some(drop <= CURVE_DROP_TOLERANCE),
        );
    }
    let memory_goal = "memory ≥ 40× py-cachify in-memory (lower of blocking, async)";
    match mem_vs_py {
        Some(r) => ratio_row(&mut out, memory_goal, r, 40.0),
        None => goal_row(&mut out, memory_goal, &not_measured, None),
    }
    if std::env::var("PEERS_CLUSTER").as_deref() != Ok("0") {
        out.push_str(&cluster::section(&rt, settings.seconds, settings.rounds));
    }
    print!("{out}");
    drop(peers);
    drop(server);
}
