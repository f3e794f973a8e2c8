//! Process-wide settings. Kept in their own test binary: they change global state.

use std::sync::Arc;
use std::time::Duration;

use lock_core::{
    default_lease, global_backend, set_default_lease, set_global_backend, Lock, LockError,
    MemoryBackend, RemainingLease, SharedBackend,
};

#[test]
fn global_settings_apply_to_handles_created_afterwards() {
    // The default lease is configurable and validated.
    assert_eq!(default_lease(), Duration::from_secs(30));
    for bad in [0.0, -1.0, f64::NAN, 1e10] {
        assert!(matches!(
            set_default_lease(bad),
            Err(LockError::InvalidArgument { .. })
        ));
    }
    assert_eq!(default_lease(), Duration::from_secs(30));
    set_default_lease(Duration::from_millis(1500)).unwrap();
    let lock = Lock::new("settings-lease");
    let _held = lock.acquire_blocking().unwrap();
    let RemainingLease::Remaining(left) = lock.remaining_lease_blocking().unwrap() else {
        panic!("a default hold must expire");
    };
    assert!(left <= Duration::from_millis(1500) && left > Duration::from_millis(500));

    // One call swaps the global backend; handles made before keep theirs.
    let before = Lock::new("settings-backend");
    let replacement: SharedBackend = Arc::new(MemoryBackend::new());
    set_global_backend(replacement.clone());
    assert!(Arc::ptr_eq(&global_backend(), &replacement));
    let after = Lock::new("settings-backend");
    assert!(Arc::ptr_eq(after.backend(), &replacement));
    let _guard = before.acquire_blocking().unwrap();
    assert!(!after.is_locked_blocking().unwrap());
}
