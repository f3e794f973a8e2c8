//! Checked conversion of user-supplied durations.

use std::time::Duration;

use crate::error::{LockError, Result};

/// The longest wait timeout or lease accepted: 365 days. Longer values are almost always a unit
/// mistake, and they overflow deadline arithmetic on some platforms. For "forever" use
/// [`Lock::never_expires`](crate::Lock::never_expires) or omit the timeout.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A value usable as a wait timeout or lease: a [`Duration`], or a number of seconds (integer or
/// float, as in py-cachify and Hazelcast, fractions allowed).
///
/// Conversion is checked: zero, negative, NaN, infinite and values above [`MAX_DURATION`] are
/// refused with [`LockError::InvalidArgument`] instead of panicking like
/// [`Duration::from_secs_f64`].
///
/// ```
/// use lock_core::IntoLockDuration;
/// use std::time::Duration;
///
/// assert_eq!(2.5.into_lock_duration("exp")?, Duration::from_millis(2500));
/// assert_eq!(4u64.into_lock_duration("timeout")?, Duration::from_secs(4));
/// assert!((-1.0).into_lock_duration("exp").is_err());
/// assert!(f64::NAN.into_lock_duration("exp").is_err());
/// assert!(0.into_lock_duration("timeout").is_err());
/// assert!(u128::MAX.into_lock_duration("exp").is_err());
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a duration",
    label = "expected a `Duration` or a number of seconds",
    note = "a timeout or lease is a `std::time::Duration`, or seconds as an integer (`4`) or a float (`0.5`)"
)]
pub trait IntoLockDuration {
    /// Converts and validates; `name` names the argument in the error.
    fn into_lock_duration(self, name: &'static str) -> Result<Duration>;
}

/// Checks a [`Duration`] against the accepted range.
pub(crate) fn check(name: &'static str, duration: Duration) -> Result<Duration> {
    if duration.is_zero() {
        return Err(LockError::invalid(name, "must be greater than zero"));
    }
    if duration > MAX_DURATION {
        return Err(LockError::invalid(
            name,
            format!("{duration:?} is longer than the maximum of 365 days"),
        ));
    }
    Ok(duration)
}

impl IntoLockDuration for Duration {
    fn into_lock_duration(self, name: &'static str) -> Result<Duration> {
        check(name, self)
    }
}

impl IntoLockDuration for f64 {
    fn into_lock_duration(self, name: &'static str) -> Result<Duration> {
        if !self.is_finite() {
            return Err(LockError::invalid(
                name,
                format!("{self} seconds is not a finite number"),
            ));
        }
        if self <= 0.0 {
            return Err(LockError::invalid(
                name,
                format!("{self} seconds: must be greater than zero"),
            ));
        }
        if self > MAX_DURATION.as_secs_f64() {
            return Err(LockError::invalid(
                name,
                format!("{self} seconds is longer than the maximum of 365 days"),
            ));
        }
        check(name, Duration::from_secs_f64(self))
    }
}

impl IntoLockDuration for f32 {
    fn into_lock_duration(self, name: &'static str) -> Result<Duration> {
        f64::from(self).into_lock_duration(name)
    }
}

macro_rules! whole_seconds {
    ($($int:ty),*) => {$(
        impl IntoLockDuration for $int {
            fn into_lock_duration(self, name: &'static str) -> Result<Duration> {
                let secs = u64::try_from(self).map_err(|_| {
                    let reason = if self < <$int>::default() {
                        format!("{self} seconds: must be greater than zero")
                    } else {
                        format!("{self} seconds is longer than the maximum of 365 days")
                    };
                    LockError::invalid(name, reason)
                })?;
                check(name, Duration::from_secs(secs))
            }
        }
    )*};
}
whole_seconds!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
