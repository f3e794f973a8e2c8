use lockwright::{is_locked, locked, release, LockError};

fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

// Similarly named `#[locked]` items nearby: rustc must not suggest their companions.
#[locked(key = "job-{id}")]
fn processes(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

struct Worker;

impl Worker {
    fn run(&self) {}

    #[locked(key = "runs")]
    fn runs(&self) -> Result<(), LockError> {
        Ok(())
    }
}

fn main() {
    let _ = is_locked!(process(42)).blocking();
    let _ = release!(Worker.run()).blocking();
    let _ = is_locked!(42).blocking();
    let _ = processes(1);
    let _ = Worker.runs();
}
