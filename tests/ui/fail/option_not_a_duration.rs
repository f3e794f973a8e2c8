use lockwright::{locked, LockError};

const NAME: &str = "4";

fn from_config() -> u64 {
    4
}

// A constant that is not a number of seconds or a `Duration`.
#[locked(key = "name", timeout = NAME)]
fn not_a_duration() -> Result<(), LockError> {
    Ok(())
}

// Not a constant: the value would be computed again at each call.
#[locked(key = "config", exp = from_config())]
fn not_constant() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
