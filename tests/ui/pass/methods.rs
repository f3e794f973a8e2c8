//! Methods with every receiver, associated functions, generics with where-clauses, `impl Trait`
//! arguments, and `is_locked!` in method-call and path form (the receiver by reference).

use std::fmt::Display;
use std::marker::PhantomData;

use lockwright::{is_locked, locked, release, LockError};

pub struct Worker<T> {
    shard: u32,
    marker: PhantomData<T>,
}

impl<T> Worker<T>
where
    T: Display,
{
    #[locked(key = "new-{shard}")]
    pub fn new(shard: u32) -> Result<Self, LockError> {
        Ok(Worker {
            shard,
            marker: PhantomData,
        })
    }

    #[locked(key = "{self.shard}-{item}")]
    pub fn by_ref(&self, item: T) -> Result<String, LockError> {
        Ok(item.to_string())
    }

    #[locked(key = "{self.shard}-mut-{item}")]
    pub fn by_mut(&mut self, item: impl Display) -> Result<String, LockError> {
        self.shard += 1;
        Ok(item.to_string())
    }

    #[locked(key = "{self.shard}-consume")]
    pub fn by_value(self) -> Result<u32, LockError> {
        Ok(self.shard)
    }

    // A boxed receiver is the shape under test.
    #[allow(clippy::boxed_local)]
    #[locked(key = "{self.shard}-boxed")]
    pub fn boxed(self: Box<Self>) -> Result<u32, LockError> {
        Ok(self.shard)
    }

    #[locked(key = "{self.shard}-async-{item}")]
    pub async fn by_ref_async<'a, U>(&'a self, item: &'a U) -> Result<String, LockError>
    where
        U: Display + Sync + ?Sized,
    {
        Ok(item.to_string())
    }
}

pub fn main() -> Result<(), LockError> {
    let mut worker = Worker::<u8>::new(1)?;
    assert!(!is_locked!(Worker::<u8>::new(1)).blocking()?);
    assert_eq!(worker.by_ref(2)?, "2");
    assert!(!is_locked!(worker.by_ref(2)).blocking()?);
    assert!(!is_locked!(Worker::by_ref(&worker, 2)).blocking()?);
    assert_eq!(worker.by_mut("x")?, "x");
    assert!(!is_locked!(worker.by_mut("x")).blocking()?);
    assert!(!is_locked!(Worker::by_mut(&mut worker, "x")).blocking()?);
    // The receiver is borrowed whatever the method takes: in path form, pass a reference.
    assert!(!release!(worker.by_value()).blocking()?);
    assert!(!is_locked!(Worker::by_value(&worker)).blocking()?);
    let boxed = Box::new(Worker::<u8>::new(2)?);
    assert!(!is_locked!(boxed.boxed()).blocking()?);
    assert!(!is_locked!(Worker::boxed(&boxed)).blocking()?);
    let worker = Worker::<u8>::new(3)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(worker.by_ref_async("a").await?, "a");
        assert!(!is_locked!(worker.by_ref_async("a")).await?);
        assert!(!is_locked!(Worker::by_ref_async(&worker, "a")).await?);
        Ok::<(), LockError>(())
    })?;
    assert_eq!(worker.by_value()?, 3);
    Ok(())
}
