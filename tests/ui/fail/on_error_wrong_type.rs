use lockwright::{locked, LockError};

// `on_error` must be a closure from `LockError` to the return type.
#[locked(key = "count-{id}", on_error = |err: LockError| err.to_string())]
fn count(id: u32) -> u32 {
    id
}

#[locked(key = "name", on_error = |err: String| err)]
fn name() -> String {
    String::new()
}

#[locked(key = "label", on_error = "lock failed")]
fn label() -> &'static str {
    "ran"
}

fn main() {}
