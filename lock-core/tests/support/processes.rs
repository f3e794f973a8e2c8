//! Test processes: worker children of a test binary, and the one clock they share with it.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// CLOCK_MONOTONIC in nanoseconds: one clock for every process on this machine.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    assert_eq!(rc, 0);
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// A child process: this test binary run again in one of its worker roles.
pub struct Worker {
    pub child: Child,
    pub stdin: ChildStdin,
    /// `None` once taken by [`Worker::take_stdout`].
    pub stdout: Option<BufReader<ChildStdout>>,
}

impl Worker {
    /// Runs this test binary again, as the ignored test `entry` (which dispatches on
    /// `LOCKWRIGHT_ROLE`), with `env` set.
    pub fn start(entry: &str, role: &str, env: &[(&str, String)]) -> Worker {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--ignored",
                "--exact",
                entry,
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LOCKWRIGHT_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = Some(BufReader::new(child.stdout.take().unwrap()));
        Worker {
            child,
            stdin,
            stdout,
        }
    }

    /// The next line the worker printed with the `@ ` marker (test-harness output is skipped).
    pub fn line(&mut self) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let stdout = self.stdout.as_mut().expect("stdout was taken");
            let n = stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "worker exited early");
            // libtest prints `test fault_worker ... ` with no newline before our first line.
            if let Some((_, payload)) = line.trim_end().split_once("@ ") {
                return payload.to_owned();
            }
        }
    }

    /// The worker's output, for a reader of its own (a thread that must keep up with it).
    pub fn take_stdout(&mut self) -> BufReader<ChildStdout> {
        self.stdout.take().expect("stdout was taken")
    }

    pub fn say(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A setting from the environment (a run's size), else `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator: a worker's choices, reproducible per seed, no dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A variable the parent test set for a worker.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the parent test"))
}
