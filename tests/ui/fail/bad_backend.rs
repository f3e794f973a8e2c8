use lockwright::{locked, LockError};

static NAME: &str = "redis://localhost";

#[locked(key = "job", backend = NAME)]
fn process() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
