//! `#[pooled]` on methods (every receiver, associated and generic functions), in trait impls
//! (`#[pooled]` or `#[locked]` on the impl block; both expand both kinds of method), on several
//! impls of one generic trait, and on sync functions that return a future; `pool_size!` in each
//! call form.

use std::future::Future;
use std::pin::Pin;

use lockwright::{is_locked, locked, pool_size, pooled, LockError};

pub struct Exporter {
    region: &'static str,
}

impl Exporter {
    #[pooled(key = "export-{self.region}-{id}", max_size = 4)]
    pub fn by_ref(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    #[pooled(key = "export-mut-{self.region}", max_size = 4)]
    fn by_mut(&mut self) -> Result<(), LockError> {
        self.region = "us";
        Ok(())
    }

    #[pooled(key = "export-owned-{self.region}", max_size = 4)]
    fn by_value(self) -> Result<&'static str, LockError> {
        Ok(self.region)
    }

    #[pooled(key = "export-assoc-{id}", max_size = 4)]
    fn associated(id: u32) -> Result<u32, LockError> {
        Ok(id)
    }

    #[pooled(key = "export-async-{self.region}-{id}", max_size = 4)]
    async fn by_ref_async(&self, id: u32) -> Result<u32, LockError> {
        Ok(id)
    }
}

pub struct Queue<T>(T);

impl<T: std::fmt::Display + Clone> Queue<T> {
    #[pooled(key = "queue-{self.0}", max_size = 2)]
    fn peek(&self) -> Result<T, LockError> {
        Ok(self.0.clone())
    }
}

#[allow(async_fn_in_trait)]
pub trait Upload {
    fn send(&self, size: u64) -> Result<u64, LockError>;
    async fn send_async(&self, size: u64) -> Result<u64, LockError>;
    fn check(&self) -> Result<bool, LockError>;
}

pub struct Bucket {
    name: &'static str,
}

#[pooled]
impl Upload for Bucket {
    #[pooled(key = "upload-{self.name}", max_size = 8)]
    fn send(&self, size: u64) -> Result<u64, LockError> {
        Ok(size)
    }

    #[lockwright::pooled(key = "upload-async-{self.name}", max_size = 8, on_full = Ok(0))]
    async fn send_async(&self, size: u64) -> Result<u64, LockError> {
        Ok(size)
    }

    // A `#[locked]` method in the same impl: either block attribute expands both kinds.
    #[locked(key = "check-{self.name}")]
    fn check(&self) -> Result<bool, LockError> {
        Ok(true)
    }
}

pub struct Ping;
pub struct Pong;

pub trait Handler<M> {
    fn handle(&self, message: M) -> Result<u8, LockError>;
}

pub struct Actor {
    id: u8,
}

#[locked]
impl Handler<Ping> for Actor {
    #[pooled(key = "ping-{self.id}", max_size = 2)]
    fn handle(&self, message: Ping) -> Result<u8, LockError> {
        let _ = message;
        Ok(1)
    }
}

#[pooled]
impl Handler<Pong> for Actor {
    #[pooled(key = "pong-{self.id}", max_size = 2)]
    fn handle(&self, message: Pong) -> Result<u8, LockError> {
        let _ = message;
        Ok(2)
    }
}

pub struct Later;

impl Later {
    /// A sync function that returns a future: the slot is held while the future runs.
    #[pooled(key = "later-{id}", max_size = 1)]
    #[allow(clippy::manual_async_fn)]
    fn run(&self, id: u8) -> impl Future<Output = Result<u8, LockError>> {
        async move { Ok(id) }
    }

    #[pooled(key = "later-boxed-{id}", max_size = 1)]
    fn boxed(&self, id: u8) -> Pin<Box<dyn Future<Output = Result<u8, LockError>> + Send>> {
        Box::pin(async move { Ok(id) })
    }
}

pub fn main() -> Result<(), LockError> {
    let mut exporter = Exporter { region: "eu" };
    assert_eq!(exporter.by_ref(1)?, 1);
    assert_eq!(pool_size!(exporter.by_ref(1)).blocking()?, 0);
    assert_eq!(pool_size!(Exporter::by_ref(&exporter, 1)).blocking()?, 0);
    exporter.by_mut()?;
    assert_eq!(pool_size!(exporter.by_mut()).blocking()?, 0);
    assert_eq!(pool_size!(exporter.by_value()).blocking()?, 0);
    assert_eq!(Exporter::associated(2)?, 2);
    assert_eq!(pool_size!(Exporter::associated(2)).blocking()?, 0);
    let queue = Queue("jobs".to_owned());
    assert_eq!(queue.peek()?, "jobs");
    assert_eq!(pool_size!(queue.peek()).blocking()?, 0);

    let bucket = Bucket { name: "logs" };
    assert_eq!(bucket.send(3)?, 3);
    assert_eq!(pool_size!(bucket.send(3)).blocking()?, 0);
    assert_eq!(
        pool_size!(<Bucket as Upload>::send(&bucket, 3)).blocking()?,
        0
    );
    assert!(bucket.check()?);
    assert!(!is_locked!(bucket.check()).blocking()?);

    let actor = Actor { id: 9 };
    assert_eq!(actor.handle(Ping)?, 1);
    assert_eq!(actor.handle(Pong)?, 2);
    assert_eq!(
        pool_size!(<Actor as Handler<Ping>>::handle(&actor, Ping)).blocking()?,
        0
    );
    assert_eq!(
        pool_size!(<Actor as Handler<Pong>>::handle(&actor, Pong)).blocking()?,
        0
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(exporter.by_ref_async(4).await?, 4);
        assert_eq!(pool_size!(exporter.by_ref_async(4)).await?, 0);
        assert_eq!(bucket.send_async(5).await?, 5);
        assert_eq!(pool_size!(bucket.send_async(5)).await?, 0);
        assert_eq!(Later.run(6).await?, 6);
        assert_eq!(pool_size!(Later.run(6)).await?, 0);
        assert_eq!(Later.boxed(7).await?, 7);
        Ok::<(), LockError>(())
    })?;
    assert_eq!(exporter.by_value()?, "us");
    Ok(())
}
