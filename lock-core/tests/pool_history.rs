//! The pool history checker: several OS processes take and give back slots of a few pools of
//! `max_size` k on one real `redis-server`, every slot is recorded, and the whole history is
//! checked: at no moment do more than k holders whose leases were surely valid overlap in a pool,
//! and slot tokens never repeat and grow in acquisition order.
//!
//! Workers: tasks and threads in each process, random pools, nowait and waiting acquires, fixed
//! leases (100–400 ms) and leases renewed by the watchdog (300 ms) or never ending; mostly short
//! holds, some held past their fixed lease (their release must say `LeaseLost`), some left to
//! expire (never given back), some force-released by token before their release. The parent
//! force-releases whole pools at random moments.
//!
//! A hold's lease was surely valid from the return of its acquire until the first of: the call
//! of its release when that release found the slot (`Released`); the acquire's call plus a
//! fixed lease or the watchdog's first lease (a lease starts after the acquire was sent); a
//! force-release of its token or of its pool that began after its acquire was sent.
//!
//! CI runs the short mode (a few seconds). Longer: `LOCKWRIGHT_POOL_HISTORY_SECS`,
//! `…_PROCESSES` (default 3), `…_TASKS` (async owners per process, default 4; each process has
//! 2 threads too), `…_POOLS` (default 3), `…_MAX_SIZE` (default 2).

mod conformance;
mod support;

use std::collections::HashMap;
use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lock_core::{LockError, Pool, PoolGuard, RedisBackend, RedisConfig, SharedBackend};

use conformance::key;
use support::processes::{env, env_or, monotonic_ns, Worker};
use support::RedisServer;

/// The watchdog's lease of renewed slots, in ms: the first lease a renewed slot surely had.
const RENEWED_LEASE_MS: u64 = 300;

/// Slack for Redis' millisecond expiry and the clock readings around a script (ns).
const CLOCK_SLACK: u64 = 2_000_000;

/// How a slot's lease was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseKind {
    /// `exp`, in ms.
    Fixed(u64),
    /// Renewed by the watchdog (`RENEWED_LEASE_MS`).
    Renewed,
    Never,
}

impl LeaseKind {
    /// The lease the acquire set, in ns; `None` for a slot that never expires.
    fn first_lease_ns(self) -> Option<u64> {
        match self {
            LeaseKind::Fixed(ms) => Some(ms * 1_000_000),
            LeaseKind::Renewed => Some(RENEWED_LEASE_MS * 1_000_000),
            LeaseKind::Never => None,
        }
    }
}

/// How a slot ended, as its holder saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its release found it live.
    Released,
    /// Its release said `LeaseLost`: expired or force-released.
    Lost,
    /// A backend error: unknown.
    Failed,
    /// Never given back: left to expire.
    Abandoned,
}

/// One slot as a worker saw it; times are CLOCK_MONOTONIC ns.
#[derive(Debug, Clone)]
pub struct Slot {
    pub pool: u32,
    pub token: u64,
    pub owner: u32,
    pub acquire_start: u64,
    pub acquired: u64,
    /// When its release was called (`u64::MAX` when abandoned).
    pub release_start: u64,
    pub outcome: Outcome,
    pub lease: LeaseKind,
    /// When its holder began force-releasing it by token (0: it did not).
    pub forced_at: u64,
}

/// A force-release of a whole pool by the parent, called at `at` and returned at `done` (ns).
#[derive(Clone, Copy, Debug)]
pub struct ForceAll {
    pub pool: u32,
    pub at: u64,
    pub done: u64,
}

impl Slot {
    /// Until when its lease was surely valid (ns).
    fn surely_valid_until(&self, forced: &[ForceAll]) -> u64 {
        let mut until = match self.outcome {
            // The release found it: live throughout.
            Outcome::Released => return self.release_start,
            Outcome::Abandoned => u64::MAX,
            Outcome::Lost | Outcome::Failed => self.release_start,
        };
        if let Some(lease) = self.lease.first_lease_ns() {
            until = until.min((self.acquire_start + lease).saturating_sub(CLOCK_SLACK));
        }
        if self.forced_at > 0 {
            until = until.min(self.forced_at);
        }
        // A force-release of the pool frees it when applied after its acquire: possible when
        // the force-release returned after the acquire was sent.
        for force in forced {
            if force.pool == self.pool && force.done > self.acquire_start {
                until = until.min(force.at);
            }
        }
        until.max(self.acquired)
    }
}

/// Every violation found in `slots` (empty: the history is correct).
pub fn violations(slots: &[Slot], forced: &[ForceAll], max_size: u32) -> Vec<String> {
    let mut found = Vec::new();
    let mut by_pool: HashMap<u32, Vec<&Slot>> = HashMap::new();
    for slot in slots {
        by_pool.entry(slot.pool).or_default().push(slot);
    }
    for (pool, slots) in by_pool {
        // Tokens never repeat.
        let mut owner_of_token: HashMap<u64, &Slot> = HashMap::new();
        for slot in &slots {
            if let Some(earlier) = owner_of_token.insert(slot.token, slot) {
                found.push(format!(
                    "pool {pool}: token {} handed out twice, to {} and to {}",
                    slot.token, earlier.owner, slot.owner
                ));
            }
        }
        // At most `max_size` surely valid slots at any moment: sweep their intervals.
        let mut events: Vec<(u64, i32, &Slot)> = Vec::new();
        for slot in &slots {
            let until = slot.surely_valid_until(forced);
            if until > slot.acquired {
                events.push((slot.acquired, 1, slot));
                events.push((until, -1, slot));
            }
        }
        // Ends before starts at the same instant: touching intervals do not overlap.
        events.sort_by_key(|(at, delta, _)| (*at, *delta));
        let mut open: Vec<&Slot> = Vec::new();
        let mut reported = false;
        for (at, delta, slot) in events {
            if delta < 0 {
                open.retain(|s| !std::ptr::eq(*s, slot));
                continue;
            }
            open.push(slot);
            if open.len() > max_size as usize && !reported {
                reported = true;
                found.push(format!(
                    "pool {pool}: {} holders with valid leases at once at {at} (max_size \
                     {max_size}): {open:?}",
                    open.len()
                ));
            }
        }
        // A release that found its slot after the slot's fixed lease had surely ended.
        for slot in &slots {
            if let (Outcome::Released, LeaseKind::Fixed(ms)) = (slot.outcome, slot.lease) {
                let surely_over = slot.acquired + ms * 1_000_000 + 10 * CLOCK_SLACK;
                if slot.release_start > surely_over {
                    found.push(format!(
                        "pool {pool}: token {} released ok {} ms after its {ms} ms lease ended",
                        slot.token,
                        (slot.release_start - slot.acquired) / 1_000_000 - ms
                    ));
                }
            }
        }
        // Tokens in acquisition order: a slot whose acquire was sent after another's returned
        // has a larger token.
        let mut by_return = slots.clone();
        by_return.sort_by_key(|slot| slot.acquired);
        let mut by_start = slots.clone();
        by_start.sort_by_key(|slot| slot.acquire_start);
        let mut highest: Option<&Slot> = None;
        let mut next = 0;
        for later in &by_start {
            while next < by_return.len() && by_return[next].acquired < later.acquire_start {
                if highest.map_or(true, |h| by_return[next].token > h.token) {
                    highest = Some(by_return[next]);
                }
                next += 1;
            }
            if let Some(earlier) = highest.filter(|earlier| later.token <= earlier.token) {
                found.push(format!(
                    "pool {pool}: token {} after token {} in acquisition order",
                    later.token, earlier.token
                ));
            }
        }
    }
    found
}

mod worker {
    use super::*;

    pub use crate::support::processes::Rng;

    /// What an owner does next.
    pub struct Plan {
        pub pool: Pool,
        pub index: u64,
        pub lease: LeaseKind,
        pub hold_for: Duration,
        /// Never given back.
        pub abandon: bool,
        /// Force-released by token before the release.
        pub force: bool,
    }

    pub fn plan(rng: &mut Rng, backend: &SharedBackend, prefix: &str) -> Plan {
        let pools: u64 = env("LOCKWRIGHT_POOLS").parse().unwrap();
        let max_size: u32 = env("LOCKWRIGHT_MAX_SIZE").parse().unwrap();
        let index = rng.below(pools);
        let mut pool = Pool::with_backend(format!("{prefix}-{index}"), max_size, backend);
        pool = match rng.below(3) {
            0 => pool.nowait(true),
            _ => pool
                .nowait(false)
                .timeout(Duration::from_millis(5 + rng.below(200))),
        };
        let lease = match rng.below(20) {
            0..=9 => LeaseKind::Fixed(100 + rng.below(300)),
            10..=18 => LeaseKind::Renewed,
            _ => LeaseKind::Never,
        };
        pool = match lease {
            LeaseKind::Fixed(ms) => pool.exp(Duration::from_millis(ms)),
            LeaseKind::Renewed => pool.renewed_lease(Duration::from_millis(RENEWED_LEASE_MS)),
            LeaseKind::Never => pool.never_expires(),
        };
        let roll = rng.below(100);
        let fixed = matches!(lease, LeaseKind::Fixed(_));
        // One in a hundred fixed-lease slots is held past its lease, one in a hundred is left to
        // expire, one in fifty slots is force-released by its own token; the rest are short.
        let hold_for = match (roll, lease) {
            (0, LeaseKind::Fixed(ms)) => Duration::from_millis(ms + 30),
            (5..=40, _) => Duration::from_millis(rng.below(4)),
            _ => Duration::ZERO,
        };
        Plan {
            pool,
            index,
            lease,
            hold_for,
            abandon: fixed && roll == 1,
            force: (2..=3).contains(&roll),
        }
    }

    fn line(
        plan: &Plan,
        owner: &str,
        token: u64,
        times: [u64; 3],
        outcome: Outcome,
        forced_at: u64,
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
            Outcome::Abandoned => "left",
        };
        format!(
            "s {} {token} {owner} {} {} {} {outcome} {lease} {forced_at}",
            plan.index, times[0], times[1], times[2]
        )
    }

    fn outcome(released: Result<(), LockError>) -> Outcome {
        match released {
            Ok(()) => Outcome::Released,
            Err(LockError::LeaseLost { .. }) => Outcome::Lost,
            Err(_) => Outcome::Failed,
        }
    }

    /// The lines of one process, from one writer so that they never interleave.
    pub struct Shared {
        pub stop: AtomicBool,
        pub out: Mutex<std::io::BufWriter<std::io::Stdout>>,
    }

    impl Shared {
        pub fn emit(&self, line: &str) {
            use std::io::Write;
            writeln!(self.out.lock().unwrap(), "@ {line}").unwrap();
        }

        pub fn flush(&self) {
            use std::io::Write;
            self.out.lock().unwrap().flush().unwrap();
        }
    }

    /// What happens to a slot once taken, as the plan says; the line to report.
    fn after_blocking(plan: &Plan, guard: PoolGuard, owner: &str, times: [u64; 2]) -> String {
        let token = guard.slot().0;
        if plan.abandon {
            // Its lease ends it: nobody gives it back (the guard's drop would).
            std::mem::forget(guard);
            return line(
                plan,
                owner,
                token,
                [times[0], times[1], u64::MAX],
                Outcome::Abandoned,
                0,
            );
        }
        std::thread::sleep(plan.hold_for);
        let mut forced_at = 0;
        if plan.force {
            forced_at = monotonic_ns();
            let _ = plan.pool.force_release_blocking(guard.slot());
        }
        let release_start = monotonic_ns();
        let outcome = outcome(guard.release_blocking());
        line(
            plan,
            owner,
            token,
            [times[0], times[1], release_start],
            outcome,
            forced_at,
        )
    }

    async fn after(plan: &Plan, guard: PoolGuard, owner: &str, times: [u64; 2]) -> String {
        let token = guard.slot().0;
        if plan.abandon {
            std::mem::forget(guard);
            return line(
                plan,
                owner,
                token,
                [times[0], times[1], u64::MAX],
                Outcome::Abandoned,
                0,
            );
        }
        if !plan.hold_for.is_zero() {
            tokio::time::sleep(plan.hold_for).await;
        }
        let mut forced_at = 0;
        if plan.force {
            forced_at = monotonic_ns();
            let _ = plan.pool.force_release(guard.slot()).await;
        }
        let release_start = monotonic_ns();
        let outcome = outcome(guard.release().await);
        line(
            plan,
            owner,
            token,
            [times[0], times[1], release_start],
            outcome,
            forced_at,
        )
    }

    pub fn run() {
        let url = env("LOCKWRIGHT_URL");
        let prefix = env("LOCKWRIGHT_KEY");
        let name = env("LOCKWRIGHT_WORKER");
        let seed: u64 = env("LOCKWRIGHT_SEED").parse().unwrap();
        let tasks: u64 = env("LOCKWRIGHT_TASKS").parse().unwrap();
        let backend = RedisBackend::connect_blocking(RedisConfig::new(url.as_str()))
            .expect("connect to the test redis-server")
            .shared();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            out: Mutex::new(std::io::BufWriter::new(std::io::stdout())),
        });
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
        let threads: Vec<_> = (0..2u64)
            .map(|t| {
                let (backend, shared) = (backend.clone(), Arc::clone(&shared));
                let (prefix, owner) = (prefix.clone(), format!("{name}t{t}"));
                std::thread::spawn(move || {
                    let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    while !shared.stop.load(Ordering::Acquire) {
                        let plan = plan(&mut rng, &backend, &prefix);
                        let acquire_start = monotonic_ns();
                        let Ok(guard) = plan.pool.acquire_blocking() else {
                            continue;
                        };
                        let acquired = monotonic_ns();
                        let report =
                            after_blocking(&plan, guard, &owner, [acquire_start, acquired]);
                        shared.emit(&report);
                    }
                })
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..tasks)
                .map(|t| {
                    let (backend, shared) = (backend.clone(), Arc::clone(&shared));
                    let (prefix, owner) = (prefix.clone(), format!("{name}a{t}"));
                    tokio::spawn(async move {
                        let mut rng = Rng(seed ^ (t + 16).wrapping_mul(0x2545_f491_4f6c_dd1d));
                        while !shared.stop.load(Ordering::Acquire) {
                            let plan = plan(&mut rng, &backend, &prefix);
                            let acquire_start = monotonic_ns();
                            let Ok(guard) = plan.pool.acquire().await else {
                                continue;
                            };
                            let acquired = monotonic_ns();
                            let report =
                                after(&plan, guard, &owner, [acquire_start, acquired]).await;
                            shared.emit(&report);
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
        shared.emit("done");
        shared.flush();
    }
}

/// Entry point of the worker processes: not a test of its own.
#[test]
#[ignore = "run as a child process by the pool history test"]
fn pool_history_worker() {
    worker::run();
}

/// Parses a worker's slot line (after `@ `), naming owners by number.
fn parse_slot(line: &str, owners: &Mutex<HashMap<String, u32>>) -> Slot {
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 10, "bad pool history line {line:?}");
    let owner = {
        let mut owners = owners.lock().unwrap();
        let next = owners.len() as u32;
        *owners.entry(f[3].to_owned()).or_insert(next)
    };
    Slot {
        pool: f[1].parse().unwrap(),
        token: f[2].parse().unwrap(),
        owner,
        acquire_start: f[4].parse().unwrap(),
        acquired: f[5].parse().unwrap(),
        release_start: f[6].parse().unwrap(),
        outcome: match f[7] {
            "ok" => Outcome::Released,
            "lost" => Outcome::Lost,
            "left" => Outcome::Abandoned,
            _ => Outcome::Failed,
        },
        lease: match f[8] {
            "r" => LeaseKind::Renewed,
            "n" => LeaseKind::Never,
            ms => LeaseKind::Fixed(ms.parse().unwrap()),
        },
        forced_at: f[9].parse().unwrap(),
    }
}

/// What a worker's reader thread sends: a slot, or that the worker is done.
enum Report {
    Slot(Slot),
    Done,
}

#[test]
fn pool_history_of_many_processes_never_overlaps_more_than_max_size() {
    let processes: usize = env_or("LOCKWRIGHT_POOL_HISTORY_PROCESSES", 3);
    let tasks: u64 = env_or("LOCKWRIGHT_POOL_HISTORY_TASKS", 4);
    let pools: u32 = env_or("LOCKWRIGHT_POOL_HISTORY_POOLS", 3);
    let max_size: u32 = env_or("LOCKWRIGHT_POOL_HISTORY_MAX_SIZE", 2);
    let secs: f64 = env_or("LOCKWRIGHT_POOL_HISTORY_SECS", 6.0);
    let server = RedisServer::start();
    let prefix = key("pool-history");
    let owners: Arc<Mutex<HashMap<String, u32>>> = Default::default();
    let (reports, incoming) = mpsc::channel();
    let mut workers: Vec<Worker> = (0..processes)
        .map(|n| {
            let mut worker = Worker::start(
                "pool_history_worker",
                "pool-history",
                &[
                    ("LOCKWRIGHT_URL", server.url()),
                    ("LOCKWRIGHT_KEY", prefix.clone()),
                    ("LOCKWRIGHT_POOLS", pools.to_string()),
                    ("LOCKWRIGHT_MAX_SIZE", max_size.to_string()),
                    ("LOCKWRIGHT_TASKS", tasks.to_string()),
                    ("LOCKWRIGHT_WORKER", format!("w{n}")),
                    ("LOCKWRIGHT_SEED", (0x900d ^ n as u64).to_string()),
                ],
            );
            let mut stdout = worker.take_stdout();
            let (reports, owners) = (reports.clone(), Arc::clone(&owners));
            std::thread::spawn(move || {
                let mut line = String::new();
                loop {
                    line.clear();
                    if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let Some((_, payload)) = line.trim_end().split_once("@ ") else {
                        continue; // test-harness output
                    };
                    let report = match payload {
                        "done" => Report::Done,
                        slot => Report::Slot(parse_slot(slot, &owners)),
                    };
                    if reports.send(report).is_err() {
                        return;
                    }
                }
            });
            worker
        })
        .collect();
    drop(reports);
    // The parent force-releases whole pools at random moments, through a backend of its own.
    let backend = RedisBackend::connect_blocking(RedisConfig::new(server.url()))
        .unwrap()
        .shared();
    let mut rng = worker::Rng(0xf0_4ce);
    let mut forced = Vec::new();
    let mut freed_by_force = 0;
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < secs {
        std::thread::sleep(Duration::from_millis(150 + rng.below(400)));
        let pool = rng.below(u64::from(pools)) as u32;
        let at = monotonic_ns();
        freed_by_force += Pool::with_backend(format!("{prefix}-{pool}"), max_size, &backend)
            .force_release_all_blocking()
            .unwrap();
        forced.push(ForceAll {
            pool,
            at,
            done: monotonic_ns(),
        });
    }
    for worker in &mut workers {
        worker.say("stop");
    }
    let mut slots = Vec::new();
    let mut done = 0;
    while done < processes {
        match incoming.recv_timeout(Duration::from_secs(30)) {
            Ok(Report::Slot(slot)) => slots.push(slot),
            Ok(Report::Done) => done += 1,
            Err(err) => panic!("a worker stopped reporting: {err}"),
        }
    }
    for worker in &mut workers {
        assert!(worker.child.wait().unwrap().success(), "a worker failed");
    }
    let count = |outcome| slots.iter().filter(|s| s.outcome == outcome).count();
    let (lost, left, failed) = (
        count(Outcome::Lost),
        count(Outcome::Abandoned),
        count(Outcome::Failed),
    );
    let by_token = slots.iter().filter(|s| s.forced_at > 0).count();
    let violations = violations(&slots, &forced, max_size);
    let fullest = fullest_moment(&slots, &forced);
    println!(
        "pool history: {processes} processes x ({tasks} tasks + 2 threads), {pools} pools of \
         max_size {max_size}, {:.1} s, {} slots ({lost} lost, {left} left to expire, {by_token} \
         force-released by token, {failed} failed), {} whole-pool force-releases freeing \
         {freed_by_force} slots; at most {fullest} surely valid slots at once in a pool; {} \
         violations",
        started.elapsed().as_secs_f64(),
        slots.len(),
        forced.len(),
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "{:#?}",
        &violations[..violations.len().min(20)]
    );
    assert!(
        slots.len() > 200,
        "too few slots to mean anything: {}",
        slots.len()
    );
    assert_eq!(
        fullest, max_size as usize,
        "no pool was ever full of surely valid slots: the run tested nothing"
    );
    assert!(
        lost > 0 && left > 0 && by_token > 0,
        "not every way a slot ends was seen"
    );
    assert_eq!(failed, 0, "operations failed on a healthy server");
}

/// The most surely valid slots of one pool at one moment.
fn fullest_moment(slots: &[Slot], forced: &[ForceAll]) -> usize {
    let mut most = 0;
    let mut by_pool: HashMap<u32, Vec<(u64, i32)>> = HashMap::new();
    for slot in slots {
        let until = slot.surely_valid_until(forced);
        if until > slot.acquired {
            let events = by_pool.entry(slot.pool).or_default();
            events.push((slot.acquired, 1));
            events.push((until, -1));
        }
    }
    for (_, mut events) in by_pool {
        events.sort_unstable();
        let mut open = 0i32;
        for (_, delta) in events {
            open += delta;
            most = most.max(open as usize);
        }
    }
    most
}

/// The checker itself: each kind of bad history is reported, a good one is not.
#[test]
fn pool_history_checker_flags_each_kind_of_violation() {
    let ms = 1_000_000;
    let slot = |owner: u32, token, acquired_ms: u64, released_ms: u64| Slot {
        pool: 0,
        token,
        owner,
        acquire_start: acquired_ms * ms - ms / 2,
        acquired: acquired_ms * ms,
        release_start: released_ms * ms,
        outcome: Outcome::Released,
        lease: LeaseKind::Fixed(300),
        forced_at: 0,
    };
    let lost = |slot: Slot| Slot {
        outcome: Outcome::Lost,
        ..slot
    };
    // Two at once in a pool of 2; a third after one's lease ran out (its release said so), one
    // after a slot left to expire, one after a force-release by token and one after a
    // force-release of the pool; another pool at the same time.
    let good = vec![
        slot(1, 1, 10, 100),
        lost(slot(2, 2, 20, 600)),
        slot(3, 3, 400, 450),
        Slot {
            outcome: Outcome::Abandoned,
            release_start: u64::MAX,
            ..slot(4, 4, 460, 0)
        },
        slot(5, 5, 800, 820),
        Slot {
            lease: LeaseKind::Never,
            forced_at: 830 * ms,
            ..lost(slot(6, 6, 825, 2000))
        },
        slot(7, 7, 840, 850),
        Slot {
            lease: LeaseKind::Renewed,
            ..lost(slot(8, 8, 900, 3000))
        },
        Slot {
            lease: LeaseKind::Never,
            ..lost(slot(9, 9, 1000, 3000))
        },
        // Its acquire was sent while the force-release was on its way: it may have been freed.
        lost(slot(13, 10, 1203, 1500)),
        slot(10, 11, 1300, 1350),
        slot(14, 12, 1310, 1320),
        slot(11, 13, 1400, 1410),
        Slot {
            pool: 1,
            ..slot(12, 1, 30, 90)
        },
    ];
    let forced = [ForceAll {
        pool: 0,
        at: 1200 * ms,
        done: 1205 * ms,
    }];
    assert_eq!(violations(&good, &forced, 2), Vec::<String>::new());
    assert_eq!(fullest_moment(&good, &forced), 2);

    let three_released_at_once = vec![slot(1, 1, 10, 100), slot(2, 2, 20, 100), slot(3, 3, 30, 40)];
    let third_before_a_lease_ended = vec![
        slot(1, 1, 10, 300),
        lost(slot(2, 2, 20, 600)),
        slot(3, 3, 200, 210),
    ];
    let third_beside_a_never_ending_slot = vec![
        slot(1, 1, 10, 600),
        Slot {
            lease: LeaseKind::Never,
            ..lost(slot(2, 2, 20, 900))
        },
        slot(3, 3, 500, 510),
    ];
    let third_beside_a_slot_left_to_expire = vec![
        slot(1, 1, 10, 600),
        Slot {
            outcome: Outcome::Abandoned,
            release_start: u64::MAX,
            ..slot(2, 2, 20, 0)
        },
        slot(3, 3, 200, 210),
    ];
    let token_handed_twice = vec![slot(1, 1, 10, 20), slot(2, 1, 30, 40)];
    let token_regression = vec![slot(1, 5, 10, 20), slot(2, 4, 30, 40)];
    let released_after_its_lease = vec![slot(1, 1, 10, 500)];
    for (name, history, kind) in [
        (
            "three released slots at once",
            three_released_at_once,
            "at once",
        ),
        (
            "a third slot before a lease ended",
            third_before_a_lease_ended,
            "at once",
        ),
        (
            "a third slot beside a never-ending one",
            third_beside_a_never_ending_slot,
            "at once",
        ),
        (
            "a third slot beside one left to expire",
            third_beside_a_slot_left_to_expire,
            "at once",
        ),
        (
            "one token handed out twice",
            token_handed_twice,
            "handed out twice",
        ),
        ("a token regression", token_regression, "acquisition order"),
        (
            "a release that found its slot after its lease",
            released_after_its_lease,
            "after its 300 ms lease",
        ),
    ] {
        let found = violations(&history, &[], 2);
        assert!(
            found.iter().any(|violation| violation.contains(kind)),
            "{name}: {found:?} for {history:#?}"
        );
    }
}
