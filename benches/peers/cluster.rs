//! The cluster row of `cargo bench --bench peers`: the same lock+unlock workload against a
//! 3-master Redis Cluster (one replica each) that the bench starts, for the floor (SET NX PX +
//! compare-and-delete script over one redis-rs cluster connection) and lockwright's async handle
//! on `redis+cluster://`, with each master's CPU per pair. Included by `peers.rs`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lockwright::{Lock, RedisBackend, RedisConfig, SharedBackend};

use crate::support::cluster::RedisCluster;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Side {
    Floor,
    Lockwright,
}

async fn worker(
    side: Side,
    floor: redis::cluster_async::ClusterConnection,
    release: Arc<redis::Script>,
    backend: SharedBackend,
    i: usize,
    deadline: Instant,
) -> u64 {
    let mut pairs = 0u64;
    match side {
        Side::Floor => {
            let mut conn = floor;
            let key = format!("peers:cluster-floor:{i}");
            while Instant::now() < deadline {
                let token = format!("{i}-{pairs}");
                let set: Option<String> = redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(super::LEASE.as_millis() as u64)
                    .query_async(&mut conn)
                    .await
                    .expect("floor SET on the cluster");
                assert!(set.is_some(), "floor key {key} was taken");
                let freed: i64 = release
                    .key(&key)
                    .arg(&token)
                    .invoke_async(&mut conn)
                    .await
                    .expect("floor release on the cluster");
                assert_eq!(freed, 1);
                pairs += 1;
            }
        }
        Side::Lockwright => {
            let lock = Lock::with_backend(format!("peers-cluster-{i}"), &backend).exp(super::LEASE);
            while Instant::now() < deadline {
                let guard = lock.acquire().await.expect("acquire on the cluster");
                guard.release().await.expect("release on the cluster");
                pairs += 1;
            }
        }
    }
    pairs
}

struct Run<'a> {
    rt: &'a tokio::runtime::Runtime,
    floor: redis::cluster_async::ClusterConnection,
    release: Arc<redis::Script>,
    backend: SharedBackend,
}

impl Run<'_> {
    fn pairs_per_second(&self, side: Side, concurrency: usize, duration: Duration) -> f64 {
        let total: u64 = self.rt.block_on(async {
            let deadline = Instant::now() + duration;
            let workers: Vec<_> = (0..concurrency)
                .map(|i| {
                    tokio::spawn(worker(
                        side,
                        self.floor.clone(),
                        Arc::clone(&self.release),
                        self.backend.clone(),
                        i,
                        deadline,
                    ))
                })
                .collect();
            let mut total = 0;
            for w in workers {
                total += w.await.unwrap();
            }
            total
        });
        total as f64 / duration.as_secs_f64()
    }
}

fn master_cpu_seconds(cluster: &RedisCluster) -> Vec<(u16, f64)> {
    cluster
        .masters()
        .into_iter()
        .map(|m| {
            let info = cluster.nodes[m].command(&["INFO", "cpu"]);
            let cpu: f64 = info
                .lines()
                .filter_map(|line| {
                    line.strip_prefix("used_cpu_sys:")
                        .or_else(|| line.strip_prefix("used_cpu_user:"))
                })
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .sum();
            (cluster.nodes[m].port, cpu)
        })
        .collect()
}

/// Runs the cluster row and gives its markdown section.
pub fn section(rt: &tokio::runtime::Runtime, seconds: f64, rounds: usize) -> String {
    eprintln!("cluster: starting 6 nodes...");
    let cluster = RedisCluster::start();
    let backend = RedisBackend::connect_blocking(RedisConfig::new(cluster.url()))
        .expect("connect lockwright to the bench cluster")
        .shared();
    let floor = rt.block_on(async {
        redis::cluster::ClusterClient::new(cluster.node_urls())
            .expect("cluster client")
            .get_async_connection()
            .await
            .expect("floor cluster connection")
    });
    let run = Run {
        rt,
        floor,
        release: Arc::new(redis::Script::new(super::FLOOR_RELEASE)),
        backend,
    };
    let duration = Duration::from_secs_f64(seconds);
    for side in [Side::Floor, Side::Lockwright] {
        run.pairs_per_second(side, super::MANY, duration.min(Duration::from_millis(500)));
    }
    let mut rates = std::collections::HashMap::<(Side, usize), Vec<f64>>::new();
    for round in 0..rounds {
        for side in if round % 2 == 0 {
            [Side::Floor, Side::Lockwright]
        } else {
            [Side::Lockwright, Side::Floor]
        } {
            for c in [1, super::MANY] {
                rates
                    .entry((side, c))
                    .or_default()
                    .push(run.pairs_per_second(side, c, duration));
            }
        }
    }
    // Server CPU per pair, per master, at c=50.
    let mut cpu = Vec::new();
    for side in [Side::Floor, Side::Lockwright] {
        let before = master_cpu_seconds(&cluster);
        let started = Instant::now();
        let rate = run.pairs_per_second(side, super::MANY, duration);
        let pairs = rate * started.elapsed().as_secs_f64().min(duration.as_secs_f64());
        let after = master_cpu_seconds(&cluster);
        let per_master: Vec<String> = before
            .iter()
            .zip(&after)
            .map(|((port, b), (_, a))| format!("{port}: {:.2}", (a - b) * 1e6 / pairs))
            .collect();
        cpu.push((side, per_master.join(", ")));
    }
    let median = |side, c| super::median(&rates[&(side, c)]);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n### Cluster: lock+unlock pairs/s, distinct keys, 3 masters with a replica each (started by the bench, loopback)\n"
    );
    let _ = writeln!(
        out,
        "| contender | c=1 | c=50 | vs floor c=1 | vs floor c=50 | redis-server CPU µs per pair, per master (port: µs, c=50) |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---|");
    for (side, label) in [
        (
            Side::Floor,
            "floor: SET NX PX + compare-and-delete script, 1 redis-rs cluster connection",
        ),
        (
            Side::Lockwright,
            "lockwright async handle on `redis+cluster://`",
        ),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {:.2}× | {:.2}× | {} |",
            super::pairs_text(median(side, 1)),
            super::pairs_text(median(side, super::MANY)),
            median(side, 1) / median(Side::Floor, 1),
            median(side, super::MANY) / median(Side::Floor, super::MANY),
            cpu.iter()
                .find(|(s, _)| *s == side)
                .map_or("", |(_, c)| c.as_str()),
        );
    }
    out
}
