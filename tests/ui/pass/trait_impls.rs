//! Functions in trait impls, `async fn` in traits included: `#[locked]` on the impl block puts
//! the companions in an inherent impl, so `is_locked!` works on them too.

use lockwright::{is_locked, locked, LockError};

#[allow(async_fn_in_trait)]
pub trait Job {
    fn run(&self, id: u32) -> Result<u32, LockError>;
    async fn run_async(&mut self, id: u32) -> Result<u32, LockError>;
    fn describe(&self) -> String;
}

pub struct Nightly<T> {
    zone: T,
}

#[locked]
impl<T: std::fmt::Display + Send + Sync> Job for Nightly<T> {
    #[locked(key = "{self.zone}-{id}")]
    fn run(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    #[lockwright::locked(key = "{self.zone}-async-{id}", on_locked = Ok(0))]
    async fn run_async(&mut self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    // Methods without `#[locked]` are left alone.
    fn describe(&self) -> String {
        self.zone.to_string()
    }
}

pub fn main() -> Result<(), LockError> {
    let mut job = Nightly { zone: "eu" };
    assert_eq!(job.run(1)?, 1);
    assert!(!is_locked!(job.run(1)).blocking()?);
    assert!(!is_locked!(Nightly::run(&job, 1)).blocking()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(job.run_async(2).await?, 2);
        assert!(!is_locked!(job.run_async(2)).await?);
        Ok::<(), LockError>(())
    })?;
    assert_eq!(job.describe(), "eu");
    Ok(())
}
