use lockwright::{locked, LockError};

#[locked(key = "job-{id}")]
fn process(&id: &u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
