use lockwright::{locked, pooled, LockError};

#[pooled]
pub trait Upload {
    fn send(&self) -> Result<(), LockError>;
}

#[locked]
pub trait Job {
    fn run(&self) -> Result<(), LockError>;
}

pub struct Nightly;

#[locked(trait_companions)]
impl Job for Nightly {
    #[pooled(key = "nightly", max_size = 2)]
    fn run(&self) -> Result<(), LockError> {
        Ok(())
    }
}

fn main() {}
