//! The two examples of py-cachify's lock-methods page print exactly what that page shows, and
//! the `#[locked]` example tells the story it claims.
//!
//! `cargo test` builds the examples next to the test binaries; this runs them as a user would.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/seed_examples-<hash>  →  target/<profile>/examples/<name>
    let deps = std::env::current_exe().expect("test binary path");
    let path = deps
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join(name))
        .expect("target directory layout");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds the examples",
        path.display()
    );
    path
}

fn stdout_of(name: &str) -> String {
    let output = Command::new(example(name)).output().expect("run example");
    assert!(output.status.success(), "{name} failed: {output:?}");
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn is_locked_example_prints_the_five_lines_of_py_cachify() {
    assert_eq!(
        stdout_of("is_locked"),
        "This code is executing under a lock with a timeout of 4 seconds and expiration set to 2 seconds\n\
         Lock is still active! Waiting...\n\
         Lock is still active! Waiting...\n\
         Lock has been released\n\
         Acquire the same lock again\n"
    );
}

#[test]
fn release_example_prints_the_three_lines_of_py_cachify() {
    assert_eq!(
        stdout_of("release"),
        "This code is executing under a lock with a timeout of 4 seconds and expiration set to 2 seconds\n\
         Is the lock currently locked: false\n\
         Acquire the same lock again\n"
    );
}

/// `cargo run --example decorator`: of two workers racing for job 1 one runs it and the other is
/// told it is locked; job 2 runs meanwhile; `is_locked!` sees job 1 locked only while it runs.
#[test]
fn decorator_example_runs_one_of_two_racing_workers_and_a_third_job_in_parallel() {
    let out = stdout_of("decorator");
    let position = |wanted: &str| {
        out.lines()
            .position(|line| line == wanted)
            .unwrap_or_else(|| panic!("no line {wanted:?} in:\n{out}"))
    };
    position("job 1 locked before anyone starts? false");
    position("job 1 locked while worker-a runs? true");
    position("worker-b: skipped, job-1 is already locked!");
    position("worker-a: job 1 done by worker-a");
    position("worker-c: job 2 done by worker-c");
    position("job 1 locked after worker-a returned? false");
    position("report 7 locked now? false (released: false)");
    assert!(
        !out.contains("[worker-b] started"),
        "worker-b ran job 1:\n{out}"
    );
    // Job 2 started while job 1 was still running.
    assert!(position("  [worker-c] started job 2") < position("  [worker-a] finished job 1"));
}
