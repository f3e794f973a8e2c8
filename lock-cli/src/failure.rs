//! How a command ends: its exit code, and the message a failure prints on standard error.
//!
//! Messages never hold a password: errors from the library show URLs redacted, and the CLI's own
//! messages name servers by `host:port` only.

use std::fmt;
use std::process::ExitCode;

/// Exit code of a command that did what it was asked.
pub const OK: u8 = 0;
/// Exit code when there was nothing to do: the lock is not held, or (`doctor`) a check failed.
pub const NOT_FOUND: u8 = 1;
/// Exit code of a usage error or a failure to reach or question the servers.
pub const USAGE_OR_CONNECTION: u8 = 2;

/// A command that could not do its work, with the exit code it ends with.
#[derive(Debug)]
pub struct Failure {
    /// The process's exit code.
    pub code: u8,
    message: String,
}

impl Failure {
    /// A usage error (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: USAGE_OR_CONNECTION,
            message: message.into(),
        }
    }

    /// The servers could not be reached or questioned (exit 2).
    pub fn connection(message: impl fmt::Display) -> Self {
        Failure {
            code: USAGE_OR_CONNECTION,
            message: message.to_string(),
        }
    }

    /// Nothing to do (exit 1).
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure {
            code: NOT_FOUND,
            message: message.into(),
        }
    }

    /// The exit code, for `main`.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<lock_core::LockError> for Failure {
    fn from(err: lock_core::LockError) -> Self {
        Failure::connection(err)
    }
}
