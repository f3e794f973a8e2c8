//! A `#[locked]` trait and `#[locked(trait_companions)]` impls: `is_locked!` then works through
//! the trait, on a generic parameter and on a trait object, and a method its impl does not lock
//! is never locked.

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
    // `name` takes no lock in either impl.
    assert!(!is_locked!(Nightly.name()).blocking()?);
    assert!(!release!(Hourly.name()).blocking()?);
    Ok(())
}
