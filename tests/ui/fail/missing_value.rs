use lockwright::{locked, LockError};

#[locked(key = "job", on_locked)]
fn no_on_locked_value() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "job", timeout =, backend)]
fn no_timeout_or_backend_value() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
