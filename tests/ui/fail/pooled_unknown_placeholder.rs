use lockwright::{pooled, LockError};

#[pooled(key = "user-limit-{user}-{self.shard}", max_size = 5)]
fn export(user_id: u64) -> Result<u64, LockError> {
    Ok(user_id)
}

fn main() {}
