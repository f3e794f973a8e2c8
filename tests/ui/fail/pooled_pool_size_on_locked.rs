use lockwright::{locked, pool_size, LockError};

#[locked(key = "job-{id}")]
fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

fn plain(id: u64) -> u64 {
    id
}

fn main() {
    let _ = pool_size!(process(1)).blocking();
    let _ = pool_size!(plain(1)).blocking();
    let _ = pool_size!(42).blocking();
}
