//! `#[pooled]` on free functions, sync and async, with every option and the return types
//! `#[locked]` supports; `pool_size!` on each.

use std::fmt::Display;
use std::sync::LazyLock;
use std::time::Duration;

use lockwright::{pool_size, pooled, LockError, MemoryBackend, SharedBackend};

const SLOTS: u32 = 3;
const WAIT: Duration = Duration::from_millis(500);
static BACKEND: LazyLock<SharedBackend> = LazyLock::new(MemoryBackend::shared);

/// Docs, visibility and other attributes are kept.
#[pooled(
    key = "user-limit-{user_id}",
    max_size = 5,
    nowait,
    timeout = 4,
    exp = 2
)]
#[must_use]
#[inline]
pub fn limited(user_id: u64) -> Result<u64, LockError> {
    Ok(user_id)
}

#[pooled(
    key = "async-limit-{id}",
    max_size = 2,
    nowait = false,
    timeout = 0.5,
    exp = 0.25
)]
pub(crate) async fn limited_async(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[pooled(key = "forever", max_size = 1, exp = never)]
fn no_parameters() -> Result<(), LockError> {
    Ok(())
}

#[pooled(key = "const-{id}", max_size = SLOTS, timeout = WAIT, backend = BACKEND)]
fn constants_and_backend(id: u8) -> Result<u8, LockError> {
    Ok(id)
}

#[pooled(key = "const-expr-{id}", max_size = SLOTS * 2 + 1, crate = ::lockwright)]
fn constant_expression(id: u8) -> Result<u8, LockError> {
    Ok(id)
}

#[pooled(key = "generic-{value}", max_size = 2)]
fn generic<T>(value: &T) -> Result<T, LockError>
where
    T: Display + Clone + Send,
{
    Ok(value.clone())
}

#[pooled(key = "unsafe-{n}", max_size = 2)]
unsafe fn unsafe_fn(n: u8) -> Result<u8, LockError> {
    Ok(n)
}

#[cfg(any())]
#[pooled(key = "never-compiled-{x}", max_size = 1)]
fn configured_out(x: u8) -> Result<u8, LockError> {
    Ok(x)
}

#[pooled(key = "extern-{n}", max_size = 2, on_full = 0, on_error = |_| 0)]
extern "C" fn c_abi(n: u8) -> u8 {
    n
}

#[derive(Debug)]
pub enum AppError {
    Pool(LockError),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        AppError::Pool(err)
    }
}

type AppResult<T> = Result<T, AppError>;

#[pooled(key = "alias", max_size = 1)]
fn alias() -> AppResult<u8> {
    Ok(1)
}

#[pooled(key = "unit", max_size = 1, on_full = (), on_error = |_| ())]
fn unit() {}

#[pooled(key = "option-{x}", max_size = 1, on_full = None, on_error = |_| None)]
fn option(x: u8) -> Option<u8> {
    Some(x)
}

#[pooled(key = "impl-trait", max_size = 1, on_full = Vec::new().into_iter(), on_error = |_| Vec::new().into_iter())]
fn impl_trait() -> impl Iterator<Item = u8> {
    vec![1].into_iter()
}

#[pooled(key = "impl-trait-result", max_size = 1)]
fn impl_trait_result() -> Result<impl Iterator<Item = u8>, LockError> {
    Ok(vec![1].into_iter())
}

#[pooled(key = "on-full-arg-{id}", max_size = 1, on_full = Err(AppError::Pool(LockError::PoolFull { key: format!("busy-{id}").into(), max_size: 1 })))]
async fn on_full_uses_arguments(id: u8) -> AppResult<u8> {
    Ok(id)
}

#[pooled(key = "async-unit-{id}", max_size = 1, on_full = (), on_error = |_| ())]
async fn async_unit(id: u8) {
    let _ = id;
}

pub fn main() -> Result<(), LockError> {
    assert_eq!(limited(1)?, 1);
    assert_eq!(pool_size!(limited(1)).blocking()?, 0);
    no_parameters()?;
    assert_eq!(pool_size!(no_parameters()).blocking()?, 0);
    assert_eq!(constants_and_backend(2)?, 2);
    assert_eq!(pool_size!(constants_and_backend(2)).blocking()?, 0);
    assert_eq!(constant_expression(3)?, 3);
    assert_eq!(generic(&"x")?, "x");
    assert_eq!(pool_size!(generic(&"x")).blocking()?, 0);
    assert_eq!(unsafe { unsafe_fn(3) }?, 3);
    assert_eq!(c_abi(4), 4);
    assert!(matches!(alias(), Ok(1)));
    let AppError::Pool(err) = AppError::from(LockError::PoolFull {
        key: "k".into(),
        max_size: 1,
    });
    assert!(err.is_contention());
    unit();
    assert_eq!(option(5), Some(5));
    assert_eq!(impl_trait().count(), 1);
    assert_eq!(impl_trait_result()?.count(), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(limited_async(2).await?, 2);
        assert_eq!(pool_size!(limited_async(2)).await?, 0);
        assert!(matches!(on_full_uses_arguments(6).await, Ok(6)));
        async_unit(7).await;
        Ok(())
    })
}
