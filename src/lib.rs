//! # lockwright
//!
//! Distributed keyed locks for Rust: lock handles with the full py-cachify and Hazelcast lock API,
//! reentrant holds, fencing tokens, and an embedded in-memory backend that needs no set-up.
//!
//! This crate only re-exports: the runtime lives in `lock-core`, the macros in `lock-macros`.
//!
//! ```
//! use lockwright::Lock;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), lockwright::LockError> {
//! let lock = Lock::new("example-lock").nowait(false).timeout(4).exp(2);
//! let guard = lock.acquire().await?;
//! assert!(lock.is_locked().await?);
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! ## Locked functions
//!
//! [`#[locked]`](macro@locked) runs a function under the lock its arguments name (py-cachify's
//! decorators, checked at compile time); [`is_locked!`] and [`release!`] ask about, or free, the
//! lock a call would take, without running it.
//!
//! ```
//! use lockwright::{is_locked, locked, LockError};
//!
//! #[locked(key = "job-{id}", nowait, timeout = 4, exp = 2)]
//! async fn process(id: u64) -> Result<u64, LockError> {
//!     Ok(id * 2)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), LockError> {
//! assert_eq!(process(21).await?, 42);
//! if lockwright::is_locked!(process(42)).await? {
//!     println!("job 42 is running elsewhere");
//! }
//! # Ok(()) }
//! ```
//!
//! A `#[locked]` function and a [`Lock`] on the same formatted key are the same lock.
//!
//! ## Pooled functions
//!
//! [`#[pooled]`](macro@pooled) runs a function in one of `max_size` slots of the pool its
//! arguments name (py-cachify's `@pooled`); [`pool_size!`] counts the live slots of the pool a
//! call would use. A [`Pool`] handle on the same key is the same pool.
//!
//! ```
//! use lockwright::{pool_size, pooled, LockError};
//!
//! #[pooled(key = "user-limit-{user_id}", max_size = 5, on_full = Ok(0))]
//! async fn export(user_id: u64) -> Result<u64, LockError> {
//!     Ok(user_id)
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), LockError> {
//! assert_eq!(export(7).await?, 7);
//! assert_eq!(pool_size!(export(7)).await?, 0);
//! # Ok(()) }
//! ```

#[doc(inline)]
pub use lock_core::*;

#[doc(inline)]
pub use lock_macros::{is_locked, locked, pool_size, pooled, release};
