use lockwright::{locked, LockError};

trait Job {
    fn run(&self, id: u64) -> Result<u64, LockError>;
}

struct Nightly;

// Missing `#[locked]` on the impl block: the companion cannot live in a trait impl.
impl Job for Nightly {
    #[locked(key = "job-{id}")]
    fn run(&self, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }
}

fn main() {}
