//! A `#[locked]` trait and `#[locked(trait_companions)]` impls: `is_locked!` then works through
//! the trait, on a generic parameter and on a trait object, and asking about a method its impl
//! does not lock is an error.

use lockwright::{is_locked, locked, release, Lock, LockError};

#[locked]
pub trait Job {
    fn run(&self, id: u32) -> Result<u32, LockError>;
    fn name(&self) -> &'static str;
}

pub struct Nightly;
pub struct Hourly;

#[locked(trait_companions)]
impl Job for Nightly {
    #[locked(key = "nightly-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    fn name(&self) -> &'static str {
        "nightly"
    }
}

#[locked(trait_companions)]
impl Job for Hourly {
    #[locked(key = "hourly-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    fn name(&self) -> &'static str {
        "hourly"
    }
}

pub struct Weekly;

// Without `trait_companions` the impl's companions stay inherent: calls through the trait then
// see the trait's, which report that they know of no lock instead of answering `false`.
#[locked]
impl Job for Weekly {
    #[locked(key = "weekly-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    fn name(&self) -> &'static str {
        "weekly"
    }
}

fn through_generic<J: Job>(job: &J, id: u32) -> Result<bool, LockError> {
    is_locked!(job.run(id)).blocking()
}

fn through_dyn(job: &dyn Job, id: u32) -> Result<bool, LockError> {
    is_locked!(job.run(id)).blocking()
}

pub fn main() -> Result<(), LockError> {
    assert_eq!(Nightly.run(1)?, 1);
    assert_eq!(
        format!("{}{}", Nightly.name(), Hourly.name()),
        "nightlyhourly"
    );
    let held = Lock::new("nightly-1").acquire_blocking()?;
    assert!(through_generic(&Nightly, 1)?);
    assert!(through_dyn(&Nightly, 1)?);
    assert!(!through_dyn(&Hourly, 1)?);
    assert!(is_locked!(<Nightly as Job>::run(&Nightly, 1)).blocking()?);
    drop(held);
    let jobs: Vec<Box<dyn Job>> = vec![Box::new(Nightly), Box::new(Hourly)];
    let _held = Lock::new("hourly-2").acquire_blocking()?;
    let locked: Vec<bool> = jobs
        .iter()
        .map(|job| is_locked!(job.run(2)).blocking())
        .collect::<Result<_, _>>()?;
    assert_eq!(locked, [false, true]);
    assert_eq!(Weekly.run(1)?, 1);
    assert_eq!(Weekly.name(), "weekly");
    let _weekly = Lock::new("weekly-1").acquire_blocking()?;
    assert!(
        is_locked!(Weekly.run(1)).blocking()?,
        "the inherent companion sees the lock"
    );
    assert!(
        through_generic(&Weekly, 1).is_err(),
        "through the trait: an error, not a silent false"
    );
    // `name` takes no lock in either impl: asking about it is an error, not a silent `false`.
    assert!(matches!(
        is_locked!(Nightly.name()).blocking(),
        Err(LockError::InvalidArgument { .. })
    ));
    assert!(release!(Hourly.name()).blocking().is_err());
    Ok(())
}
