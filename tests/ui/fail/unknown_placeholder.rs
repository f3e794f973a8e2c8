use lockwright::{locked, LockError};

#[locked(key = "job-{idd}-{user.name}")]
fn process(id: u64, user: &str) -> Result<usize, LockError> {
    Ok(id as usize + user.len())
}

fn main() {}
