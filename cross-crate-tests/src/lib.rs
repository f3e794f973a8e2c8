//! A library that uses `#[locked]` as any other crate would: a free function, an inherent method
//! and a trait-impl method, all `pub`. Its tests (`tests/`, another crate) check that
//! `is_locked!` and `release!` reach them from outside.

use lockwright::{locked, LockError};

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
