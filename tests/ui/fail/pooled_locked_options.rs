use lockwright::{locked, pooled, LockError};

#[pooled(key = "user-{id}", max_size = 2, on_locked = Ok(0), py_cachify, max_slots = 3)]
fn pooled_with_locked_options(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "job-{id}", max_size = 2, on_full = Ok(0))]
fn locked_with_pooled_options(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
