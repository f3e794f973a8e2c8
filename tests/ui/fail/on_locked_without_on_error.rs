// `on_locked` covers contention only: a function whose return type cannot carry a `LockError`
// must say what to return for other failures (`on_error`), instead of panicking at run time.
use lockwright::locked;

#[locked(key = "count-{id}", on_locked = 0)]
fn count(id: u32) -> u32 {
    id
}

fn main() {
    let _ = count(1);
}
