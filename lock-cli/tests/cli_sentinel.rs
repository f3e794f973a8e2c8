//! The `lockwright` binary behind Sentinel (`redis+sentinel://`), on a real master, replica and
//! three sentinels the harness starts (`lock-core/tests/support/sentinel.rs`).

mod common;
#[path = "../../lock-core/tests/support/mod.rs"]
mod support;

use assert_cmd::Command;
use lock_core::{Lock, RedisBackend, RedisConfig};
use serde_json::Value;

use support::sentinel::shared_sentinel;

/// The binary, pointed at the shared Sentinel set.
fn lockwright() -> Command {
    let mut command = common::lockwright();
    command.env("REDIS_URL", shared_sentinel().url());
    command
}

#[test]
fn behind_sentinel_list_finds_the_masters_locks_and_doctor_checks_the_replicas() {
    let prefix = "cli-sentinel:";
    let backend =
        RedisBackend::connect_blocking(RedisConfig::new(shared_sentinel().url()).prefix(prefix))
            .expect("connect through the sentinels")
            .shared();
    let guard = Lock::with_backend("job", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let output = lockwright()
        .args(["list", "--json", "--prefix", prefix])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed[0]["key"], "job", "{listed}");
    assert_eq!(listed[0]["fence"], guard.fence().0);
    assert_eq!(
        listed[0]["server"],
        format!("127.0.0.1:{}", shared_sentinel().master_port())
    );

    // One replica, and no wait_replicas: a failover can lose a hold.
    let output = lockwright()
        .args(["doctor", "--pings", "3"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{report}");
    assert!(report.contains("WARNING replicas: 1 connected"), "{report}");
    assert!(
        report.contains("fix: set RedisConfig::wait_replicas"),
        "{report}"
    );
    let output = lockwright()
        .args(["doctor", "--pings", "3", "--wait-replicas", "1"])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("ok      replicas: 1 connected"), "{report}");
}
