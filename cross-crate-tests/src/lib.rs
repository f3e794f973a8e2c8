//! A library that uses `#[locked]` and `#[pooled]` as any other crate would: free functions, an
//! inherent method and trait-impl methods, all `pub`. Its tests (`tests/`, another crate) check
//! that `is_locked!`, `release!` and `pool_size!` reach them from outside.

use lockwright::{locked, pooled, LockError};

/// A job runner, in the library's public API.
pub trait Job {
    /// Runs job `id`.
    ///
    /// # Errors
    /// The lock's failure.
    fn run(&self, id: u32) -> Result<u32, LockError>;
}

/// Runs jobs of one zone.
pub struct Runner {
    /// The zone, part of every key.
    pub zone: &'static str,
}

#[locked]
impl Job for Runner {
    #[locked(key = "{self.zone}-run-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

impl Runner {
    /// An inherent locked method.
    ///
    /// # Errors
    /// The lock's failure.
    #[locked(key = "{self.zone}-inherent-{id}")]
    pub fn inherent(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

/// A free locked function.
///
/// # Errors
/// The lock's failure.
#[locked(key = "free-{id}")]
pub fn free(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

/// A free pooled function.
///
/// # Errors
/// The pool's failure.
#[pooled(key = "free-pool-{id}", max_size = 2)]
pub fn free_pooled(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

/// Uploads of one zone.
pub trait Upload {
    /// Sends `bytes`.
    ///
    /// # Errors
    /// The pool's failure.
    fn send(&self, bytes: u64) -> Result<u64, LockError>;
}

#[pooled]
impl Upload for Runner {
    #[pooled(key = "{self.zone}-upload", max_size = 3)]
    fn send(&self, bytes: u64) -> Result<u64, LockError> {
        Ok(bytes)
    }
}
