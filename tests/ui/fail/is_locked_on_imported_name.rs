// A `#[locked]` function imported by name: its companion is not imported with it, and the
// compiler says which `use` to add.
mod jobs {
    use lockwright::{locked, LockError};

    #[locked(key = "job-{id}")]
    pub fn process(id: u64) -> Result<u64, LockError> {
        Ok(id)
    }
}

use jobs::process;
use lockwright::is_locked;

fn main() {
    let _ = process(1);
    let _ = is_locked!(process(1)).blocking();
    // The path form needs no import.
    let _ = is_locked!(jobs::process(1)).blocking();
}
