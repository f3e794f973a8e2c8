//! The `lockwright` binary run for real against a `redis-server` the harness starts (one shared
//! server, a key prefix per test; its own server where a test needs a setting). Locks are taken
//! through the library with a `RedisBackend` in this process: to the CLI, another process.

mod common;
#[path = "../../lock-core/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};
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

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits, within the liveness bound, until `check` holds.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIVENESS;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {LIVENESS:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The locks `list --json` shows under `prefix`.
fn listed(prefix: &str) -> Vec<Value> {
    let output = lockwright()
        .args(["list", "--json", "--url", &url(), "--prefix", prefix])
        .output()
        .unwrap();
    let text = stdout_of(&output);
    let parsed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|err| panic!("list --json is not JSON ({err}): {text}"));
    parsed.as_array().expect("a JSON array").clone()
}

#[test]
fn list_shows_a_lock_held_by_another_process() {
    let prefix = "cli-list:";
    let backend = backend(prefix);
    let guard = Lock::with_backend("job-42", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    // --url before the subcommand.
    let output = lockwright()
        .args(["--url", &url(), "--prefix", prefix, "list"])
        .output()
        .unwrap();
    let table = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{table}{}",
        stderr_of(&output)
    );
    let header = table.lines().next().unwrap();
    for column in [
        "KEY",
        "OWNER",
        "FENCE",
        "HOLDS",
        "LEASE LEFT",
        "HELD FOR",
        "WAITED ON",
    ] {
        assert!(header.contains(column), "{table}");
    }
    let row = table.lines().nth(1).expect("a row for the lock");
    assert!(row.starts_with("job-42 "), "{table}");
    assert!(row.contains(&guard.owner().to_string()), "{table}");
    assert!(row.contains(&guard.fence().to_string()), "{table}");
    // The fence counter beside it is not a lock.
    assert_eq!(table.lines().count(), 2, "{table}");
    drop(guard);
    let output = lockwright()
        .args(["--url", &url(), "--prefix", prefix, "list"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "nothing held: exit 1");
    assert!(stderr_of(&output).contains("no lock held"));
}

#[test]
fn list_json_parses_and_tells_owner_fence_count_lease_and_waiters() {
    let prefix = "cli-json:";
    let backend = backend(prefix);
    let lock = Lock::with_backend("report", &backend).exp(30);
    let guard = lock.acquire_blocking().unwrap();
    let again = lock.acquire_blocking().unwrap(); // re-entered: 2 holds
    let _unlimited = Lock::with_backend("forever", &backend)
        .never_expires()
        .acquire_blocking()
        .unwrap();
    // Another owner tries and gives up: the hold is marked as waited on.
    let contender = backend.clone();
    std::thread::spawn(move || {
        let tried = Lock::with_backend("report", &contender).try_acquire_blocking();
        assert!(tried.unwrap().is_none());
    })
    .join()
    .unwrap();
    let locks = listed(prefix);
    assert_eq!(locks.len(), 2, "{locks:?}");
    let forever = &locks[0];
    assert_eq!(forever["key"], "forever");
    assert_eq!(forever["remaining_lease_ms"], Value::Null);
    assert_eq!(forever["waited_on"], false);
    let report = &locks[1];
    assert_eq!(report["key"], "report");
    assert_eq!(report["redis_key"], "cli-json:{report}");
    assert_eq!(report["owner"], guard.owner().to_string());
    assert_eq!(report["fence"], guard.fence().0);
    assert_eq!(report["hold_count"], 2);
    let left = report["remaining_lease_ms"].as_u64().unwrap();
    assert!(left > 0 && left <= 30_000, "{report}");
    assert!(report["held_at_least_ms"].is_u64(), "{report}");
    assert_eq!(report["waited_on"], true);
    drop((again, guard));
}

#[test]
fn list_match_selects_keys_by_glob_even_with_braces_and_backslashes() {
    let prefix = "cli-match:";
    let backend = backend(prefix);
    let keys = ["a}b", r"a\c", "ab", "other"];
    let _guards: Vec<_> = keys
        .iter()
        .map(|key| {
            Lock::with_backend(*key, &backend)
                .exp(30)
                .acquire_blocking()
                .unwrap()
        })
        .collect();
    let matched = |glob: &str| -> Vec<String> {
        let output = lockwright()
            .args(["list", "--json", "--match", glob, "--prefix", prefix])
            .env("REDIS_URL", url())
            .output()
            .unwrap();
        let parsed: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
        parsed
            .as_array()
            .unwrap()
            .iter()
            .map(|lock| lock["key"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(matched("a*"), [r"a\c", "ab", "a}b"]);
    assert_eq!(matched("a}*"), ["a}b"]);
    assert_eq!(matched(r"a\\*"), [r"a\c"]);
    assert_eq!(matched("?b"), ["ab"]);
    assert_eq!(matched("*"), [r"a\c", "ab", "a}b", "other"]);
}

#[test]
fn inspect_shows_one_lock_in_full_and_a_missing_key_exits_1() {
    let prefix = "cli-inspect:";
    let backend = backend(prefix);
    let guard = Lock::with_backend("one", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let output = lockwright()
        .args(["inspect", "one", "--url", &url(), "--prefix", prefix])
        .output()
        .unwrap();
    let text = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{text}{}",
        stderr_of(&output)
    );
    for expected in [
        "key:         one".to_owned(),
        "redis key:   cli-inspect:{one}".to_owned(),
        format!("owner:       {}", guard.owner()),
        format!("fence:       {}", guard.fence()),
        "hold count:  1".to_owned(),
        "waited on:   no".to_owned(),
    ] {
        assert!(text.contains(&expected), "{expected:?} in {text}");
    }
    let output = lockwright()
        .args([
            "inspect",
            "one",
            "--json",
            "--url",
            &url(),
            "--prefix",
            prefix,
        ])
        .output()
        .unwrap();
    let json: Value = serde_json::from_str(&stdout_of(&output)).unwrap();
    assert_eq!(json["fence"], guard.fence().0);
    assert_eq!(json["owner"], guard.owner().to_string());

    let output = lockwright()
        .args([
            "inspect",
            "nobody-holds-this",
            "--url",
            &url(),
            "--prefix",
            prefix,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("is not locked"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn force_unlock_frees_the_lock_and_wakes_a_waiter_blocked_in_acquire() {
    let prefix = "cli-force:";
    let backend = backend(prefix);
    let holder = Lock::with_backend("stuck", &backend)
        .never_expires()
        .acquire_blocking()
        .unwrap();
    // A waiter that only the wake-up gets through within the liveness bound: the hold never
    // expires, and the waiter's own timeout is far longer (its last try at the timeout would
    // get through without any wake-up).
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
    eventually("the waiter marks the lock as waited on", || {
        listed(prefix)
            .first()
            .is_some_and(|lock| lock["waited_on"] == true)
    });
    // Without --yes and without a terminal it refuses, and frees nothing.
    let output = lockwright()
        .args(["force-unlock", "stuck", "--url", &url(), "--prefix", prefix])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("--yes"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(listed(prefix).len(), 1);

    let output = lockwright()
        .args([
            "force-unlock",
            "stuck",
            "--yes",
            "--url",
            &url(),
            "--prefix",
            prefix,
        ])
        .output()
        .unwrap();
    let said = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{said}{}",
        stderr_of(&output)
    );
    assert!(said.contains("freed \"stuck\""), "{said}");
    assert!(
        said.contains(&format!("owner {}", holder.owner())),
        "{said}"
    );
    assert!(
        said.contains(&format!("fence {}", holder.fence())),
        "{said}"
    );
    let waiter_fence = waiter
        .recv_timeout(LIVENESS)
        .expect("the waiter is woken")
        .expect("the waiter proceeds");
    assert!(waiter_fence > holder.fence());
    assert!(holder.is_lease_lost() || !holder.is_held_blocking().unwrap());

    // The waiter holds it now (until its guard dropped at the end of its thread): free again.
    let output = lockwright()
        .args([
            "force-unlock",
            "stuck",
            "--yes",
            "--url",
            &url(),
            "--prefix",
            prefix,
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "nothing to free: exit 1");
    assert!(stderr_of(&output).contains("nothing to free"));
}

#[test]
fn a_bad_url_or_a_wrong_password_exits_2_with_a_message_and_no_password() {
    let server = support::RedisServer::start_with(&["--requirepass", "right-pw-1234"]);
    let host = format!("127.0.0.1:{}", server.port);
    let failures = [
        (format!("redis://:hunter2-wrong@{host}"), None),
        ("redis://:hunter2-wrong@127.0.0.1:notaport".to_owned(), None),
        (format!("redis+cluster://:hunter2-wrong@{host}"), None),
        (
            "redis+sentinel://:hunter2-wrong@127.0.0.1:1/".to_owned(),
            None,
        ),
        (format!("redis://{host}"), Some("hunter2-wrong")),
        ("ftp://hunter2-wrong@somewhere".to_owned(), None),
    ];
    for (url, env_password) in failures {
        let mut command = lockwright();
        command.args(["list", "--url", &url, "--timeout", "2"]);
        if let Some(password) = env_password {
            command.env("REDISCLI_AUTH", password);
        }
        let output = command.output().unwrap();
        let (out, err) = (stdout_of(&output), stderr_of(&output));
        assert_eq!(output.status.code(), Some(2), "{url}: {out}{err}");
        assert!(err.starts_with("lockwright: "), "{url}: a message: {err}");
        assert!(
            !err.contains("hunter2") && !out.contains("hunter2"),
            "{url}: {err}"
        );
    }
    // The right password from the environment works (nothing held: exit 1).
    let output = lockwright()
        .args(["list", "--url", &format!("redis://{host}")])
        .env("REDISCLI_AUTH", "right-pw-1234")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    // No URL at all is a usage error.
    let output = lockwright().arg("list").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr_of(&output).contains("REDIS_URL"));
}

#[test]
fn a_unix_socket_url_works_with_the_password_from_the_environment() {
    let socket = std::env::temp_dir().join(format!("lockwright-cli-{}.sock", std::process::id()));
    let socket_arg = socket.display().to_string();
    let server = support::RedisServer::start_with(&[
        "--unixsocket",
        &socket_arg,
        "--requirepass",
        "s3cret/&?=pw",
    ]);
    let prefix = "cli-unix:";
    let backend = RedisBackend::connect_blocking(
        RedisConfig::new(format!(
            "redis://:s3cret%2F%26%3F%3Dpw@127.0.0.1:{}",
            server.port
        ))
        .prefix(prefix),
    )
    .unwrap()
    .shared();
    let guard = Lock::with_backend("sock", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let output = lockwright()
        .args(["inspect", "sock", "--json", "--prefix", prefix])
        .args(["--url", &format!("redis+unix://{socket_arg}")])
        .env("REDISCLI_AUTH", "s3cret/&?=pw")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["fence"], guard.fence().0);
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn a_tls_url_works_with_the_ca_given_and_fails_typed_without_it() {
    let server = support::tls::TlsRedisServer::start(Default::default());
    let prefix = "cli-tls:";
    let backend = RedisBackend::connect_blocking(
        RedisConfig::new(server.url())
            .tls_ca_file(server.ca_file())
            .prefix(prefix),
    )
    .unwrap()
    .shared();
    let guard = Lock::with_backend("secure", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let ca = server.ca_file().display().to_string();
    let output = lockwright()
        .args(["list", "--json", "--prefix", prefix, "--tls-ca-file", &ca])
        .args(["--url", &server.url()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed[0]["fence"], guard.fence().0, "{listed}");
    // The system's roots do not know the test CA.
    let output = lockwright()
        .args(["list", "--prefix", prefix, "--url", &server.url()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("tls_ca_file"),
        "{}",
        stderr_of(&output)
    );
}

/// `watch --plain` running, its lines read as they come.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(prefix: &str) -> Watch {
        Self::start_with_interval(prefix, "0.1")
    }

    fn start_with_interval(prefix: &str, interval: &str) -> Watch {
        let mut child = Process::new(assert_cmd::cargo::cargo_bin("lockwright"))
            .args([
                "watch",
                "--plain",
                "--interval",
                interval,
                "--prefix",
                prefix,
            ])
            .args(["--url", &url()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        support::kill_with_the_test_process(child.id());
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = send.send(line);
            }
        });
        Watch {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next line that starts with `start` (failing after the liveness bound).
    fn line_starting(&mut self, start: &str) -> String {
        let deadline = Instant::now() + LIVENESS;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no line starting {start:?} in {LIVENESS:?}; seen: {:#?}",
                    self.seen
                )
            });
            self.seen.push(line.clone());
            if line.starts_with(start) {
                return line;
            }
        }
    }

    /// Ctrl-C: it ends cleanly, with the counts.
    fn interrupt(mut self) -> String {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let counts = self.line_starting("stopped:");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "watch ended with {status}");
        counts
    }
}

#[test]
fn watch_plain_shows_takes_contention_hand_offs_and_releases_and_ends_on_ctrl_c() {
    let prefix = "cli-watch:";
    let backend = backend(prefix);
    let already = Lock::with_backend("before", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let mut watch = Watch::start(prefix);
    let held = watch.line_starting("held ");
    assert!(held.starts_with("held key=\"before\""), "{held}");
    watch.line_starting("watching:");

    let guard = Lock::with_backend("job", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let take = watch.line_starting("take ");
    assert!(
        take.starts_with(&format!(
            "take key=\"job\" owner={} fence={} holds=1",
            guard.owner(),
            guard.fence()
        )),
        "{take}"
    );
    let waiter = {
        let backend = backend.clone();
        std::thread::spawn(move || {
            let guard = Lock::with_backend("job", &backend)
                .nowait(false)
                .timeout(LIVENESS.as_secs_f64())
                .exp(30)
                .acquire_blocking()
                .unwrap();
            (guard.fence(), guard.owner())
        })
    };
    let contended = watch.line_starting("contended ");
    assert!(
        contended.starts_with("contended key=\"job\""),
        "{contended}"
    );
    let first_fence = guard.fence();
    drop(guard);
    let release = watch.line_starting("release ");
    assert!(
        release.starts_with("release key=\"job\" owner="),
        "{release}"
    );
    assert!(
        release.contains(&format!("fence={first_fence}")),
        "{release}"
    );
    assert!(release.ends_with("handed_off=yes"), "{release}");
    let (second_fence, _) = waiter.join().unwrap();
    // The waiter's hold, taken and then dropped with its thread, may fall between two scans;
    // the release of `before` may not.
    drop(already);
    let mut release = watch.line_starting("release ");
    while !release.starts_with("release key=\"before\"") {
        assert!(
            release.contains(&format!("fence={second_fence}")),
            "{release}"
        );
        release = watch.line_starting("release ");
    }
    assert!(release.ends_with("handed_off=no"), "{release}");
    let counts = watch.interrupt();
    assert!(counts.contains("contended 1"), "{counts}");
    assert!(counts.contains("hand-offs 1"), "{counts}");
}

#[test]
fn watch_plain_shows_pool_slots_taken_and_freed_and_a_pool_found_full() {
    let prefix = "cli-watch-pools:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("workers", 2, &backend).exp(30);
    let already = pool.acquire_blocking().unwrap();
    let mut watch = Watch::start(prefix);
    let taken = watch.line_starting("pool ");
    assert!(
        taken.starts_with("pool key=\"workers\" slots=1/2 waited_on=no"),
        "{taken}"
    );
    watch.line_starting("watching:");

    let second = pool.acquire_blocking().unwrap();
    let take = watch.line_starting("slot-take ");
    assert_eq!(
        take,
        format!(
            "slot-take key=\"workers\" token={} owner={} lease={}",
            second.slot(),
            second.owner(),
            take.rsplit_once("lease=").unwrap().1
        )
    );
    let refused = pool.acquire_blocking();
    assert!(
        matches!(refused, Err(LockError::PoolFull { .. })),
        "{refused:?}"
    );
    let full = watch.line_starting("pool-full ");
    assert_eq!(full, "pool-full key=\"workers\" slots=2/2");
    let freed_slot = second.slot();
    drop(second);
    let free = watch.line_starting("slot-free ");
    assert!(
        free.starts_with(&format!("slot-free key=\"workers\" token={freed_slot} ")),
        "{free}"
    );
    assert!(free.ends_with("handed_off=yes"), "{free}");
    let counts = watch.interrupt();
    assert!(
        counts.contains("slot takes 1  slot frees 1  pools full 1"),
        "{counts}"
    );
    drop(already);
}

#[test]
fn watch_refreshes_at_once_when_a_release_wakes_waiters() {
    let prefix = "cli-watch-wakeup:";
    let backend = backend(prefix);
    let holder = Lock::with_backend("queue", &backend)
        .exp(60)
        .acquire_blocking()
        .unwrap();
    let (proceeded, waiter) = mpsc::channel();
    {
        let backend = backend.clone();
        std::thread::spawn(move || {
            let guard = Lock::with_backend("queue", &backend)
                .nowait(false)
                .timeout(LIVENESS.as_secs_f64() * 10.0)
                .exp(60)
                .acquire_blocking()
                .unwrap();
            let _ = proceeded.send(guard.fence());
            std::thread::sleep(LIVENESS); // keeps the hold while the watch looks
        });
    }
    eventually("the waiter marks the lock as waited on", || {
        listed(prefix)
            .first()
            .is_some_and(|lock| lock["waited_on"] == true)
    });
    // No periodic refresh within the test: only the release's wake-up can show the change.
    let mut watch = Watch::start_with_interval(prefix, "3600");
    watch.line_starting("watching:");
    let first = holder.fence();
    drop(holder);
    let release = watch.line_starting("release ");
    assert!(release.contains(&format!("fence={first}")), "{release}");
    assert!(release.ends_with("handed_off=yes"), "{release}");
    // (The woken waiter's take shows on the follow-up scan, unless it came later than that.)
    waiter.recv_timeout(LIVENESS).expect("the waiter proceeds");
    let counts = watch.interrupt();
    assert!(counts.contains("hand-offs 1"), "{counts}");
}

#[test]
fn watch_refreshes_at_once_when_a_pool_slot_freed_wakes_waiters() {
    let prefix = "cli-watch-pool-wakeup:";
    let backend = backend(prefix);
    let pool = Pool::with_backend("queue", 1, &backend);
    let holder = pool.clone().exp(60).acquire_blocking().unwrap();
    let (proceeded, waiter) = mpsc::channel();
    {
        let pool = pool.clone();
        std::thread::spawn(move || {
            let guard = pool
                .nowait(false)
                .timeout(LIVENESS.as_secs_f64() * 10.0)
                .exp(60)
                .acquire_blocking()
                .unwrap();
            let _ = proceeded.send(guard.slot());
            std::thread::sleep(LIVENESS); // keeps the slot while the watch looks
        });
    }
    let mut watch = Watch::start_with_interval(prefix, "3600");
    // The waiter may mark the pool before or after the watch starts.
    let full = watch.line_starting("pool ");
    if !full.contains("waited_on=yes") {
        watch.line_starting("watching:");
        eventually("the waiter marks the pool as waited on", || {
            let output = lockwright()
                .args(["pools", "--json", "--url", &url(), "--prefix", prefix])
                .output()
                .unwrap();
            serde_json::from_slice::<Value>(&output.stdout)
                .is_ok_and(|pools| pools[0]["waited_on"] == true)
        });
    }
    // No periodic refresh within the test: only the wake-up can show the change.
    let first = holder.slot();
    drop(holder);
    let free = watch.line_starting("slot-free ");
    assert!(free.contains(&format!("token={first} ")), "{free}");
    assert!(free.ends_with("handed_off=yes"), "{free}");
    waiter.recv_timeout(LIVENESS).expect("the waiter proceeds");
    let counts = watch.interrupt();
    assert!(counts.contains("slot frees 1"), "{counts}");
}

/// The `script` command (util-linux), which runs a command on a pseudo-terminal.
fn require_script() {
    match Process::new("script").arg("--version").output() {
        Ok(_) => {}
        Err(err) => panic!(
            "cannot run `script` ({err}), which gives `watch` a terminal in this test: install \
             it with `apt-get install bsdutils` (Debian/Ubuntu)"
        ),
    }
}

#[test]
fn watch_on_a_terminal_redraws_in_place_and_ends_on_ctrl_c() {
    use std::io::{Read, Write};
    require_script();
    let prefix = "cli-watch-tty:";
    let backend = backend(prefix);
    // `script` runs the command through `$SHELL -c`. `exec` makes the terminal's Ctrl-C reach
    // lockwright alone: a shell left waiting (dash does this) gets the SIGINT too and ends with
    // 130 whatever lockwright's own exit code. SHELL is fixed so the test is the same everywhere.
    let watch = format!(
        "exec {} watch --interval 0.1 --prefix {prefix} --url {}",
        assert_cmd::cargo::cargo_bin("lockwright").display(),
        url()
    );
    let mut child = Process::new("script")
        .args(["-qfec", &watch, "/dev/null"])
        .env("SHELL", "/bin/sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    support::kill_with_the_test_process(child.id());
    let mut stdout = child.stdout.take().unwrap();
    let (send, screens) = mpsc::channel();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut chunk) {
            if n == 0 || send.send(chunk[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut shown = Vec::new();
    let mut until = |what: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + LIVENESS;
        loop {
            let text = String::from_utf8_lossy(&shown).into_owned();
            // The latest screen: what follows the last cursor-home.
            let latest = text.rsplit("\x1b[H").next().unwrap_or_default().to_owned();
            if done(&latest) {
                return latest;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match screens.recv_timeout(left) {
                Ok(bytes) => shown.extend(bytes),
                Err(_) => panic!("{what}: not within {LIVENESS:?}; shown: {text:?}"),
            }
        }
    };
    until("the first screen", &|screen| {
        screen.contains("no lock held")
    });
    let guard = Lock::with_backend("on-screen", &backend)
        .exp(30)
        .acquire_blocking()
        .unwrap();
    let fence = guard.fence().to_string();
    let screen = until("the lock on screen", &|screen| screen.contains(&fence));
    assert!(screen.contains("takes 1  releases 0"), "{screen:?}");
    assert!(screen.contains("KEY"), "{screen:?}");
    drop(guard);
    let screen = until("the release on screen", &|screen| {
        screen.contains("releases 1")
    });
    assert!(screen.contains("no lock held"), "{screen:?}");
    assert!(
        screen.contains("release key=\"on-screen\""),
        "recent events: {screen:?}"
    );
    // Ctrl-C on the terminal.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let end = until("the end", &|screen| screen.contains("stopped:"));
    assert!(
        end.contains("\x1b[?25h"),
        "the cursor is shown again: {end:?}"
    );
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "watch on a terminal ended with {status}: {end:?}"
    );
}

#[test]
fn doctor_passes_a_sound_server_and_fails_one_that_may_evict_held_locks() {
    let output = lockwright()
        .args(["doctor", "--pings", "3", "--url", &url()])
        .output()
        .unwrap();
    let report = stdout_of(&output);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{report}{}",
        stderr_of(&output)
    );
    for check in [
        "version",
        "role",
        "eviction",
        "persistence",
        "replicas",
        "latency",
        "clock",
    ] {
        assert!(
            report.contains(&format!(" {check}: ")),
            "{check} in {report}"
        );
    }
    assert!(
        report.contains("ok      eviction: maxmemory-policy noeviction"),
        "{report}"
    );
    // The harness runs it without persistence: a warning with its fix, not a failure.
    assert!(report.contains("WARNING persistence"), "{report}");
    assert!(
        report.contains("fix: CONFIG SET appendonly yes"),
        "{report}"
    );

    // The applications' wait_replicas cannot be met on a server without replicas.
    let output = lockwright()
        .args([
            "doctor",
            "--pings",
            "3",
            "--wait-replicas",
            "1",
            "--url",
            &url(),
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout_of(&output).contains("PROBLEM replicas"),
        "{}",
        stdout_of(&output)
    );

    let evicting = support::RedisServer::start_with(&[
        "--maxmemory",
        "100mb",
        "--maxmemory-policy",
        "allkeys-lru",
    ]);
    let output = lockwright()
        .args(["doctor", "--pings", "3", "--url", &evicting.url()])
        .output()
        .unwrap();
    let report = stdout_of(&output);
    assert_eq!(output.status.code(), Some(1), "{report}");
    assert!(report.contains("PROBLEM eviction"), "{report}");
    assert!(report.contains("allkeys-lru"), "{report}");
    assert!(
        report.contains("fix: CONFIG SET maxmemory-policy noeviction"),
        "{report}"
    );
    assert!(report.contains("problems found"), "{report}");
}

#[test]
fn every_command_has_help() {
    for command in [
        vec!["--help"],
        vec!["list", "--help"],
        vec!["inspect", "--help"],
        vec!["force-unlock", "--help"],
        vec!["watch", "--help"],
        vec!["doctor", "--help"],
        vec!["help", "list"],
    ] {
        // The help names REDIS_URL but never shows its value (it may hold a password).
        let output = lockwright()
            .args(&command)
            .env("REDIS_URL", "redis://:hunter2@127.0.0.1:1")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{command:?}");
        let help = stdout_of(&output);
        assert!(help.contains("Usage: lockwright"), "{command:?}");
        assert!(!help.contains("hunter2"), "{command:?}: {help}");
    }
    // A usage error exits 2.
    let output = lockwright()
        .args(["list", "--no-such-option"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
}
