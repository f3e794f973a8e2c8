use lockwright::{locked, LockError};

#[locked(key = "const")]
const fn constant() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "struct")]
struct Job;

trait Runner {
    #[locked(key = "declaration")]
    fn run(&self) -> Result<(), LockError>;
}

#[locked(key = "impl")]
impl Job {}

#[locked(key = "trait")]
trait Described {
    fn describe(&self) -> String;
}

fn main() {}
