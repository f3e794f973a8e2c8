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

#[doc(inline)]
pub use lock_core::*;

#[doc(inline)]
pub use lock_macros::{is_locked, locked, release};
