//! The history checker: several OS processes lock, write through fences and release many keys
//! against a real `redis-server` while a nemesis injects faults; every hold is recorded and the
//! whole history is checked for exclusion and fence violations.
//!
//! Workers: tasks and threads in each process, random keys, nowait and waiting acquires, every
//! lease kind (fixed, renewed by the watchdog, never expiring), held through guards and (one in
//! three) through the handle alone (`lock()`/`try_lock()` … `unlock()`, renewed until the unlock
//! when the lease is), mostly short holds and a few that outlive their lease. Each hold does a read-modify-write of its key's counter on a second
//! server (the protected resource, which the nemesis leaves alone), fenced on the read and on
//! the write.
//!
//! Nemesis, in turn and at random moments: kill -9 a worker (and start another), SIGSTOP one
//! past every lease, restart redis-server without persistence, from a snapshot taken just before
//! (with persistence) and from a snapshot a second old, and kill the pub/sub connections.
//!
//! Checked, for every key: two holds overlap only when the earlier holder's lease had really run
//! out (its release then reports it) or Redis lost data in between; fences grow in acquisition
//! order, across every fault; a live holder's fenced write is never refused; the counter equals
//! the accepted writes.
//!
//! CI runs the short mode (a few seconds, every fault once). The long mode:
//! `LOCKWRIGHT_HISTORY_OPS=1000000 LOCKWRIGHT_HISTORY_PROCESSES=4` (operations: acquire attempts
//! and releases), `LOCKWRIGHT_HISTORY_KEYS` keys (default 16).

mod conformance;
mod support;

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lock_core::{Lock, LockError, LockGuard, RedisBackend, RedisConfig, SharedBackend};

use conformance::key;
use support::fenced::{fenced_read, fenced_write, read_counter};
use support::processes::{env, env_or, monotonic_ns, Worker};
use support::{raw, RedisServer};

/// How a hold's lease was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseKind {
    /// `exp`, in ms.
    Fixed(u64),
    /// Renewed by the watchdog.
    Renewed,
    Never,
}

/// How a hold's release went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Released,
    /// `LeaseLost`: the hold was gone.
    Lost,
    /// A backend error (Redis down): unknown.
    Failed,
}

/// One hold as a worker saw it; times are CLOCK_MONOTONIC ns.
#[derive(Debug, Clone)]
pub struct Hold {
    pub key: u32,
    pub fence: u64,
    pub owner: u32,
    pub acquire_start: u64,
    pub acquired: u64,
    pub release_start: u64,
    pub outcome: Outcome,
    pub write_accepted: bool,
    pub lease: LeaseKind,
    /// The owner's hold count right after the acquire: above 1, it re-entered a hold still
    /// there (one whose release failed, say), keeping that hold's fence.
    pub hold_count: u32,
    /// Held through the handle (`lock()` … `unlock()`), not a guard.
    pub by_handle: bool,
}

mod worker {
    use super::*;

    pub use crate::support::processes::Rng;

    pub struct Plan {
        pub lock: Lock,
        pub key: u64,
        pub hold_for: Duration,
        pub lease: LeaseKind,
        /// `None`: nowait.
        pub wait: Option<Duration>,
        /// Held through the handle (`lock()`/`try_lock()` … `unlock()`, no guard).
        pub by_handle: bool,
    }

    pub fn plan(rng: &mut Rng, backend: &SharedBackend, prefix: &str, keys: u64) -> Plan {
        let key = rng.below(keys);
        let mut lock = Lock::with_backend(format!("{prefix}-{key}"), backend);
        let wait = match rng.below(3) {
            0 => None,
            _ => Some(Duration::from_secs_f64(
                0.005 + rng.below(200) as f64 / 1000.0,
            )),
        };
        lock = match wait {
            None => lock.nowait(true),
            Some(timeout) => lock.nowait(false).timeout(timeout),
        };
        let lease = match rng.below(20) {
            0..=9 => LeaseKind::Fixed(100 + rng.below(300)),
            10..=17 => LeaseKind::Renewed,
            _ => LeaseKind::Never,
        };
        lock = match lease {
            LeaseKind::Fixed(ms) => lock.exp(ms as f64 / 1000.0),
            LeaseKind::Renewed => lock.renewed_lease(0.3),
            LeaseKind::Never => lock.never_expires(),
        };
        // Mostly no wait at all; one in two hundred outlives a fixed lease (a lost lease).
        let hold_for = match (rng.below(200), lease) {
            (0, LeaseKind::Fixed(ms)) => Duration::from_millis(ms + 50),
            (1..=20, _) => Duration::from_millis(rng.below(3)),
            _ => Duration::ZERO,
        };
        let by_handle = rng.below(3) == 0;
        Plan {
            lock,
            key,
            hold_for,
            lease,
            wait,
            by_handle,
        }
    }

    /// How a worker holds: a guard, or the handle alone (Hazelcast's `lock()`; its fence and
    /// count are read back with `state()`).
    pub enum Held {
        Guard(LockGuard),
        Handle { fence: u64, count: u32 },
    }

    impl Held {
        pub fn fence_and_count(&self) -> (u64, u32) {
            match self {
                Held::Guard(guard) => (guard.fence().0, guard.hold_count_at_acquire()),
                Held::Handle { fence, count } => (*fence, *count),
            }
        }
    }

    /// A handle hold's fence and count, or `None` (and nothing held) when the hold was lost
    /// before they could be read.
    fn handle_hold(state: Result<lock_core::LockState, LockError>) -> Option<Held> {
        match state {
            Ok(state) if state.held_by_owner => Some(Held::Handle {
                fence: state.fence?.0,
                count: state.hold_count,
            }),
            _ => None,
        }
    }

    /// Takes the plan's hold with the blocking API.
    pub fn hold_blocking(plan: &Plan) -> Option<Held> {
        if !plan.by_handle {
            return plan.lock.acquire_blocking().ok().map(Held::Guard);
        }
        let taken = match plan.wait {
            None => plan.lock.try_lock_blocking(),
            Some(wait) => plan.lock.try_lock_for_blocking(wait),
        };
        if !taken.unwrap_or(false) {
            return None;
        }
        let held = handle_hold(plan.lock.state_blocking());
        if held.is_none() {
            let _ = plan.lock.unlock_blocking();
        }
        held
    }

    /// Takes the plan's hold with the async API: a waiting handle hold is a `lock()` cut off at
    /// the wait's end (which takes nothing).
    pub async fn hold(plan: &Plan) -> Option<Held> {
        if !plan.by_handle {
            return plan.lock.acquire().await.ok().map(Held::Guard);
        }
        let taken = match plan.wait {
            None => plan.lock.try_lock().await.unwrap_or(false),
            Some(wait) => matches!(
                tokio::time::timeout(wait, plan.lock.lock()).await,
                Ok(Ok(_))
            ),
        };
        if !taken {
            return None;
        }
        let held = handle_hold(plan.lock.state().await);
        if held.is_none() {
            let _ = plan.lock.unlock().await;
        }
        held
    }

    /// Read-modify-write of the key's counter on the resource server, fenced on the read and
    /// on the write: whether the write was accepted.
    pub fn write_counter(conn: &mut redis::Connection, prefix: &str, key: u64, fence: u64) -> bool {
        let counter = format!("{prefix}-{key}:counter");
        fenced_read(conn, &counter, fence)
            .is_some_and(|value| fenced_write(conn, &counter, fence, value + 1))
    }

    pub fn line(
        plan: &Plan,
        owner: &str,
        (fence, count): (u64, u32),
        times: [u64; 3],
        outcome: Outcome,
        accepted: bool,
    ) -> String {
        let lease = match plan.lease {
            LeaseKind::Fixed(ms) => ms.to_string(),
            LeaseKind::Renewed => "r".to_owned(),
            LeaseKind::Never => "n".to_owned(),
        };
        let outcome = match outcome {
            Outcome::Released => "ok",
            Outcome::Lost => "lost",
            Outcome::Failed => "err",
        };
        format!(
            "h {} {fence} {owner} {} {} {} {outcome} {} {lease} {count} {}",
            plan.key,
            times[0],
            times[1],
            times[2],
            u8::from(accepted),
            if plan.by_handle { "handle" } else { "guard" }
        )
    }

    /// Counts shared by a worker's owners, and the lines they print (one writer, so lines never
    /// interleave).
    pub struct Shared {
        pub ops: AtomicU64,
        pub stop: AtomicBool,
        pub out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    }

    impl Shared {
        pub fn emit(&self, line: &str) {
            use std::io::Write;
            let mut out = self.out.lock().unwrap();
            writeln!(out, "@ {line}").unwrap();
        }

        pub fn flush(&self) {
            use std::io::Write;
            self.out.lock().unwrap().flush().unwrap();
        }
    }

    fn outcome<T>(released: Result<T, LockError>) -> Outcome {
        match released {
            Ok(_) => Outcome::Released,
            Err(LockError::LeaseLost { .. }) => Outcome::Lost,
            Err(_) => Outcome::Failed,
        }
    }

    pub fn run() {
        let url = env("LOCKWRIGHT_URL");
        let resource_url = env("LOCKWRIGHT_RESOURCE_URL");
        let prefix = env("LOCKWRIGHT_KEY");
        let keys: u64 = env("LOCKWRIGHT_KEYS").parse().unwrap();
        let name = env("LOCKWRIGHT_WORKER");
        let seed: u64 = env("LOCKWRIGHT_SEED").parse().unwrap();
        let config = RedisConfig::new(url.as_str())
            .command_timeout(1)
            .unwrap()
            .connect_timeout(1)
            .unwrap();
        let backend = loop {
            // The nemesis may be restarting the server right now.
            match RedisBackend::connect_blocking(config.clone()) {
                Ok(backend) => break backend.shared(),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let shared = Arc::new(Shared {
            ops: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            out: Mutex::new(std::io::BufWriter::new(std::io::stdout())),
        });
        shared.emit(&format!(
            "nonce {:016x}",
            lock_core::Owner::current().process_nonce()
        ));
        shared.flush();
        // The parent says `stop` on stdin.
        {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    if line.map_or(true, |line| line == "stop") {
                        break;
                    }
                }
                shared.stop.store(true, Ordering::Release);
            });
        }
        // Progress for the parent, which stops the run at its operation count.
        {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || loop {
                std::thread::sleep(Duration::from_millis(250));
                shared.emit(&format!("ops {}", shared.ops.load(Ordering::Relaxed)));
                shared.flush();
            });
        }
        // Blocking owners: threads.
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (backend, shared) = (backend.clone(), Arc::clone(&shared));
                let (resource_url, prefix, owner) =
                    (resource_url.clone(), prefix.clone(), format!("{name}t{t}"));
                std::thread::spawn(move || {
                    let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    let mut conn = raw(&resource_url);
                    while !shared.stop.load(Ordering::Acquire) {
                        let plan = plan(&mut rng, &backend, &prefix, keys);
                        let acquire_start = monotonic_ns();
                        shared.ops.fetch_add(1, Ordering::Relaxed);
                        let Some(held) = hold_blocking(&plan) else {
                            continue;
                        };
                        let acquired = monotonic_ns();
                        let (fence, count) = held.fence_and_count();
                        std::thread::sleep(plan.hold_for);
                        let accepted = write_counter(&mut conn, &prefix, plan.key, fence);
                        let release_start = monotonic_ns();
                        shared.ops.fetch_add(1, Ordering::Relaxed);
                        let outcome = outcome(match held {
                            Held::Guard(guard) => guard.release_blocking(),
                            Held::Handle { .. } => plan.lock.unlock_blocking(),
                        });
                        let times = [acquire_start, acquired, release_start];
                        shared.emit(&line(
                            &plan,
                            &owner,
                            (fence, count),
                            times,
                            outcome,
                            accepted,
                        ));
                    }
                })
            })
            .collect();
        // Async owners: tasks.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..4u64)
                .map(|t| {
                    let (backend, shared) = (backend.clone(), Arc::clone(&shared));
                    let (resource_url, prefix, owner) =
                        (resource_url.clone(), prefix.clone(), format!("{name}a{t}"));
                    tokio::spawn(async move {
                        let mut rng = Rng(seed ^ (t + 16).wrapping_mul(0x2545_f491_4f6c_dd1d));
                        let conn = Arc::new(Mutex::new(raw(&resource_url)));
                        while !shared.stop.load(Ordering::Acquire) {
                            let plan = plan(&mut rng, &backend, &prefix, keys);
                            let acquire_start = monotonic_ns();
                            shared.ops.fetch_add(1, Ordering::Relaxed);
                            let Some(held) = hold(&plan).await else {
                                continue;
                            };
                            let acquired = monotonic_ns();
                            let (fence, count) = held.fence_and_count();
                            if !plan.hold_for.is_zero() {
                                tokio::time::sleep(plan.hold_for).await;
                            }
                            let (conn2, prefix2, key) =
                                (Arc::clone(&conn), prefix.clone(), plan.key);
                            let accepted = tokio::task::spawn_blocking(move || {
                                write_counter(&mut conn2.lock().unwrap(), &prefix2, key, fence)
                            })
                            .await
                            .unwrap();
                            let release_start = monotonic_ns();
                            shared.ops.fetch_add(1, Ordering::Relaxed);
                            let outcome = outcome(match held {
                                Held::Guard(guard) => guard.release().await,
                                Held::Handle { .. } => plan.lock.unlock().await,
                            });
                            let times = [acquire_start, acquired, release_start];
                            shared.emit(&line(
                                &plan,
                                &owner,
                                (fence, count),
                                times,
                                outcome,
                                accepted,
                            ));
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        for thread in threads {
            thread.join().unwrap();
        }
        shared.emit(&format!("ops {}", shared.ops.load(Ordering::Relaxed)));
        shared.emit("done");
        shared.flush();
    }
}

/// Entry point of the worker processes: not a test of its own.
#[test]
#[ignore = "run as a child process by the history test"]
fn history_worker() {
    worker::run();
}

/// What the nemesis did, and when (CLOCK_MONOTONIC ns).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    KillWorker,
    PauseWorker,
    RestartWithoutPersistence,
    RestartFromSnapshot,
    RestartFromOlderSnapshot,
    KillPubSub,
}

const FAULTS: [Fault; 6] = [
    Fault::KillWorker,
    Fault::PauseWorker,
    Fault::RestartWithoutPersistence,
    Fault::RestartFromSnapshot,
    Fault::RestartFromOlderSnapshot,
    Fault::KillPubSub,
];

/// A stretch of time in which Redis may have lost lock data (ns).
#[derive(Clone, Copy, Debug)]
pub struct DataLoss {
    pub from: u64,
    pub to: u64,
}

/// Every violation of the guarantees found in `holds` (empty: the history is correct).
pub fn violations(holds: &[Hold], losses: &[DataLoss]) -> Vec<String> {
    let mut found = Vec::new();
    let mut by_key: HashMap<u32, Vec<&Hold>> = HashMap::new();
    for hold in holds {
        by_key.entry(hold.key).or_default().push(hold);
    }
    let lost_data_between =
        |from: u64, to: u64| losses.iter().any(|loss| loss.from <= to && loss.to >= from);
    for (key, mut holds) in by_key {
        // Exclusion, in the server's order of acquisition: the fence order (checked against
        // real time below). A hold took effect somewhere between its acquire call and its
        // return (a process paused in between returns late), so two holds surely overlapped
        // only when the later one had returned before the earlier one's release was called.
        holds.sort_by_key(|hold| (hold.fence, hold.acquired));
        let mut open: Vec<&Hold> = Vec::new();
        let mut owner_of_fence: HashMap<u64, u32> = HashMap::new();
        for later in &holds {
            if let Some(owner) = owner_of_fence.insert(later.fence, later.owner) {
                if owner != later.owner {
                    found.push(format!(
                        "key {key}: fence {} handed to {owner} and to {}",
                        later.fence, later.owner
                    ));
                }
            }
            // Holds released before this one's acquire was called cannot overlap it, nor any
            // hold after it in fence order (those took effect later still).
            open.retain(|earlier| earlier.release_start > later.acquire_start);
            for earlier in open.iter().filter(|earlier| {
                earlier.release_start > later.acquired && earlier.fence != later.fence
            }) {
                // Both believed they held the key at once: legal only when Redis lost data in
                // between, or when the earlier lease had really run out; either way the earlier
                // holder cannot have released it fine.
                if earlier.outcome == Outcome::Released {
                    found.push(format!(
                        "key {key}: {} (fence {}) and {} (fence {}) overlapped, the earlier one released ok",
                        earlier.owner, earlier.fence, later.owner, later.fence
                    ));
                    continue;
                }
                if lost_data_between(earlier.acquire_start, later.acquired) {
                    continue;
                }
                match earlier.lease {
                    // A fixed lease starts after the acquire call; it cannot have run out before
                    // that plus the lease (2 ms for Redis' millisecond expiry).
                    LeaseKind::Fixed(ms) => {
                        let lease_end = earlier.acquire_start + ms * 1_000_000;
                        if later.acquired + 2_000_000 < lease_end {
                            found.push(format!(
                                "key {key}: {} (fence {}) got the key {} ms before {}'s {ms} ms lease ended: {later:?} after {earlier:?}",
                                later.owner,
                                later.fence,
                                (lease_end - later.acquired) / 1_000_000,
                                earlier.owner,
                            ));
                        }
                    }
                    // Renewed: lost when its process stopped renewing (paused); it said so.
                    LeaseKind::Renewed => {}
                    LeaseKind::Never => found.push(format!(
                        "key {key}: {} (fence {}) got the key while {} (fence {}) held it with no expiry",
                        later.owner, later.fence, earlier.owner, earlier.fence
                    )),
                }
            }
            open.push(later);
        }
        // Fences in acquisition order: a hold whose acquire began after another's returned has
        // a larger fence, whatever happened in between (takeovers and Redis faults included).
        holds.sort_by_key(|hold| hold.acquired);
        let mut by_start = holds.clone();
        by_start.sort_by_key(|hold| hold.acquire_start);
        let mut highest: Option<&Hold> = None;
        let mut next = 0;
        for later in &by_start {
            while next < holds.len() && holds[next].acquired < later.acquire_start {
                if highest.map_or(true, |h| holds[next].fence > h.fence) {
                    highest = Some(holds[next]);
                }
                next += 1;
            }
            // A re-entry keeps the fence of the hold it re-enters, which nothing can have passed.
            let regressed = |earlier: &&Hold| match later.hold_count {
                1 => later.fence <= earlier.fence,
                _ => later.fence < earlier.fence,
            };
            if let Some(earlier) = highest.filter(regressed) {
                found.push(format!(
                    "key {key}: fence {} after fence {} in acquisition order",
                    later.fence, earlier.fence
                ));
            }
        }
        for hold in &holds {
            if hold.outcome == Outcome::Released && !hold.write_accepted {
                found.push(format!(
                    "key {key}: live holder {} (fence {}) had its write refused",
                    hold.owner, hold.fence
                ));
            }
        }
    }
    found
}

/// Parses a worker's hold line (after `@ `), naming owners by number.
fn parse_hold(line: &str, owners: &Mutex<HashMap<String, u32>>) -> Hold {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 12, "bad history line {line:?}");
    let owner = {
        let mut owners = owners.lock().unwrap();
        let next = owners.len() as u32;
        *owners.entry(f[3].to_owned()).or_insert(next)
    };
    Hold {
        key: f[1].parse().unwrap(),
        fence: f[2].parse().unwrap(),
        owner,
        acquire_start: f[4].parse().unwrap(),
        acquired: f[5].parse().unwrap(),
        release_start: f[6].parse().unwrap(),
        outcome: match f[7] {
            "ok" => Outcome::Released,
            "lost" => Outcome::Lost,
            _ => Outcome::Failed,
        },
        write_accepted: f[8] == "1",
        lease: match f[9] {
            "r" => LeaseKind::Renewed,
            "n" => LeaseKind::Never,
            ms => LeaseKind::Fixed(ms.parse().unwrap()),
        },
        hold_count: f[10].parse().unwrap(),
        by_handle: f[11] == "handle",
    }
}

/// Messages from the workers' reader threads, naming the worker by its generation.
enum Report {
    Nonce(u64, String),
    Ops(u64, u64),
    Hold(Hold),
    Done(u64),
}

/// One worker process and the thread that reads what it prints.
struct Running {
    worker: Worker,
    generation: u64,
    nonce: Option<String>,
    ops: u64,
    done: bool,
}

struct Run {
    url: String,
    resource_url: String,
    prefix: String,
    keys: u64,
    reports: mpsc::Sender<Report>,
    owners: Arc<Mutex<HashMap<String, u32>>>,
    generation: u64,
}

impl Run {
    fn start_worker(&mut self, slot: usize) -> Running {
        self.generation += 1;
        let mut worker = Worker::start(
            "history_worker",
            "history",
            &[
                ("LOCKWRIGHT_URL", self.url.clone()),
                ("LOCKWRIGHT_RESOURCE_URL", self.resource_url.clone()),
                ("LOCKWRIGHT_KEY", self.prefix.clone()),
                ("LOCKWRIGHT_KEYS", self.keys.to_string()),
                ("LOCKWRIGHT_WORKER", format!("w{slot}g{}", self.generation)),
                ("LOCKWRIGHT_SEED", (0x5eed ^ self.generation).to_string()),
            ],
        );
        let mut stdout = worker.take_stdout();
        let generation = self.generation;
        let (reports, owners) = (self.reports.clone(), Arc::clone(&self.owners));
        std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                    return; // killed, or finished
                }
                let Some((_, payload)) = line.trim_end().split_once("@ ") else {
                    continue; // test-harness output
                };
                let report = if let Some(nonce) = payload.strip_prefix("nonce ") {
                    Report::Nonce(generation, nonce.to_owned())
                } else if let Some(ops) = payload.strip_prefix("ops ") {
                    Report::Ops(generation, ops.parse().unwrap())
                } else if payload == "done" {
                    Report::Done(generation)
                } else {
                    Report::Hold(parse_hold(payload, &owners))
                };
                if reports.send(report).is_err() {
                    return;
                }
            }
        });
        Running {
            worker,
            generation,
            nonce: None,
            ops: 0,
            done: false,
        }
    }
}

/// Frees the keys held by a killed worker's owners (its never-expiring holds would block their
/// keys forever; nobody will release them, and none of them is in the history).
const FREE_DEAD_OWNERS: &str = r"
local freed = 0
for _, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and string.sub(held, 1, string.len(ARGV[1])) == ARGV[1] then
    redis.call('DEL', key)
    redis.call('PUBLISH', key .. ':free', 'free')
    freed = freed + 1
  end
end
return freed
";

#[test]
fn history_of_many_processes_shows_no_violation() {
    let processes: usize = env_or("LOCKWRIGHT_HISTORY_PROCESSES", 3);
    let target_ops: u64 = env_or("LOCKWRIGHT_HISTORY_OPS", 0);
    let secs: f64 = env_or("LOCKWRIGHT_HISTORY_SECS", 8.0);
    let keys: u64 = env_or("LOCKWRIGHT_HISTORY_KEYS", 16);
    let mut server = RedisServer::start();
    let resource = RedisServer::start();
    let (reports, incoming) = mpsc::channel();
    let mut run = Run {
        url: server.url(),
        resource_url: resource.url(),
        prefix: key("history"),
        keys,
        reports,
        owners: Default::default(),
        generation: 0,
    };
    let lock_keys: Vec<String> = {
        let backend = RedisBackend::connect_blocking(RedisConfig::new(server.url())).unwrap();
        (0..keys)
            .map(|k| backend.lock_key(&format!("{}-{k}", run.prefix)))
            .collect()
    };
    let mut workers: Vec<Running> = (0..processes).map(|slot| run.start_worker(slot)).collect();
    let mut holds = Vec::new();
    let mut faults: HashMap<Fault, u64> = HashMap::new();
    let mut losses = Vec::new();
    let mut fault_log = Vec::new();
    let mut retired_ops = 0u64;
    let started = Instant::now();
    let mut rng = worker::Rng(0xfa17_5eed);
    let mut next_fault = started + Duration::from_millis(500);
    let mut fault_turn = 0usize;
    // When the older snapshot's restart is due, and when that snapshot was taken (ns).
    let mut older_snapshot_due: Option<(Instant, u64)> = None;
    let mut pause_until: Option<(usize, Instant)> = None;
    let mut stopping = false;
    // Reports of a worker killed since are dropped, but for its holds.
    let report = |report: Report, workers: &mut [Running], holds: &mut Vec<Hold>| {
        let of = |generation: u64, workers: &mut [Running]| {
            workers.iter_mut().position(|w| w.generation == generation)
        };
        match report {
            Report::Hold(hold) => holds.push(hold),
            Report::Nonce(generation, nonce) => {
                if let Some(w) = of(generation, workers) {
                    workers[w].nonce = Some(nonce);
                }
            }
            Report::Ops(generation, ops) => {
                if let Some(w) = of(generation, workers) {
                    workers[w].ops = ops;
                }
            }
            Report::Done(generation) => {
                if let Some(w) = of(generation, workers) {
                    workers[w].done = true;
                }
            }
        }
    };
    loop {
        while let Ok(message) = incoming.recv_timeout(Duration::from_millis(5)) {
            report(message, &mut workers, &mut holds);
        }
        let ops = retired_ops + workers.iter().map(|w| w.ops).sum::<u64>();
        let finished = if target_ops > 0 {
            ops >= target_ops
        } else {
            started.elapsed().as_secs_f64() >= secs
        };
        if finished && !stopping && pause_until.is_none() && older_snapshot_due.is_none() {
            stopping = true;
            for running in &mut workers {
                running.worker.say("stop");
            }
        }
        if stopping {
            if workers.iter().all(|w| w.done) {
                break;
            }
            continue;
        }
        let now = Instant::now();
        if let Some((slot, until)) = pause_until {
            if now >= until {
                workers[slot].worker.signal("-CONT");
                pause_until = None;
            }
        }
        if let Some((due, saved)) = older_snapshot_due {
            if now >= due {
                server.restart(); // from the snapshot taken a second ago
                losses.push(DataLoss {
                    from: saved,
                    to: monotonic_ns(),
                });
                older_snapshot_due = None;
            }
        }
        if now < next_fault || pause_until.is_some() || older_snapshot_due.is_some() {
            continue;
        }
        // The next fault: each kind in turn (so a short run has them all), at random moments.
        let fault = FAULTS[fault_turn % FAULTS.len()];
        fault_turn += 1;
        next_fault = now + Duration::from_millis(300 + rng.below(900));
        *faults.entry(fault).or_default() += 1;
        fault_log.push((fault, monotonic_ns()));
        let slot = rng.below(processes as u64) as usize;
        match fault {
            Fault::KillWorker => {
                workers[slot].worker.signal("-KILL");
                let _ = workers[slot].worker.child.wait();
                retired_ops += workers[slot].ops;
                if let Some(nonce) = workers[slot].nonce.clone() {
                    let free = redis::Script::new(FREE_DEAD_OWNERS);
                    let mut script = free.prepare_invoke();
                    for key in &lock_keys {
                        script.key(key);
                    }
                    let _: redis::RedisResult<i64> =
                        script.arg(nonce).invoke(&mut raw(&server.url()));
                }
                workers[slot] = run.start_worker(slot);
            }
            Fault::PauseWorker => {
                // Past every lease: fixed ones (up to 400 ms) and the watchdog's 300 ms.
                workers[slot].worker.signal("-STOP");
                pause_until = Some((slot, now + Duration::from_millis(700)));
            }
            Fault::RestartWithoutPersistence => {
                let from = monotonic_ns();
                let _ = std::fs::remove_file(server.snapshot_file());
                server.restart();
                losses.push(DataLoss {
                    from,
                    to: monotonic_ns(),
                });
            }
            Fault::RestartFromSnapshot => {
                // Writes between SAVE and the kill are lost: a few milliseconds.
                let from = monotonic_ns();
                let _: redis::RedisResult<()> = redis::cmd("SAVE").query(&mut raw(&server.url()));
                server.restart();
                losses.push(DataLoss {
                    from,
                    to: monotonic_ns(),
                });
            }
            Fault::RestartFromOlderSnapshot => {
                let saved = monotonic_ns();
                let _: redis::RedisResult<()> = redis::cmd("SAVE").query(&mut raw(&server.url()));
                older_snapshot_due = Some((now + Duration::from_secs(1), saved));
            }
            Fault::KillPubSub => {
                let _: redis::RedisResult<i64> = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("TYPE")
                    .arg("pubsub")
                    .query(&mut raw(&server.url()));
            }
        }
    }
    for running in &mut workers {
        assert!(
            running.worker.child.wait().unwrap().success(),
            "a worker failed"
        );
    }
    while let Ok(message) = incoming.try_recv() {
        report(message, &mut workers, &mut holds);
    }
    let ops = retired_ops + workers.iter().map(|w| w.ops).sum::<u64>();
    let mut conn = raw(&resource.url());
    let accepted = holds.iter().filter(|hold| hold.write_accepted).count() as u64;
    let counters: u64 = (0..keys)
        .map(|k| read_counter(&mut conn, &format!("{}-{k}:counter", run.prefix)))
        .sum();
    let lost = holds.iter().filter(|h| h.outcome == Outcome::Lost).count();
    let by_handle = holds.iter().filter(|h| h.by_handle).count();
    let violations = violations(&holds, &losses);
    let mut fault_counts: Vec<String> = FAULTS
        .iter()
        .map(|fault| format!("{fault:?} {}", faults.get(fault).copied().unwrap_or(0)))
        .collect();
    fault_counts.sort();
    println!(
        "history: {processes} processes x (4 tasks + 2 threads), {keys} keys, {:.1} s, {ops} lock \
         operations, {} holds ({by_handle} through the handle, no guard), {lost} lost leases, \
         {accepted} accepted writes \
         ({counters} in the fenced counters, which also hold those of killed workers); faults: \
         {}; {} violations",
        started.elapsed().as_secs_f64(),
        holds.len(),
        fault_counts.join(", "),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{:#?}\nfaults: {fault_log:?}\ndata losses: {losses:?}",
        &violations[..violations.len().min(50)]
    );
    // Writes the workers did not live to report (killed) may be in the counter too.
    assert!(
        counters >= accepted,
        "the fenced counter lost updates: {counters} < {accepted}"
    );
    assert!(
        holds.len() > 200,
        "too few holds to mean anything: {}",
        holds.len()
    );
    assert!(
        lost > 0,
        "the run produced no lost lease, so it tested no takeover"
    );
    assert!(
        FAULTS.iter().all(|fault| faults.contains_key(fault)),
        "not every kind of fault was injected: {fault_counts:?}"
    );
}

/// The checker itself: each kind of bad history is reported, a good one is not.
#[test]
fn history_checker_flags_each_kind_of_violation() {
    let ms = 1_000_000;
    let hold = |owner: u32, fence, acquired_ms: u64, released_ms: u64| Hold {
        key: 0,
        fence,
        owner,
        acquire_start: acquired_ms * ms - ms / 2,
        acquired: acquired_ms * ms,
        release_start: released_ms * ms,
        outcome: Outcome::Released,
        write_accepted: true,
        lease: LeaseKind::Fixed(100),
        hold_count: 1,
        by_handle: false,
    };
    let lost = |hold: Hold| Hold {
        outcome: Outcome::Lost,
        ..hold
    };
    // Sequential holds with growing fences; a takeover after a lapsed, reported lease; one
    // across a Redis data loss.
    let good = vec![
        hold(1, 1, 10, 20),
        hold(2, 2, 30, 40),
        Hold {
            write_accepted: false,
            ..lost(hold(3, 3, 50, 400))
        },
        hold(4, 4, 200, 210),
        lost(Hold {
            lease: LeaseKind::Never,
            ..hold(5, 5, 500, 700)
        }),
        hold(6, 6, 600, 610),
        // The same owner re-entering a hold whose release failed keeps its fence.
        Hold {
            outcome: Outcome::Failed,
            ..hold(7, 7, 620, 630)
        },
        Hold {
            hold_count: 2,
            ..hold(7, 7, 640, 650)
        },
    ];
    let losses = [DataLoss {
        from: 550 * ms,
        to: 560 * ms,
    }];
    // A process paused while its acquire's reply was on its way returns late: its hold (the
    // smaller fence) really came first and lapsed before the next one took the key.
    let paused_acquirer = vec![
        Hold {
            lease: LeaseKind::Renewed,
            acquire_start: 1000 * ms,
            ..lost(hold(8, 8, 1700, 1710))
        },
        Hold {
            acquire_start: 1500 * ms,
            lease: LeaseKind::Fixed(345),
            ..lost(hold(9, 9, 1500, 1720))
        },
    ];
    let good: Vec<Hold> = good.into_iter().chain(paused_acquirer).collect();
    assert_eq!(violations(&good, &losses), Vec::<String>::new());

    let overlap_released_ok = vec![hold(1, 1, 10, 300), hold(2, 2, 200, 210)];
    let early_takeover = vec![lost(hold(1, 1, 10, 300)), hold(2, 2, 50, 60)];
    let never_expiring_taken = vec![
        lost(Hold {
            lease: LeaseKind::Never,
            ..hold(1, 1, 10, 300)
        }),
        hold(2, 2, 200, 210),
    ];
    let fence_regression = vec![hold(1, 5, 10, 20), hold(2, 4, 30, 40)];
    let fence_regression_across_data_loss = vec![hold(1, 5, 10, 20), hold(2, 4, 600, 610)];
    let takeover_fence_regression = vec![lost(hold(1, 5, 10, 400)), hold(2, 4, 200, 210)];
    let fence_handed_twice = vec![hold(1, 1, 10, 20), hold(2, 1, 10, 20)];
    let live_write_refused = vec![Hold {
        write_accepted: false,
        ..hold(1, 1, 10, 20)
    }];
    // Each bad history is reported, with the kind of violation it has (one fault can show as
    // two kinds: a fence regression also orders the holds the other way round).
    for (name, history, kind) in [
        (
            "overlap whose earlier holder released ok",
            overlap_released_ok,
            "released ok",
        ),
        (
            "takeover before the lease ended",
            early_takeover,
            "lease ended",
        ),
        (
            "takeover of a never-expiring hold",
            never_expiring_taken,
            "no expiry",
        ),
        (
            "fence regression between sequential holds",
            fence_regression,
            "acquisition order",
        ),
        (
            "fence regression across a data loss",
            fence_regression_across_data_loss,
            "acquisition order",
        ),
        (
            "fence regression on a takeover",
            takeover_fence_regression,
            "acquisition order",
        ),
        (
            "a live holder's write refused",
            live_write_refused,
            "write refused",
        ),
        (
            "one fence handed to two owners",
            fence_handed_twice,
            "handed to",
        ),
    ] {
        let found = violations(&history, &losses);
        assert!(
            found.iter().any(|violation| violation.contains(kind)),
            "{name}: {found:?} for {history:#?}"
        );
    }
}
