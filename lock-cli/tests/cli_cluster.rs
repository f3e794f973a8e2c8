//! The `lockwright` binary on a real 3-master Redis Cluster the harness starts
//! (`lock-core/tests/support/cluster.rs`): `list` and `pools` scan every master, and
//! `force-unlock` (of a lock, and of a pool's slot) wakes a waiter through the cluster's sharded
//! wake-ups.

mod common;
#[path = "../../lock-core/tests/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use lock_core::{Lock, Pool, RedisBackend, RedisConfig, SharedBackend};
use serde_json::Value;

use support::cluster::{shared_cluster, slot_of};

use common::{lockwright, LIVENESS};

fn backend(prefix: &str) -> SharedBackend {
    RedisBackend::connect_blocking(RedisConfig::new(shared_cluster().0.url()).prefix(prefix))
        .expect("connect to the test cluster")
        .shared()
}

/// One key per master: keys tried in turn until each master serves one of them.
fn a_key_on_each_master(prefix: &str) -> Vec<String> {
    let cluster = &shared_cluster().0;
    let mut keys = Vec::new();
    let mut masters = BTreeSet::new();
    for n in 0.. {
        let key = format!("k{n}");
        let master = cluster.master_of_slot(slot_of(&format!("{prefix}{{{key}}}")));
        if masters.insert(master) {
            keys.push(key);
        }
        if masters.len() == cluster.masters().len() {
            return keys;
        }
    }
    unreachable!()
}

/// The real binary run with `args` against the shared cluster.
fn on_cluster(args: &[&str]) -> std::process::Output {
    lockwright()
        .args(args)
        .args(["--url", &shared_cluster().0.url()])
        .output()
        .unwrap()
}

/// The JSON array a listing command (`list`, `pools`) printed, which must succeed.
fn listing(args: &[&str]) -> Vec<Value> {
    let output = on_cluster(args);
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&text).unwrap()
}

/// Waits until `inspect` (its arguments, `--json` among them) shows the key waited on.
fn until_waited_on(inspect: &[&str]) {
    let deadline = std::time::Instant::now() + LIVENESS;
    loop {
        let output = on_cluster(inspect);
        let shown = serde_json::from_slice::<Value>(&output.stdout).unwrap_or(Value::Null);
        if shown["waited_on"] == true {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the waiter never tried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn list_on_a_cluster_finds_the_locks_on_every_master() {
    let prefix = "cli-cluster-list:";
    let backend = backend(prefix);
    let keys = a_key_on_each_master(prefix);
    assert_eq!(keys.len(), 3, "one key per master: {keys:?}");
    let guards: Vec<_> = keys
        .iter()
        .map(|key| {
            Lock::with_backend(key.as_str(), &backend)
                .exp(30)
                .acquire_blocking()
                .unwrap()
        })
        .collect();
    let listed = listing(&["list", "--json", "--prefix", prefix]);
    let found: Vec<(&str, u64)> = listed
        .iter()
        .map(|lock| {
            (
                lock["key"].as_str().unwrap(),
                lock["fence"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(&str, u64)> = keys
        .iter()
        .zip(&guards)
        .map(|(key, guard)| (key.as_str(), guard.fence().0))
        .collect();
    expected.sort();
    assert_eq!(found, expected);
    let servers: BTreeSet<&str> = listed
        .iter()
        .map(|lock| lock["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers.len(), 3, "found on three masters: {servers:?}");
}

#[test]
fn force_unlock_on_a_cluster_wakes_the_waiter() {
    let prefix = "cli-cluster-force:";
    let backend = backend(prefix);
    let holder = Lock::with_backend("stuck", &backend)
        .never_expires()
        .acquire_blocking()
        .unwrap();
    let (proceeded, waiter) = mpsc::channel();
    {
        let backend = backend.clone();
        std::thread::spawn(move || {
            let acquired = Lock::with_backend("stuck", &backend)
                .nowait(false)
                .timeout(LIVENESS.as_secs_f64() * 10.0)
                .exp(30)
                .acquire_blocking()
                .map(|guard| guard.fence());
            let _ = proceeded.send(acquired);
        });
    }
    until_waited_on(&["inspect", "stuck", "--json", "--prefix", prefix]);
    let output = on_cluster(&["force-unlock", "stuck", "--yes", "--prefix", prefix]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!("fence {}", holder.fence())),
        "{said}"
    );
    let fence = waiter
        .recv_timeout(LIVENESS)
        .expect("the waiter is woken (SPUBLISH)")
        .expect("the waiter proceeds");
    assert!(fence > holder.fence());
}

#[test]
fn pools_on_a_cluster_finds_the_pools_on_every_master() {
    let prefix = "cli-cluster-pools:";
    let backend = backend(prefix);
    let keys = a_key_on_each_master(prefix);
    let guards: Vec<_> = keys
        .iter()
        .map(|key| {
            Pool::with_backend(key.as_str(), 2, &backend)
                .exp(30)
                .acquire_blocking()
                .unwrap()
        })
        .collect();
    let listed = listing(&["pools", "--json", "--prefix", prefix]);
    let found: Vec<(&str, u64)> = listed
        .iter()
        .map(|pool| {
            assert_eq!(pool["live_slots"], 1, "{pool}");
            (
                pool["key"].as_str().unwrap(),
                pool["slots"][0]["token"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut expected: Vec<(&str, u64)> = keys
        .iter()
        .zip(&guards)
        .map(|(key, guard)| (key.as_str(), guard.slot().0))
        .collect();
    expected.sort();
    assert_eq!(found, expected);
    let servers: BTreeSet<&str> = listed
        .iter()
        .map(|pool| pool["server"].as_str().unwrap())
        .collect();
    assert_eq!(servers.len(), 3, "found on three masters: {servers:?}");
}

#[test]
fn force_unlock_of_a_pool_slot_on_a_cluster_wakes_the_waiter() {
    let prefix = "cli-cluster-pool-force:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("stuck", 1, &backend);
    let holder = pool.clone().never_expires().acquire_blocking().unwrap();
    let (proceeded, waiter) = mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let acquired = pool
                .nowait(false)
                .timeout(LIVENESS.as_secs_f64() * 10.0)
                .exp(30)
                .acquire_blocking()
                .map(|guard| guard.slot());
            let _ = proceeded.send(acquired);
        });
    }
    until_waited_on(&["inspect", "--pool", "stuck", "--json", "--prefix", prefix]);
    let slot = holder.slot().to_string();
    let output = on_cluster(&[
        "force-unlock",
        "--pool",
        "stuck",
        "--slot",
        &slot,
        "--yes",
        "--prefix",
        prefix,
    ]);
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{said}");
    assert!(said.contains(&slot), "{said}");
    let taken = waiter
        .recv_timeout(LIVENESS)
        .expect("the waiter is woken (SPUBLISH)")
        .expect("the waiter proceeds");
    assert!(taken > holder.slot());
}

#[test]
fn doctor_on_a_cluster_checks_every_master() {
    let output = lockwright()
        .args(["doctor", "--pings", "3", "--url", &shared_cluster().0.url()])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{report}");
    // One section per master, each with its replica.
    assert_eq!(report.matches(" version: Redis ").count(), 3, "{report}");
    assert_eq!(
        report.matches("WARNING replicas: 1 connected").count(),
        3,
        "{report}"
    );
}
