use lockwright::{is_locked, release, LockError};

fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

struct Worker;

impl Worker {
    fn run(&self) {}
}

fn main() {
    let _ = is_locked!(process(42)).blocking();
    let _ = release!(Worker.run()).blocking();
    let _ = is_locked!(42).blocking();
}
