use lockwright::{locked, LockError};

// Every problem of one attribute is reported together.
#[locked(key = 42, timeout = 0, exp = -1, nowait = 1)]
fn zero_negative_and_wrong_types(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "a", timeout = "4", exp = None)]
fn strings_and_none() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "b", timeout = 0.0, exp = 31536001)]
fn zero_float_and_too_long() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "", timeout = 4ms)]
fn unit_suffix() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
