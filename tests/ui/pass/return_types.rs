//! How lock failures are returned: through any `Result<T, E>` with `E: From<LockError>` (type
//! aliases included), or through `on_locked` for any return type.

use lockwright::{locked, LockError};

#[derive(Debug)]
pub enum AppError {
    // Read only through `Debug`.
    #[allow(dead_code)]
    Lock(LockError),
}

impl From<LockError> for AppError {
    fn from(err: LockError) -> Self {
        AppError::Lock(err)
    }
}

pub type AppResult<T> = Result<T, AppError>;
pub type Outcome = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[locked(key = "alias")]
fn alias() -> AppResult<u8> {
    Ok(1)
}

#[locked(key = "boxed-error")]
fn boxed_error() -> Outcome {
    Ok(())
}

#[locked(key = "unit", on_locked = (), on_error = |_| ())]
fn unit() {}

#[locked(key = "option-{x}", on_locked = None, on_error = |_| None)]
fn option(x: u8) -> Option<u8> {
    Some(x)
}

#[locked(key = "impl-trait", on_locked = Vec::new().into_iter(), on_error = |_| Vec::new().into_iter())]
fn impl_trait() -> impl Iterator<Item = u8> {
    vec![1, 2].into_iter()
}

#[locked(key = "impl-trait-result")]
fn impl_trait_result() -> Result<impl Iterator<Item = u8>, LockError> {
    Ok(vec![1].into_iter())
}

#[locked(key = "on-locked-arg-{id}", on_locked = Err(AppError::Lock(LockError::Locked { key: format!("busy-{id}").into() })))]
async fn on_locked_uses_arguments(id: u8) -> AppResult<u8> {
    Ok(id)
}

pub fn main() {
    assert_eq!(alias().unwrap(), 1);
    boxed_error().unwrap();
    unit();
    assert_eq!(option(3), Some(3));
    assert_eq!(impl_trait().count(), 2);
    assert_eq!(impl_trait_result().unwrap().count(), 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    assert_eq!(runtime.block_on(on_locked_uses_arguments(4)).unwrap(), 4);
}
