use lockwright::{locked, LockError};

// `timeout` and `exp` are fixed per function (a literal, a constant, or an expression of
// constants): they cannot read the call's arguments.
#[locked(key = "job-{id}", timeout = wait)]
fn uses_parameter(id: u64, wait: u64) -> Result<u64, LockError> {
    Ok(id + wait)
}

struct Worker {
    lease: u64,
}

impl Worker {
    #[locked(key = "worker", exp = self.lease * 2)]
    fn uses_self(&self) -> Result<u64, LockError> {
        Ok(self.lease)
    }
}

fn main() {}
