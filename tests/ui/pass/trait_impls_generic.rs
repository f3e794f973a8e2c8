//! Actor-style trait impls: a generic trait impl whose parameter only the trait names, and
//! parameters typed through the trait's associated types (`Self::Msg`).

use std::fmt::Display;

use lockwright::{is_locked, locked, LockError};

pub trait Handler<M> {
    fn handle(&self, msg: M) -> Result<String, LockError>;
}

pub trait Mailbox {
    type Msg: Display;
    fn deliver(&self, msg: Self::Msg) -> Result<String, LockError>;
}

pub struct Logger;

#[locked]
impl<M: Display> Handler<M> for Logger {
    #[locked(key = "log-{msg}")]
    fn handle(&self, msg: M) -> Result<String, LockError> {
        Ok(msg.to_string())
    }
}

pub struct Inbox;

#[locked]
impl Mailbox for Inbox {
    type Msg = u32;

    #[locked(key = "inbox-{msg}")]
    fn deliver(&self, msg: Self::Msg) -> Result<String, LockError> {
        Ok(msg.to_string())
    }
}

pub fn main() -> Result<(), LockError> {
    assert_eq!(Logger.handle(1)?, "1");
    assert!(!is_locked!(Logger.handle(1)).blocking()?);
    assert!(!is_locked!(Logger.handle("x")).blocking()?);
    assert_eq!(Inbox.deliver(2)?, "2");
    assert!(!is_locked!(Inbox.deliver(2)).blocking()?);
    assert!(!is_locked!(Inbox::deliver(&Inbox, 2)).blocking()?);
    Ok(())
}
