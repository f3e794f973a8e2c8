//! `lockwright doctor`: each master checked against what the locks' guarantees need
//! (GUARANTEES.md, README "Recommended server settings"), each finding printed with its fix.
//!
//! - version: the scripts use `SET ... KEEPTTL` (Redis 6.0); a cluster's wake-ups use
//!   `SPUBLISH` (7.0);
//! - role: locks are taken on a master; a replica refuses the writes;
//! - eviction: with `maxmemory` set, only `noeviction` is safe. The `volatile-*` policies are
//!   not: they evict keys that have an expiry, and a lock key's lease *is* its expiry (so is the
//!   fence counter's TTL), so a held lock can be evicted and taken by a second owner;
//! - persistence: without AOF a restart loses the holds taken since the last snapshot (two
//!   owners may then hold a key; fences still grow, from the server clock);
//! - replicas: asynchronous replication loses holds in a failover unless `wait_replicas`
//!   confirms them; with `--wait-replicas N`, fewer than N connected replicas fail every acquire;
//! - latency: each operation is one round trip, a hand-off at least two;
//! - clock: leases are timed by the server; the watchdog assumes the client's monotonic clock
//!   runs no more than 10% faster than the server's (GUARANTEES row 8), and fences after a lost
//!   counter come from the server clock, which must not step back.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lock_core::__operate::MasterServer;
use lock_core::RedisBackend;
use redis::aio::MultiplexedConnection;

use crate::args::DoctorArgs;
use crate::connect::{command_failed, masters, open};
use crate::failure::{Failure, NOT_FOUND, OK};
use crate::show::emit;

/// The pause between two PINGs of the latency check.
const PING_SPACING: Duration = Duration::from_millis(25);

/// How bad a finding is. Only a [`Severity::Problem`] fails the check (exit 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Meets what the guarantees need.
    Ok,
    /// Works, with a risk worth knowing of.
    Warning,
    /// A guarantee does not hold (or locks do not work) with this setting.
    Problem,
}

/// One check's result.
#[derive(Debug)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// What was checked.
    pub check: &'static str,
    /// What was found.
    pub found: String,
    /// What to do (empty when nothing).
    pub fix: String,
}

fn finding(severity: Severity, check: &'static str, found: String, fix: &str) -> Finding {
    Finding {
        severity,
        check,
        found,
        fix: fix.to_owned(),
    }
}

/// Checks every master; exit 1 when any finding is a problem.
pub async fn run(backend: &RedisBackend, args: &DoctorArgs) -> Result<u8, Failure> {
    if args.pings == 0 {
        return Err(Failure::usage("--pings must be at least 1"));
    }
    let masters = masters(backend).await?;
    let mut worst = Severity::Ok;
    let mut text = String::new();
    for master in &masters {
        let mut conn = open(backend, master).await?;
        let findings = check(backend, master, &mut conn, args).await?;
        text.push_str(&format!("{}:\n", master.address));
        for finding in &findings {
            worst = worst.max(finding.severity);
            let mark = match finding.severity {
                Severity::Ok => "ok     ",
                Severity::Warning => "WARNING",
                Severity::Problem => "PROBLEM",
            };
            text.push_str(&format!("  {mark} {}: {}\n", finding.check, finding.found));
            if !finding.fix.is_empty() {
                text.push_str(&format!("          fix: {}\n", finding.fix));
            }
        }
    }
    text.push_str(match worst {
        Severity::Ok => "all checks passed\n",
        Severity::Warning => "no problem found; see the warnings above\n",
        Severity::Problem => "problems found: the guarantees do not hold as deployed (see above)\n",
    });
    emit(&text);
    Ok(if worst == Severity::Problem {
        NOT_FOUND
    } else {
        OK
    })
}

/// Every check on one master.
async fn check(
    backend: &RedisBackend,
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
    args: &DoctorArgs,
) -> Result<Vec<Finding>, Failure> {
    let info = info(master, conn).await?;
    let field = |name: &str| info.get(name).map(String::as_str).unwrap_or("");
    let clock_start = clock_sample(master, conn).await?;
    let mut findings = vec![
        version(field("redis_version"), backend.is_cluster()),
        role(field("role")),
    ];
    match config(conn).await {
        Ok(config) => {
            findings.push(eviction(&config));
            findings.push(persistence(&config));
        }
        Err(err) => findings.push(finding(
            Severity::Warning,
            "settings",
            format!("CONFIG GET was refused ({err}); eviction and persistence not checked"),
            "check maxmemory-policy (noeviction) and appendonly (yes) in the provider's console",
        )),
    }
    let replicas = field("connected_slaves").parse().unwrap_or(0);
    findings.push(replication(replicas, args.wait_replicas));
    findings.push(latency(master, conn, args.pings, backend.command_timeout()).await?);
    let clock_end = clock_sample(master, conn).await?;
    findings.extend(clock(clock_start, clock_end));
    Ok(findings)
}

/// `INFO` (server, replication) as name → value.
async fn info(
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
) -> Result<HashMap<String, String>, Failure> {
    let mut fields = HashMap::new();
    for section in ["server", "replication"] {
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query_async(conn)
            .await
            .map_err(|err| command_failed(master, "INFO", err))?;
        for line in text.lines() {
            if let Some((name, value)) = line.split_once(':') {
                fields.insert(name.to_owned(), value.trim().to_owned());
            }
        }
    }
    Ok(fields)
}

/// The settings the checks read; an error when the server refuses `CONFIG GET` (managed Redis).
async fn config(conn: &mut MultiplexedConnection) -> redis::RedisResult<HashMap<String, String>> {
    let mut settings = HashMap::new();
    for pattern in ["maxmemory*", "appendonly", "appendfsync", "save"] {
        let read: HashMap<String, String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(pattern)
            .query_async(conn)
            .await?;
        settings.extend(read);
    }
    Ok(settings)
}

fn version(version: &str, cluster: bool) -> Finding {
    let mut parts = version
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    let check = "version";
    if (major, minor) < (6, 0) {
        finding(
            Severity::Problem,
            check,
            format!("Redis {version}: the lock scripts use SET ... KEEPTTL, new in 6.0"),
            "upgrade to Redis 6.0 or newer (7.x recommended)",
        )
    } else if cluster && major < 7 {
        finding(
            Severity::Problem,
            check,
            format!(
                "Redis {version} in a cluster: wake-ups use sharded pub/sub (SPUBLISH), new in 7.0"
            ),
            "upgrade the cluster to Redis 7.0 or newer",
        )
    } else {
        finding(Severity::Ok, check, format!("Redis {version}"), "")
    }
}

fn role(role: &str) -> Finding {
    if role == "master" {
        finding(Severity::Ok, "role", "master".to_owned(), "")
    } else {
        finding(
            Severity::Problem,
            "role",
            format!("this server is a {role}: it refuses the lock writes (READONLY)"),
            "point the URL at the master (or use redis+sentinel:// to follow it)",
        )
    }
}

fn eviction(config: &HashMap<String, String>) -> Finding {
    let limited = config.get("maxmemory").is_some_and(|max| max != "0");
    let policy = config
        .get("maxmemory-policy")
        .map_or("?", String::as_str)
        .to_owned();
    let check = "eviction";
    let fix = "CONFIG SET maxmemory-policy noeviction (and in redis.conf): a full server then \
               refuses new holds with an error instead of dropping held ones";
    match (policy.as_str(), limited) {
        ("noeviction", _) => finding(
            Severity::Ok,
            check,
            "maxmemory-policy noeviction".into(),
            "",
        ),
        (_, true) => finding(
            Severity::Problem,
            check,
            format!(
                "maxmemory is set and maxmemory-policy is {policy}: Redis may evict a held lock \
                 (volatile-* policies too: a lease is the lock key's expiry), and a second owner \
                 then takes it"
            ),
            fix,
        ),
        (_, false) => finding(
            Severity::Warning,
            check,
            format!(
                "maxmemory-policy is {policy}; harmless while maxmemory is 0 (no limit), but \
                 held locks become evictable as soon as a limit is set"
            ),
            fix,
        ),
    }
}

fn persistence(config: &HashMap<String, String>) -> Finding {
    let aof = config.get("appendonly").is_some_and(|on| on == "yes");
    let fsync = config.get("appendfsync").map_or("?", String::as_str);
    let snapshots = config
        .get("save")
        .is_some_and(|save| !save.trim().is_empty());
    let check = "persistence";
    let fix = "CONFIG SET appendonly yes, appendfsync everysec (or always), and CONFIG REWRITE";
    match (aof, fsync) {
        (true, "always") => finding(Severity::Ok, check, "AOF, fsync always".into(), ""),
        (true, "everysec") => finding(
            Severity::Ok,
            check,
            "AOF, fsync everysec: a crash of the machine can lose the last second of holds"
                .into(),
            "",
        ),
        (true, other) => finding(
            Severity::Warning,
            check,
            format!("AOF with appendfsync {other}: a crash of the machine can lose the holds the OS had not written"),
            "CONFIG SET appendfsync everysec",
        ),
        (false, _) if snapshots => finding(
            Severity::Warning,
            check,
            "RDB snapshots only: a restart brings back the last snapshot, losing the holds taken \
             since (two owners may then hold a key; fences still grow)"
                .into(),
            fix,
        ),
        (false, _) => finding(
            Severity::Warning,
            check,
            "none (no AOF, no RDB): a restart loses every hold (two owners may then hold a key; \
             fences still grow, from the server clock)"
                .into(),
            fix,
        ),
    }
}

fn replication(replicas: usize, wait_replicas: Option<usize>) -> Finding {
    let check = "replicas";
    match wait_replicas {
        Some(wanted) if replicas < wanted => finding(
            Severity::Problem,
            check,
            format!(
                "{replicas} connected, wait_replicas asks for {wanted}: every acquire fails with \
                 NotReplicated"
            ),
            "bring the replicas up, or lower wait_replicas",
        ),
        Some(wanted) => finding(
            Severity::Ok,
            check,
            format!("{replicas} connected; wait_replicas({wanted}) can be met"),
            "",
        ),
        None if replicas > 0 => finding(
            Severity::Warning,
            check,
            format!(
                "{replicas} connected, replication is asynchronous: a failover can promote a \
                 replica that never got a hold, and two owners then hold the key"
            ),
            "set RedisConfig::wait_replicas(1, timeout) in the applications (then run doctor \
             with --wait-replicas 1)",
        ),
        None => finding(
            Severity::Ok,
            check,
            "none: no failover can lose a hold (the server is the single point of failure)".into(),
            "",
        ),
    }
}

/// PING round trips: their median and largest.
async fn latency(
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
    pings: u32,
    command_timeout: Duration,
) -> Result<Finding, Failure> {
    let mut rtts = Vec::new();
    for ping in 0..pings {
        if ping > 0 {
            // Spread over a while, which the clock rate check also measures over.
            tokio::time::sleep(PING_SPACING).await;
        }
        let sent = Instant::now();
        let _: String = redis::cmd("PING")
            .query_async(conn)
            .await
            .map_err(|err| command_failed(master, "PING", err))?;
        rtts.push(sent.elapsed());
    }
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    let max = rtts[rtts.len() - 1];
    let found = format!(
        "PING round trip median {:.2} ms, max {:.2} ms over {pings}",
        median.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    Ok(if median * 10 > command_timeout {
        finding(
            Severity::Problem,
            "latency",
            format!("{found}: more than a tenth of the command timeout; operations will time out"),
            "run the applications near the server, or raise command_timeout",
        )
    } else if median > Duration::from_millis(10) {
        finding(
            Severity::Warning,
            "latency",
            format!("{found}: each lock operation waits one round trip, a hand-off at least two"),
            "run the applications in the server's network; keep leases far above the round trip",
        )
    } else {
        finding(Severity::Ok, "latency", found, "")
    })
}

/// The server clock (`TIME`) with this machine's clocks read around it.
struct ClockSample {
    server_micros: i128,
    local_micros: i128,
    monotonic: Instant,
    rtt: Duration,
}

async fn clock_sample(
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
) -> Result<ClockSample, Failure> {
    let wall = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_micros() as i128)
    };
    let (sent, sent_wall) = (Instant::now(), wall());
    let (seconds, micros): (i64, i64) = redis::cmd("TIME")
        .query_async(conn)
        .await
        .map_err(|err| command_failed(master, "TIME", err))?;
    let rtt = sent.elapsed();
    Ok(ClockSample {
        server_micros: i128::from(seconds) * 1_000_000 + i128::from(micros),
        local_micros: sent_wall + (rtt.as_micros() as i128) / 2,
        monotonic: sent + rtt / 2,
        rtt,
    })
}

/// The server clock against this machine's: how far apart (wall clocks) and how fast
/// (server against local monotonic, over the doctor's run).
fn clock(start: ClockSample, end: ClockSample) -> Vec<Finding> {
    let mut findings = Vec::new();
    let offset = end.server_micros - end.local_micros;
    let uncertainty = end.rtt.as_micros() as i128 / 2;
    let shown = format!(
        "server clock {} this machine's by {:.3} s (± {:.3} ms)",
        if offset >= 0 { "ahead of" } else { "behind" },
        offset.abs() as f64 / 1e6,
        uncertainty as f64 / 1e3
    );
    findings.push(if offset.abs() - uncertainty > 1_000_000 {
        finding(
            Severity::Warning,
            "clock",
            format!("{shown}: leases are timed by the server, so locks still work, but one of the clocks is off"),
            "run NTP (slewing, never stepping back) on the server and here: fences after a lost \
             counter come from the server clock",
        )
    } else {
        finding(Severity::Ok, "clock", shown, "")
    });
    let local = end.monotonic.duration_since(start.monotonic).as_micros() as f64;
    let server = (end.server_micros - start.server_micros) as f64;
    // Only over a span long enough for the round trips not to dominate (1% at most).
    let spread = (start.rtt + end.rtt).as_micros() as f64;
    if local > 0.0 && local > spread * 100.0 {
        let rate = server / local;
        let shown = format!(
            "the server clock ran at {:.3}x this machine's monotonic clock over {:.1} s",
            rate,
            local / 1e6
        );
        findings.push(if rate < 1.0 / 1.1 {
            finding(
                Severity::Problem,
                "clock rate",
                format!("{shown}: the watchdog assumes this machine's clock runs at most 10% faster than the server's, so leases can end before it renews them"),
                "fix the clock of the slower machine (NTP)",
            )
        } else {
            finding(Severity::Ok, "clock rate", shown, "")
        });
    }
    findings
}
