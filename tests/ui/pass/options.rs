//! `backend = ...` (a static, an expression, a field of `self`) and `crate = ...`.

use std::sync::LazyLock;

use lockwright::{is_locked, locked, LockError, MemoryBackend, SharedBackend};

static JOBS: LazyLock<SharedBackend> = LazyLock::new(MemoryBackend::shared);

fn jobs_backend() -> &'static SharedBackend {
    &JOBS
}

/// The runtime reached through another path.
mod runtime {
    pub use ::lockwright::__private;
}

#[locked(key = "static-{id}", backend = JOBS)]
fn on_static(id: u8) -> Result<u8, LockError> {
    Ok(id)
}

#[locked(key = "call-{id}", backend = jobs_backend())]
fn on_call(id: u8) -> Result<u8, LockError> {
    Ok(id)
}

#[locked(key = "param-{id}", backend = backend)]
fn on_parameter(backend: &SharedBackend, id: u8) -> Result<u8, LockError> {
    Ok(id)
}

struct Tenant {
    backend: SharedBackend,
}

impl Tenant {
    #[locked(key = "field", backend = self.backend, crate = self::runtime_root)]
    fn on_field(&self) -> Result<(), LockError> {
        Ok(())
    }
}

mod runtime_root {
    pub use super::runtime::__private;
}

#[locked(key = "renamed", crate = self::runtime)]
fn renamed_runtime() -> Result<(), LockError> {
    Ok(())
}

#[locked(key = "string-path", crate = "::lockwright")]
fn string_path() -> Result<(), LockError> {
    Ok(())
}

pub fn main() -> Result<(), LockError> {
    on_static(1)?;
    on_call(2)?;
    let backend = MemoryBackend::shared();
    on_parameter(&backend, 3)?;
    assert!(!is_locked!(on_parameter(&backend, 3)).blocking()?);
    let tenant = Tenant { backend };
    tenant.on_field()?;
    assert!(!is_locked!(tenant.on_field()).blocking()?);
    renamed_runtime()?;
    string_path()?;
    Ok(())
}
