use lockwright::{locked, LockError};

// The key is an option like the others: `key = "..."`.
#[locked("job-{id}")]
fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked("report", nowait = false)]
fn report() -> Result<(), LockError> {
    Ok(())
}

fn main() {}
