use lockwright::{pooled, LockError};

#[pooled(key = "user-limit-{user_id}")]
fn no_size(user_id: u64) -> Result<u64, LockError> {
    Ok(user_id)
}

#[pooled()]
fn nothing(user_id: u64) -> Result<u64, LockError> {
    Ok(user_id)
}

fn main() {}
