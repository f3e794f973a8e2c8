use lockwright::{locked, LockError};

#[locked(key = "job-{id}", timeout = 4, nowait, timeout = 5, nowait = false)]
fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
