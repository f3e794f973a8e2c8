//! What an acquiring handle carries besides its key and backend: py-cachify's `nowait`,
//! `timeout` and `exp` (as a [`Lease`]), and the first invalid argument it was given. Shared by
//! [`Lock`](crate::Lock) and [`Pool`](crate::Pool), whose builder methods set these.

use std::time::Duration;

use crate::duration::IntoLockDuration;
use crate::error::{LockError, Result};
use crate::lock::{Lease, MAX_KEY_LEN};
use crate::waiting::Wait;

#[derive(Clone, Debug)]
pub(crate) struct Options {
    pub(crate) nowait: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) lease: Lease,
    /// The first problem, returned by every operation (handles never panic on bad input).
    invalid: Option<(&'static str, String)>,
}

impl Options {
    /// py-cachify's defaults (`nowait`, no timeout, the default lease), for a handle on `key`:
    /// an empty or too long key is its first problem.
    pub(crate) fn for_key(key: &str) -> Self {
        let mut options = Options {
            nowait: true,
            timeout: None,
            lease: Lease::Default,
            invalid: None,
        };
        if key.is_empty() {
            options.refuse("key", "must not be empty");
        } else if key.len() > MAX_KEY_LEN {
            options.refuse(
                "key",
                format!(
                    "{} bytes is longer than the maximum of {MAX_KEY_LEN}",
                    key.len()
                ),
            );
        }
        options
    }

    /// Remembers a problem, unless an earlier one is remembered already.
    pub(crate) fn refuse(&mut self, name: &'static str, reason: impl Into<String>) {
        self.invalid.get_or_insert_with(|| (name, reason.into()));
    }

    fn remember(&mut self, err: LockError) {
        if let LockError::InvalidArgument { name, reason } = err {
            self.refuse(name, reason);
        }
    }

    pub(crate) fn set_timeout(&mut self, timeout: impl IntoLockDuration) {
        match timeout.into_lock_duration("timeout") {
            Ok(timeout) => self.timeout = Some(timeout),
            Err(err) => self.remember(err),
        }
    }

    pub(crate) fn set_exp(&mut self, exp: impl IntoLockDuration) {
        match exp.into_lock_duration("exp") {
            Ok(exp) => self.lease = Lease::Fixed(exp),
            Err(err) => self.remember(err),
        }
    }

    pub(crate) fn set_renewed_lease(&mut self, lease: impl IntoLockDuration) {
        match lease.into_lock_duration("renewed lease") {
            Ok(lease) => self.lease = Lease::Renewed(lease),
            Err(err) => self.remember(err),
        }
    }

    /// A lease policy, its durations checked as `exp` and `renewed_lease` check theirs.
    pub(crate) fn set_lease(&mut self, lease: Lease) {
        match lease {
            Lease::Fixed(exp) => self.set_exp(exp),
            Lease::Renewed(lease) => self.set_renewed_lease(lease),
            Lease::Default | Lease::Never => self.lease = lease,
        }
    }

    /// `Ok` when every argument was valid, else the first problem.
    pub(crate) fn validate(&self) -> Result<()> {
        match &self.invalid {
            None => Ok(()),
            Some((name, reason)) => Err(LockError::invalid(name, reason.clone())),
        }
    }

    /// How long an acquire with these options waits: `nowait` wins over `timeout`.
    pub(crate) fn wait(&self) -> Wait {
        Wait::from_options(self.nowait, self.timeout)
    }
}
