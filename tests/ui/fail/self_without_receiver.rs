use lockwright::{locked, LockError};

struct Worker(u64);

impl Worker {
    #[locked(key = "worker-{self.id}")]
    fn create(id: u64) -> Result<Worker, LockError> {
        Ok(Worker(id))
    }
}

fn main() {}
