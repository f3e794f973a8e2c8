//! `timeout` and `exp` from constants: a `const` integer or float of seconds, a `const Duration`,
//! a path to a constant in a module, an associated constant (also of a generic parameter), and a
//! constant expression. Literals keep their compile-time checks; these are checked at the call.

use std::time::Duration;

use lockwright::{is_locked, locked, Lock, LockError, RemainingLease};

const TIMEOUT: u64 = 4;
const LEASE_SECS: f64 = 20.5;
const LEASE: Duration = Duration::from_millis(1_500);
const SECS: u64 = 2;

mod config {
    pub const WAIT: u32 = 3;
}

fn lease_of(key: &str) -> Result<Duration, LockError> {
    match Lock::new(key).remaining_lease_blocking()? {
        RemainingLease::Remaining(left) => Ok(left),
        other => panic!("expected a fixed lease on {key}, got {other:?}"),
    }
}

#[locked(key = "const-u64", timeout = TIMEOUT)]
fn const_integer() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "const-f64", exp = LEASE_SECS)]
fn const_float() -> Result<Duration, LockError> {
    lease_of("const-f64")
}

#[locked(key = "const-duration", nowait, timeout = LEASE, exp = LEASE)]
fn const_duration() -> Result<Duration, LockError> {
    lease_of("const-duration")
}

#[locked(key = "const-expr-{id}", timeout = 2 * SECS, exp = Duration::from_secs(SECS * 15))]
fn const_expression(id: u32) -> Result<Duration, LockError> {
    lease_of(&format!("const-expr-{id}"))
}

#[locked(key = "const-path", timeout = config::WAIT, exp = never)]
async fn const_path() -> Result<RemainingLease, LockError> {
    Lock::new("const-path").remaining_lease().await
}

// The cast is the expression under test.
#[allow(clippy::cast_precision_loss)]
#[locked(key = "const-cast", exp = (SECS as f64) * 10.25)]
fn const_cast() -> Result<Duration, LockError> {
    lease_of("const-cast")
}

trait Leased {
    const LEASE: Duration;
}

struct Worker;

impl Leased for Worker {
    const LEASE: Duration = Duration::from_secs(25);
}

impl Worker {
    const WAIT: Duration = Duration::from_millis(250);

    #[locked(key = "assoc", timeout = Self::WAIT, exp = <Self as Leased>::LEASE)]
    fn run(&self) -> Result<Duration, LockError> {
        lease_of("assoc")
    }
}

#[locked(key = "generic", exp = T::LEASE)]
fn generic<T: Leased>() -> Result<Duration, LockError> {
    lease_of("generic")
}

pub fn main() -> Result<(), LockError> {
    const_integer()?;
    assert!(!is_locked!(const_integer()).blocking()?);
    let left = const_float()?;
    assert!(left > Duration::from_secs(19) && left <= Duration::from_millis(20_500));
    let left = const_duration()?;
    assert!(left > Duration::ZERO && left <= LEASE);
    let left = const_expression(1)?;
    assert!(left > Duration::from_secs(20) && left <= Duration::from_secs(30));
    let left = const_cast()?;
    assert!(left > Duration::from_secs(19) && left <= Duration::from_millis(20_500));
    let left = Worker.run()?;
    assert!(left > Duration::from_secs(20) && left <= Duration::from_secs(25));
    let left = generic::<Worker>()?;
    assert!(left > Duration::from_secs(20) && left <= Duration::from_secs(25));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(const_path())?, RemainingLease::Unlimited);
    Ok(())
}
