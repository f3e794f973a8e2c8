//! Parameters bound through reference patterns (`&id: &u64`) can be used in keys: the companion
//! takes the parameters as the function does.

use lockwright::{is_locked, locked, LockError};

#[locked(key = "job-{id}")]
fn process(&id: &u64) -> Result<u64, LockError> {
    Ok(id)
}

pub fn main() -> Result<(), LockError> {
    assert_eq!(process(&7)?, 7);
    assert!(!is_locked!(process(&7)).blocking()?);
    Ok(())
}
