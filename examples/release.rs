//! py-cachify's `arelease()` example, on the in-memory default backend.
//!
//! The holder releases its lock early instead of waiting for the lease to run out, then takes it
//! again.
//!
//! Run: `cargo run --example release`

use lockwright::{Lock, LockError};

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let example_lock = Lock::new("example-lock").nowait(false).timeout(4).exp(2);

    let _held = example_lock.acquire().await?;
    println!("This code is executing under a lock with a timeout of 4 seconds and expiration set to 2 seconds");

    example_lock.release().await?;

    println!(
        "Is the lock currently locked: {}",
        example_lock.is_locked().await?
    );
    let _again = example_lock.acquire().await?;
    println!("Acquire the same lock again");
    Ok(())
}
