//! One-line bodies, sync and async, and unit-returning ones: the expansion adds no lint to them
//! (`unused_braces` fires only on braces that share a line, hence `rustfmt::skip`).

use lockwright::{is_locked, locked, LockError};

#[rustfmt::skip]
#[locked(key = "one-{id}")]
fn one(id: u32) -> Result<u32, LockError> { Ok(id) }

#[rustfmt::skip]
#[locked(key = "one-async-{id}")]
async fn one_async(id: u32) -> Result<u32, LockError> { Ok(id) }

#[locked(key = "unit-{id}", on_locked = (), on_error = |_| ())]
fn unit(id: u32) {
    let _ = id;
}

#[locked(key = "empty", on_locked = (), on_error = |_| ())]
fn empty() {}

pub fn main() -> Result<(), LockError> {
    assert_eq!(one(1)?, 1);
    assert!(!is_locked!(one(1)).blocking()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(one_async(2))?, 2);
    unit(3);
    empty();
    Ok(())
}
