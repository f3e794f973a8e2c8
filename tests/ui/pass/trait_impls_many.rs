//! Several trait impls on one type: two impls of a generic trait (`Handler<Ping>` and
//! `Handler<Pong>`), and two traits with a method of the same name (`Start::run`, `Stop::run`,
//! one impl block marked `#[locked(qualified)]`). `is_locked!` names the impl the way Rust
//! does: `<Actor as Handler<Ping>>::handle(&actor, ping)`.

use lockwright::{is_locked, locked, release, Lock, LockError};

pub struct Ping(pub u32);
pub struct Pong(pub u32);

pub trait Handler<M> {
    fn handle(&self, msg: M) -> Result<u32, LockError>;
}

pub trait Start {
    fn run(&self, id: u32) -> Result<u32, LockError>;
}

pub trait Stop {
    fn run(&self, id: u32) -> Result<u32, LockError>;
}

pub struct Actor {
    pub name: &'static str,
}

#[locked]
impl Handler<Ping> for Actor {
    #[locked(key = "{self.name}-ping-{msg.0}")]
    fn handle(&self, msg: Ping) -> Result<u32, LockError> {
        Ok(msg.0)
    }
}

#[locked]
impl Handler<Pong> for Actor {
    #[locked(key = "{self.name}-pong-{msg.0}")]
    fn handle(&self, msg: Pong) -> Result<u32, LockError> {
        Ok(msg.0)
    }
}

#[locked]
impl Start for Actor {
    #[locked(key = "{self.name}-start-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

#[locked(qualified)]
impl Stop for Actor {
    #[locked(key = "{self.name}-stop-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

pub fn main() -> Result<(), LockError> {
    let actor = Actor { name: "a" };
    assert_eq!(Handler::<Ping>::handle(&actor, Ping(1))?, 1);
    assert_eq!(Handler::<Pong>::handle(&actor, Pong(2))?, 2);
    let held = Lock::new("a-pong-2").acquire_blocking()?;
    assert!(!is_locked!(<Actor as Handler<Ping>>::handle(&actor, Ping(2))).blocking()?);
    assert!(is_locked!(<Actor as Handler<Pong>>::handle(&actor, Pong(2))).blocking()?);
    drop(held);
    assert!(!release!(<Actor as Handler<Pong>>::handle(&actor, Pong(2))).blocking()?);

    assert_eq!(Start::run(&actor, 3)?, 3);
    assert_eq!(Stop::run(&actor, 3)?, 3);
    let held = Lock::new("a-stop-3").acquire_blocking()?;
    assert!(!is_locked!(<Actor as Start>::run(&actor, 3)).blocking()?);
    assert!(!is_locked!(actor.run(3)).blocking()?); // the unqualified impl: `Start`
    assert!(is_locked!(<Actor as Stop>::run(&actor, 3)).blocking()?);
    drop(held);
    Ok(())
}
