//! Every call that compiles as `f(args)` also compiles as `is_locked!(f(args))` and
//! `release!(f(args))`, with the same coercions, and checks the key that call would lock.

use std::fmt::Display;

use lockwright::{is_locked, locked, release, Lock, LockError};

#[locked(key = "greet-{name}")]
fn greet(name: &str) -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "slice-{items:?}")]
fn slice(items: &[u8]) -> Result<usize, LockError> {
    Ok(items.len())
}

#[locked(key = "shown-{value}")]
fn shown(value: &dyn Display) -> Result<String, LockError> {
    Ok(value.to_string())
}

#[locked(key = "boxed-{value}")]
fn boxed(value: Box<dyn Display>) -> Result<String, LockError> {
    Ok(value.to_string())
}

#[locked(key = "vec-{items:?}")]
fn vector(items: &Vec<u8>) -> Result<usize, LockError> {
    Ok(items.len())
}

struct Worker {
    shard: u8,
}

impl Worker {
    #[locked(key = "worker-{self.shard}-{name}")]
    fn hello(&self, name: &str) -> Result<(), LockError> {
        Ok(())
    }
}

/// `is_locked!` on `call` agrees with a handle on `key` that holds the lock.
fn checks(key: &str, locked: impl Fn() -> Result<bool, LockError>) -> Result<(), LockError> {
    assert!(!locked()?, "{key} locked before");
    let held = Lock::new(key).acquire_blocking()?;
    assert!(locked()?, "{key} not seen held");
    drop(held);
    Ok(())
}

// `&mut v` where `&v` would do is the coercion under test.
#[allow(clippy::unnecessary_mut_passed)]
pub fn main() -> Result<(), LockError> {
    let name = String::from("ann");
    greet(&name)?;
    checks("greet-ann", || is_locked!(greet(&name)).blocking())?;
    assert!(!release!(greet(&name)).blocking()?);

    let items = vec![1, 2];
    slice(&items)?;
    checks("slice-[1, 2]", || is_locked!(slice(&items)).blocking())?;
    checks("slice-[1, 2]", || is_locked!(slice(&[1, 2])).blocking())?;
    assert!(!release!(slice(&items)).blocking()?);

    shown(&5)?;
    checks("shown-5", || is_locked!(shown(&5)).blocking())?;
    assert!(!release!(shown(&5)).blocking()?);

    boxed(Box::new(5))?;
    checks("boxed-5", || is_locked!(boxed(Box::new(5))).blocking())?;
    assert!(!release!(boxed(Box::new(5))).blocking()?);

    let mut v = vec![3];
    vector(&mut v)?;
    checks("vec-[3]", || is_locked!(vector(&v)).blocking())?;
    assert!(!is_locked!(vector(&mut v)).blocking()?);
    assert!(!release!(vector(&mut v)).blocking()?);

    let worker = Worker { shard: 1 };
    worker.hello(&name)?;
    checks("worker-1-ann", || {
        is_locked!(worker.hello(&name)).blocking()
    })?;
    checks("worker-1-ann", || {
        is_locked!(Worker::hello(&worker, &name)).blocking()
    })?;
    Ok(())
}
