use lockwright::{is_locked, locked, LockError};

#[locked(key = "job-{id}")]
async fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

async fn check() -> Result<bool, LockError> {
    is_locked!(process(42).await).await
}

fn main() {}
