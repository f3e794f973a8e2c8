//! The `lockwright` binary's pool commands (`pools`, `inspect --pool`, `force-unlock --pool`)
//! run for real against the `redis-server` the harness starts (a key prefix per test). Slots are
//! taken through the library's `Pool` with a `RedisBackend` in this process: to the CLI, another
//! process.

mod common;
#[path = "../../lock-core/tests/support/mod.rs"]
mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use lock_core::{Lock, LockError, Pool, RedisBackend, RedisConfig, SharedBackend};
use serde_json::Value;

use common::{lockwright, LIVENESS};

/// The shared server's URL.
fn url() -> String {
    support::shared_redis().0.url()
}

/// A backend on the shared server with this test's own prefix.
fn backend(prefix: &str) -> SharedBackend {
    RedisBackend::connect_blocking(RedisConfig::new(url()).prefix(prefix))
        .expect("connect to the shared test server")
        .shared()
}

/// Runs the binary on the shared server under `prefix`: exit code, standard output and error.
fn run(prefix: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let output = lockwright()
        .args(args)
        .args(["--url", &url(), "--prefix", prefix])
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The pools `pools --json` shows under `prefix`.
fn pools_json(prefix: &str) -> Vec<Value> {
    let (_, text, err) = run(prefix, &["pools", "--json"]);
    let parsed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|parse| panic!("pools --json is not JSON ({parse}): {text}{err}"));
    parsed.as_array().expect("a JSON array").clone()
}

/// Waits, within the liveness bound, until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIVENESS;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {LIVENESS:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Tries the full pool once (nowait): it is refused, and marks the pool as waited on.
fn try_full(pool: &Pool) {
    let tried = pool.acquire_blocking();
    assert!(
        matches!(tried, Err(LockError::PoolFull { .. })),
        "{tried:?}"
    );
}

#[test]
fn pools_shows_each_pool_held_by_another_process_with_its_counts_and_waiters() {
    let prefix = "cli-pools-list:";
    let backend = backend(prefix);
    let limit = Pool::with_backend("api-limit", 3, &backend).exp(30);
    let _first = limit.acquire_blocking().unwrap();
    let _second = limit.acquire_blocking().unwrap();
    let single = Pool::with_backend("single", 1, &backend).never_expires();
    let _only = single.acquire_blocking().unwrap();
    try_full(&single);
    // A lock of the same prefix is not a pool, and a pool is not a lock.
    let _lock = Lock::with_backend("a-lock", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();

    let (code, table, err) = run(prefix, &["pools"]);
    assert_eq!(code, Some(0), "{table}{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two pools: {table}");
    for column in ["KEY", "SLOTS", "WAITED ON", "SOONEST END"] {
        assert!(lines[0].contains(column), "{table}");
    }
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|cell| !cell.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let api = cells(lines[1]);
    assert_eq!(api[..3], ["api-limit", "2/3", "no"], "{table}");
    assert!(api[3].ends_with('s'), "a lease of at most 30s: {table}");
    assert_eq!(
        cells(lines[2]),
        ["single", "1/1", "yes", "never"],
        "{table}"
    );

    let (code, only_api, _) = run(prefix, &["pools", "--match", "api-*"]);
    assert_eq!(code, Some(0));
    assert_eq!(only_api.lines().count(), 2, "{only_api}");
    assert!(only_api.contains("api-limit"), "{only_api}");

    let (code, locks, _) = run(prefix, &["list", "--json"]);
    assert_eq!(code, Some(0));
    let locks: Value = serde_json::from_str(&locks).unwrap();
    assert_eq!(locks.as_array().unwrap().len(), 1, "only the lock: {locks}");

    let (code, _, err) = run(prefix, &["pools", "--match", "nothing-*"]);
    assert_eq!(code, Some(1), "no pool: exit 1");
    assert!(err.contains("no pool with a live slot"), "{err}");
}

#[test]
fn pools_json_parses_with_every_slot_and_counts_no_expired_slot() {
    let prefix = "cli-pools-json:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("workers", 3, &backend);
    let long = pool.clone().exp(30).acquire_blocking().unwrap();
    let forever = pool.clone().never_expires().acquire_blocking().unwrap();
    let short = pool.clone().exp(0.2).acquire_blocking().unwrap();

    // The short slot ends by the server clock, and stays in the sorted set (nobody acquires
    // to reclaim it): the CLI must not count it.
    eventually("the ended slot is no longer counted", || {
        pools_json(prefix)
            .first()
            .is_some_and(|found| found["live_slots"] == 2)
    });
    let mut conn = redis::Client::open(url())
        .unwrap()
        .get_connection()
        .unwrap();
    let stored: u64 = redis::cmd("ZCARD")
        .arg(format!("{prefix}{{workers}}:pool"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(stored, 3, "the ended slot is still stored");

    let pools = pools_json(prefix);
    assert_eq!(pools.len(), 1, "{pools:?}");
    let found = &pools[0];
    assert_eq!(found["key"], "workers");
    assert_eq!(found["redis_key"], format!("{prefix}{{workers}}:pool"));
    assert_eq!(found["max_size"], 3);
    assert_eq!(found["waited_on"], false);
    let soonest = found["soonest_end_ms"].as_u64().expect("one slot ends");
    assert!(soonest > 0 && soonest <= 30_000, "{found}");
    let slots = found["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2, "{found}");
    // Soonest end first: the leased slot, then the one without an end.
    assert_eq!(slots[0]["token"], long.slot().0);
    assert_eq!(slots[0]["owner"], long.owner().to_string());
    assert_eq!(slots[0]["remaining_lease_ms"], soonest);
    assert_eq!(slots[1]["token"], forever.slot().0);
    assert_eq!(slots[1]["owner"], forever.owner().to_string());
    assert_eq!(slots[1]["remaining_lease_ms"], Value::Null);
    drop((long, forever, short));
}

#[test]
fn inspect_pool_shows_every_live_slot_and_a_missing_pool_exits_1() {
    let prefix = "cli-pools-inspect:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("crawlers", 2, &backend).exp(30);
    let first = pool.acquire_blocking().unwrap();
    let second = pool.acquire_blocking().unwrap();
    try_full(&pool);

    let (code, text, err) = run(prefix, &["inspect", "--pool", "crawlers"]);
    assert_eq!(code, Some(0), "{text}{err}");
    for expected in [
        "pool:        crawlers".to_owned(),
        format!("redis key:   {prefix}{{crawlers}}:pool"),
        "slots:       2 live, max size 2".to_owned(),
        "waited on:   yes".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text}");
    }
    for guard in [&first, &second] {
        let row = text
            .lines()
            .find(|line| line.trim_start().starts_with(&guard.slot().to_string()))
            .unwrap_or_else(|| panic!("a row for slot {}: {text}", guard.slot()));
        assert!(row.contains(&guard.owner().to_string()), "{row}");
    }

    let (code, json, _) = run(prefix, &["inspect", "crawlers", "--pool", "--json"]);
    assert_eq!(code, Some(0));
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["live_slots"], 2);
    let tokens: Vec<u64> = json["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| slot["token"].as_u64().unwrap())
        .collect();
    let mut expected = vec![first.slot().0, second.slot().0];
    expected.sort_unstable();
    let mut sorted = tokens.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected, "{json}");

    let (code, _, err) = run(prefix, &["inspect", "--pool", "nobody-uses-this"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("has no live slot"), "{err}");
    // A pool is not a lock of the same key.
    let (code, _, err) = run(prefix, &["inspect", "crawlers"]);
    assert_eq!(code, Some(1), "{err}");
}

#[test]
fn force_unlock_of_a_slot_lets_a_waiter_blocked_in_acquire_in() {
    let prefix = "cli-pools-force:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("stuck", 2, &backend);
    let holder = pool.clone().never_expires().acquire_blocking().unwrap();
    let other_holder = pool.clone().never_expires().acquire_blocking().unwrap();
    // A waiter that only the wake-up gets through within the liveness bound: the slot never
    // expires, and the waiter's own timeout is far longer.
    let (proceeded, waiter) = mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let acquired = pool
                .nowait(false)
                .timeout(LIVENESS.as_secs_f64() * 10.0)
                .exp(30)
                .acquire_blocking();
            let _ = proceeded.send(acquired.map(|guard| guard.slot()));
        });
    }
    eventually("the waiter marks the pool as waited on", || {
        pools_json(prefix)
            .first()
            .is_some_and(|found| found["waited_on"] == true)
    });
    let holder_slot = holder.slot().to_string();

    // Without --yes and without a terminal it refuses, and frees nothing.
    let (code, _, err) = run(prefix, &["force-unlock", "--pool", "stuck"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--yes"), "{err}");
    // A slot that is not live: nothing to free.
    let other = (other_holder.slot().0 + 1).to_string();
    let (code, _, err) = run(
        prefix,
        &["force-unlock", "--pool", "stuck", "--slot", &other, "--yes"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nothing to free"), "{err}");
    assert_eq!(pools_json(prefix)[0]["live_slots"], 2);
    // --slot is a pool's.
    let (code, _, _) = run(prefix, &["force-unlock", "stuck", "--slot", &holder_slot]);
    assert_eq!(code, Some(2), "--slot without --pool is a usage error");

    let (code, said, err) = run(
        prefix,
        &[
            "force-unlock",
            "--pool",
            "stuck",
            "--slot",
            &holder_slot,
            "--yes",
        ],
    );
    assert_eq!(code, Some(0), "{said}{err}");
    assert!(said.contains("freed 1 slot(s) of pool \"stuck\""), "{said}");
    let row = said
        .lines()
        .find(|line| line.trim_start().starts_with(&holder_slot))
        .unwrap_or_else(|| panic!("the freed slot: {said}"));
    assert!(row.contains(&holder.owner().to_string()), "{said}");
    let waiter_slot = waiter
        .recv_timeout(LIVENESS)
        .expect("the waiter is woken")
        .expect("the waiter proceeds");
    assert!(waiter_slot > other_holder.slot());
    // Only that slot was freed: the other holder keeps its own.
    let tokens: Vec<u64> = pools_json(prefix)[0]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| slot["token"].as_u64().unwrap())
        .collect();
    assert!(tokens.contains(&other_holder.slot().0), "{tokens:?}");
    assert!(!tokens.contains(&holder.slot().0), "{tokens:?}");
    drop((holder, other_holder));
}

#[test]
fn force_unlock_of_a_pool_frees_every_slot_and_says_so_in_json() {
    let prefix = "cli-pools-force-all:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("batch", 3, &backend).exp(30);
    let first = pool.acquire_blocking().unwrap();
    let second = pool.acquire_blocking().unwrap();

    let (code, said, err) = run(
        prefix,
        &["force-unlock", "--pool", "batch", "--yes", "--json"],
    );
    assert_eq!(code, Some(0), "{said}{err}");
    let json: Value = serde_json::from_str(&said).unwrap();
    assert_eq!(json["key"], "batch");
    assert_eq!(json["freed"], 2);
    let mut freed: Vec<u64> = json["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| slot["token"].as_u64().unwrap())
        .collect();
    freed.sort_unstable();
    assert_eq!(freed, [first.slot().0, second.slot().0]);
    assert_eq!(pool.size_blocking().unwrap(), 0, "the pool is empty");
    assert!(pools_json(prefix).is_empty());

    let (code, _, err) = run(prefix, &["force-unlock", "--pool", "batch", "--yes"]);
    assert_eq!(code, Some(1), "nothing to free: exit 1");
    assert!(err.contains("has no live slot"), "{err}");
    // The guards give back slots that are no longer theirs: nothing else is freed.
    drop((first, second));
}

#[test]
fn the_pool_commands_have_help() {
    for (command, mentions) in [
        (vec!["pools", "--help"], "--match"),
        (vec!["inspect", "--help"], "--pool"),
        (vec!["force-unlock", "--help"], "--slot"),
        (vec!["--help"], "pools"),
    ] {
        let output = lockwright().args(&command).output().unwrap();
        assert_eq!(output.status.code(), Some(0), "{command:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("Usage: lockwright"), "{command:?}");
        assert!(help.contains(mentions), "{command:?}: {help}");
    }
}
