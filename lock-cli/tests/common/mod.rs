//! What the CLI's test binaries share: the binary to run, and the liveness bound.

use std::time::Duration;

use assert_cmd::Command;

/// A generous liveness bound for anything the tests wait for.
#[allow(dead_code)] // not every test binary waits
pub const LIVENESS: Duration = Duration::from_secs(30);

/// The binary, with no Redis settings from the environment of the test run.
pub fn lockwright() -> Command {
    let mut command = Command::cargo_bin("lockwright").expect("the lockwright binary");
    command
        .env_remove("REDIS_URL")
        .env_remove("REDISCLI_AUTH")
        .timeout(Duration::from_secs(60));
    command
}
