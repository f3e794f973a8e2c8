use lockwright::{locked, pooled, LockError};

#[pooled(key = "user-{id}", max_size = 2)]
#[locked(key = "job-{id}")]
fn both(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
