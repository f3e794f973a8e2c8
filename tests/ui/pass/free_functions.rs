//! Free functions, sync and async, with the design card's exact options.

use lockwright::{is_locked, locked, release, LockError};

/// Docs, visibility and other attributes are kept.
#[locked(key = "job-{id}", nowait, timeout = 4, exp = 2)]
#[must_use]
#[inline]
pub fn process(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "async-job-{id}", nowait = false, timeout = 0.5, exp = 0.25)]
pub(crate) async fn process_async(id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[locked(key = "forever", exp = never)]
fn no_parameters() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "unsafe-{n}")]
unsafe fn unsafe_fn(n: u8) -> Result<u8, LockError> {
    Ok(n)
}

#[cfg(any())]
#[locked(key = "never-compiled-{x}")]
fn configured_out(x: u8) -> Result<u8, LockError> {
    Ok(x)
}

#[locked(key = "extern-{n}", on_locked = 0, on_error = |_| 0)]
extern "C" fn c_abi(n: u8) -> u8 {
    n
}

pub fn main() -> Result<(), LockError> {
    assert_eq!(process(1)?, 1);
    assert!(!is_locked!(process(1)).blocking()?);
    assert!(!release!(process(1)).blocking()?);
    no_parameters()?;
    assert!(!is_locked!(no_parameters()).blocking()?);
    assert_eq!(unsafe { unsafe_fn(3) }?, 3);
    assert_eq!(c_abi(4), 4);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        assert_eq!(process_async(2).await?, 2);
        assert!(!is_locked!(process_async(2)).await?);
        assert!(!release!(process_async(2)).await?);
        Ok(())
    })
}
