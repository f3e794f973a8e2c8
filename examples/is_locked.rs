//! py-cachify's `is_alocked()` example, on the in-memory default backend.
//!
//! A lock with a 4 s wait timeout and a 2 s expiry is taken, then polled once a second until the
//! lease runs out; the same lock is then taken again.
//!
//! Run: `cargo run --example is_locked`

use std::time::Duration;

use lockwright::{Lock, LockError};

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let example_lock = Lock::new("example-lock").nowait(false).timeout(4).exp(2);

    let _held = example_lock.acquire().await?;
    println!("This code is executing under a lock with a timeout of 4 seconds and expiration set to 2 seconds");
    while example_lock.is_locked().await? {
        println!("Lock is still active! Waiting...");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    println!("Lock has been released");
    let _again = example_lock.acquire().await?;
    println!("Acquire the same lock again");
    Ok(())
}
