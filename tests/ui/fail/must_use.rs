// A guard dropped at once releases at once: `#[must_use]` says so. A `#[locked]` function keeps
// the attributes it was written with, `#[must_use]` included.
#![deny(unused_must_use)]

use lockwright::{locked, Lock, LockError};

#[must_use]
#[locked(key = "report-{day}")]
fn report(day: u32) -> Result<u32, LockError> {
    Ok(day)
}

fn main() {
    Lock::new("job").acquire_blocking().unwrap();
    report(7);
}
