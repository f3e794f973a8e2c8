use lockwright::{locked, LockError};

#[locked(key = "a-{}-{0}-{items[0]}-{id:>w$}-{id")]
fn process(id: u64, items: Vec<u64>) -> Result<u64, LockError> {
    Ok(id + items.len() as u64)
}

#[locked(key = "unmatched-}")]
fn brace() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
