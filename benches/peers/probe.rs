//! What one throughput run costs, per lock+unlock pair: redis-server CPU (`INFO cpu`, the method
//! of the server-cost table and of the concurrency curve alike) and context switches of the bench
//! process and of redis-server. Included by `peers.rs`.

use redis::aio::MultiplexedConnection;

/// Cumulative counters read just before and just after a run.
#[derive(Clone, Copy)]
pub struct Snapshot {
    /// redis-server's `used_cpu_sys` + `used_cpu_user`, seconds.
    redis_cpu_seconds: f64,
    /// The bench process's voluntary + involuntary context switches, every thread, exited ones
    /// included (`getrusage(RUSAGE_SELF)`).
    bench_switches: Option<u64>,
    /// redis-server's, summed over its threads (`/proc/<pid>/task/*/status`); `None` when the
    /// server is not the bench's own (`REDIS_URL`) or `/proc` is unreadable.
    redis_switches: Option<u64>,
}

/// The difference of two [`Snapshot`]s, per pair.
#[derive(Clone, Copy, Default)]
pub struct PairCost {
    pub redis_cpu_usec: f64,
    pub bench_switches: Option<f64>,
    pub redis_switches: Option<f64>,
}

impl Snapshot {
    pub async fn take(conn: &mut MultiplexedConnection, redis_pid: Option<u32>) -> Snapshot {
        // The counters of this process first and the server's last, so the INFO round trip is
        // inside both windows alike.
        let bench_switches = bench_context_switches();
        let redis_switches = redis_pid.and_then(process_context_switches);
        Snapshot {
            redis_cpu_seconds: redis_cpu_seconds(conn).await,
            bench_switches,
            redis_switches,
        }
    }

    /// What happened between `self` and `after`, divided by `pairs`.
    pub fn per_pair(&self, after: &Snapshot, pairs: u64) -> PairCost {
        let pairs = pairs.max(1) as f64;
        let switches = |before: Option<u64>, after: Option<u64>| {
            Some(after?.saturating_sub(before?) as f64 / pairs)
        };
        PairCost {
            redis_cpu_usec: (after.redis_cpu_seconds - self.redis_cpu_seconds) * 1e6 / pairs,
            bench_switches: switches(self.bench_switches, after.bench_switches),
            redis_switches: switches(self.redis_switches, after.redis_switches),
        }
    }
}

pub async fn redis_cpu_seconds(conn: &mut MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .expect("INFO cpu");
    info.lines()
        .filter_map(|line| {
            let value = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))?;
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

fn bench_context_switches() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is a valid, writable `rusage`; RUSAGE_SELF is always a valid `who`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: getrusage succeeded, so it filled the struct (zeroed before anyway).
    let usage = unsafe { usage.assume_init() };
    Some((usage.ru_nvcsw + usage.ru_nivcsw) as u64)
}

/// A process's context switches: `/proc/<pid>/status` counts its main thread only, so this sums
/// `/proc/<pid>/task/*/status` (threads that exited between two reads are not counted; redis-server's
/// threads live as long as it does).
fn process_context_switches(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        total += status
            .lines()
            .filter_map(|line| {
                let value = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))?;
                value.trim().parse::<u64>().ok()
            })
            .sum::<u64>();
    }
    Some(total)
}
