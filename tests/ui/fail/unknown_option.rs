use lockwright::{locked, LockError};

#[locked(key = "job-{id}", timout = 4, retries = 3)]
fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn main() {}
