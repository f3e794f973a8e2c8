use lockwright::{pooled, LockError};

#[pooled(key = "user-{id}", max_size = 2, timeout = wait, exp = None)]
fn per_call_timeout(id: u64, wait: u64) -> Result<u64, LockError> {
    Ok(id + wait)
}

#[pooled(key = "zero-{id}", max_size = 2, timeout = 0, exp = -1)]
fn zero_durations(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[pooled(key = "", max_size = 2)]
fn empty_key() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
