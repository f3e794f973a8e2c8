use lockwright::{locked, LockError};

// Rust format specs have no Python rendering under `py_cachify`.
#[locked(key = "job-{id:?}-{name:>8}", py_cachify)]
fn run(id: u64, name: &str) -> Result<u64, LockError> {
    Ok(id)
}

// `py_cachify` is a flag.
#[locked(key = "job-{id}", py_cachify = true)]
fn flagged(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
