//! `cargo run --example redis` works against a real server and leaves nothing behind.

#[path = "../lock-core/tests/support/mod.rs"]
mod support;

use std::process::Command;

/// Runs the built example with `env`; asserts it succeeded and printed every step.
fn run_example(env: &[(&str, String)]) {
    let example = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("examples").join("redis")))
        .filter(|path| path.exists())
        .expect("run with `cargo test --workspace`, which builds the examples");
    let output = Command::new(example)
        // Only what the test sets.
        .env_remove("REDIS_CA_FILE")
        .envs(env.iter().map(|(name, value)| (name, value)))
        .output()
        .expect("run the example");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    for expected in [
        "alice holds job-7 with fence",
        "bob holds job-7 with fence",
        "is job-7 locked (seen from another task)? true",
        "is_locked!(process(7)) while the handle holds job-7? true",
        "process(7) from another task: job-7 is held",
        "from the holding task: process(7) ran under the lock",
        "released; locked now? false\nprocess(7) ran under the lock",
        "still held: true",
        "released; locked now? false",
        "cleaned up 1 key(s)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn redis_example_runs_against_a_real_server_and_cleans_up() {
    let server = support::RedisServer::start();
    run_example(&[("REDIS_URL", server.url())]);
    let mut raw = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let left: u64 = redis::cmd("DBSIZE").query(&mut raw).unwrap();
    assert_eq!(left, 0, "the example left keys behind");
}

#[test]
fn redis_example_runs_over_tls_with_a_private_ca_and_cleans_up() {
    let server = support::tls::TlsRedisServer::start(Default::default());
    run_example(&[
        ("REDIS_URL", server.url()),
        ("REDIS_CA_FILE", server.ca_file().display().to_string()),
    ]);
    let left: u64 = redis::cmd("DBSIZE").query(&mut server.admin("")).unwrap();
    assert_eq!(left, 0, "the example left keys behind");
}

#[test]
fn redis_example_runs_against_a_cluster_and_cleans_up() {
    let cluster = support::cluster::RedisCluster::start();
    run_example(&[("REDIS_URL", cluster.url())]);
    for master in cluster.masters() {
        let left = cluster.nodes[master].command(&["DBSIZE"]);
        assert_eq!(left, "0", "the example left keys behind on a master");
    }
}

#[test]
fn redis_example_runs_behind_sentinel_and_cleans_up() {
    let set = support::sentinel::SentinelSet::start();
    run_example(&[("REDIS_URL", set.url())]);
    let left: u64 = redis::cmd("DBSIZE")
        .query(&mut set.server_conn(set.master_port()))
        .unwrap();
    assert_eq!(left, 0, "the example left keys behind on the master");
}
