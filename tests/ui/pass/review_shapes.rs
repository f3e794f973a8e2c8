//! Shapes an adversarial review found broken: an early `return` in a function that returns a
//! boxed future, a `&(dyn Display + Send)` key parameter, lifetime bounds on a trait impl's
//! generics, `forbid` on a locked function, trait arguments that differ only in punctuation, and
//! bounds split between the self type and a moved parameter.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use lockwright::{is_locked, locked, LockError};

type Locked = Result<bool, LockError>;

/// Whether `key` is held, asked from another thread (another owner).
fn held(key: &str) -> bool {
    let key = key.to_owned();
    std::thread::spawn(move || lockwright::Lock::new(key).is_locked_blocking().unwrap())
        .join()
        .unwrap()
}

#[locked(key = "early-{id}")]
fn early_return(id: u32) -> Pin<Box<dyn Future<Output = Locked> + Send>> {
    if id == 0 {
        return Box::pin(async move { Ok(held("early-0")) });
    }
    Box::pin(async move { Ok(held(&format!("early-{id}"))) })
}

#[locked(key = "shown-{x}")]
fn shown_and_sent(x: &(dyn Display + Send)) -> Result<String, LockError> {
    Ok(x.to_string())
}

#[forbid(unused_variables)]
#[locked(key = "forbid-{id}")]
fn forbidding(id: u32) -> Result<u32, LockError> {
    Ok(id)
}

pub trait Tr<'b> {
    fn name(&self) -> Result<u32, LockError>;
}

pub struct W<'a>(&'a u32);

#[locked]
impl<'a: 'b, 'b> Tr<'b> for W<'a> {
    #[locked(key = "w-name")]
    fn name(&self) -> Result<u32, LockError> {
        Ok(*self.0)
    }
}

pub trait Handler<M: ?Sized> {
    fn handle(&self, id: u32) -> Result<u32, LockError>;
}

pub struct Actor;

#[locked]
impl Handler<u8> for Actor {
    #[locked(key = "u8-{id}")]
    fn handle(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

#[locked]
impl Handler<[u8]> for Actor {
    #[locked(key = "slice-{id}")]
    fn handle(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

pub trait Marked {}
impl Marked for u32 {}

pub struct Holder<T: Marked>(T);

pub trait Convert<M> {
    fn convert<U: Display>(&self, extra: U, m: M) -> Result<String, LockError>;
}

#[locked]
impl<M, T: Marked + From<M> + Display> Convert<M> for Holder<T> {
    #[locked(key = "convert-{extra}")]
    fn convert<U: Display>(&self, extra: U, m: M) -> Result<String, LockError> {
        Ok(format!("{}{}", T::from(m), extra))
    }
}

pub fn main() -> Result<(), LockError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert!(
        runtime.block_on(early_return(0))?,
        "the early return ran unlocked"
    );
    assert!(runtime.block_on(early_return(1))?);
    assert_eq!(shown_and_sent(&5)?, "5");
    assert!(!is_locked!(shown_and_sent(&5)).blocking()?);
    assert_eq!(forbidding(1)?, 1);
    assert_eq!(W(&3).name()?, 3);
    assert_eq!(Handler::<u8>::handle(&Actor, 1)?, 1);
    assert_eq!(Handler::<[u8]>::handle(&Actor, 2)?, 2);
    assert!(!is_locked!(<Actor as Handler<u8>>::handle(&Actor, 1)).blocking()?);
    assert!(!is_locked!(<Actor as Handler<[u8]>>::handle(&Actor, 2)).blocking()?);
    let holder = Holder(7u32);
    assert_eq!(holder.convert(1u8, 7u32)?, "71");
    assert!(!is_locked!(holder.convert(1u8, 7u32)).blocking()?);
    Ok(())
}
