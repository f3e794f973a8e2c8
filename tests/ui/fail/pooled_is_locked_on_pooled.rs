use lockwright::{is_locked, pooled, release, LockError};

#[pooled(key = "user-limit-{user_id}", max_size = 5)]
fn export(user_id: u64) -> Result<u64, LockError> {
    Ok(user_id)
}

fn main() {
    let _ = is_locked!(export(1)).blocking();
    let _ = release!(export(1)).blocking();
}
