use lockwright::{pooled, LockError};

#[pooled(key = "zero", max_size = 0)]
fn zero() -> Result<(), LockError> {
    Ok(())
}

#[pooled(key = "negative", max_size = -1)]
fn negative() -> Result<(), LockError> {
    Ok(())
}

#[pooled(key = "huge", max_size = 4294967296)]
fn huge() -> Result<(), LockError> {
    Ok(())
}

#[pooled(key = "suffix", max_size = 5u8)]
fn suffix() -> Result<(), LockError> {
    Ok(())
}

#[pooled(key = "text", max_size = "5")]
fn text() -> Result<(), LockError> {
    Ok(())
}

#[pooled(key = "per-call-{user_id}", max_size = limit + 1)]
fn per_call(user_id: u64, limit: u32) -> Result<u64, LockError> {
    Ok(user_id + u64::from(limit))
}

const SLOTS: usize = 4;

#[pooled(key = "wrong-type", max_size = SLOTS)]
fn wrong_type() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
