use std::future::Future;
use std::pin::Pin;

use lockwright::{locked, LockError};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

// The alias hides the future from `#[locked]`, which would release the lock before it runs.
#[locked(key = "job", on_error = |err| Box::pin(async move { Err(err) }))]
fn job() -> BoxFuture<Result<u8, LockError>> {
    Box::pin(async { Ok(1) })
}

fn main() {}
