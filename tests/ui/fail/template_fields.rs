use lockwright::{locked, LockError};

// Placeholders name a parameter, optionally followed by field names or tuple indices.
#[locked(key = "a-{ id}")]
fn spaced(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "b-{id.}")]
fn trailing_dot(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "c-{id{x}}")]
fn nested(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "d", crate = 42)]
fn crate_not_a_path() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
