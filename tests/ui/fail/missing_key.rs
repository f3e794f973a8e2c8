use lockwright::{locked, LockError};

#[locked(nowait, timeout = 4)]
fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked]
fn bare() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
