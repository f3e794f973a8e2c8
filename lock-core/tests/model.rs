//! Model-based property test: random sequences of lock operations, applied through the
//! `Backend` trait to each backend and to a tiny reference model, must give the same results.
//!
//! Leases are long (60 s) so no hold expires mid-sequence: neither backend has a clock a test
//! can advance, and expiry is covered by the conformance and fault tests instead.

mod conformance;
mod support;

use std::collections::HashMap;
use std::time::Duration;

use lock_core::{Fence, Owner, Release, ReleaseScope, SharedBackend, TryAcquire};
use proptest::prelude::*;

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

const LEASE: Option<Duration> = Some(Duration::from_secs(60));
const OWNERS: usize = 3;

#[derive(Clone, Debug)]
enum Op {
    Acquire(usize),
    /// Release by an owner, naming its current hold's fence (or a stale one), one or all holds.
    Release {
        owner: usize,
        stale_fence: bool,
        all: bool,
    },
    ForceUnlock,
    Inspect(usize),
    Extend {
        owner: usize,
        stale_fence: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0..OWNERS;
    prop_oneof![
        3 => owner.clone().prop_map(Op::Acquire),
        3 => (owner.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(owner, stale_fence, all)| Op::Release { owner, stale_fence, all }),
        1 => Just(Op::ForceUnlock),
        2 => owner.clone().prop_map(Op::Inspect),
        1 => (owner, any::<bool>()).prop_map(|(owner, stale_fence)| Op::Extend { owner, stale_fence }),
    ]
}

/// The whole semantics of one key, in a few lines.
#[derive(Default)]
struct Model {
    /// (owner, hold count, epoch): an epoch per free→held transition.
    holder: Option<(usize, u32, u64)>,
    epochs: u64,
}

impl Model {
    fn acquire(&mut self, owner: usize) -> Result<(u64, u32), ()> {
        match &mut self.holder {
            Some((holder, count, epoch)) if *holder == owner => {
                *count += 1;
                Ok((*epoch, *count))
            }
            Some(_) => Err(()),
            None => {
                self.epochs += 1;
                self.holder = Some((owner, 1, self.epochs));
                Ok((self.epochs, 1))
            }
        }
    }

    fn release(&mut self, owner: usize, epoch: Option<u64>, all: bool) -> Release {
        let Some((holder, count, held_epoch)) = &mut self.holder else {
            return Release::NotLocked;
        };
        if *holder != owner || epoch.is_some_and(|epoch| epoch != *held_epoch) {
            return Release::NotOwner;
        }
        *count = if all { 0 } else { *count - 1 };
        if *count > 0 {
            return Release::StillHeld(*count);
        }
        self.holder = None;
        Release::Freed
    }
}

/// Runs `ops` on `backend` and on the model, failing at the first difference.
fn check(backend: &SharedBackend, owners: &[Owner], ops: &[Op]) -> Result<(), TestCaseError> {
    let key: std::sync::Arc<str> = conformance::key("model").into();
    let mut model = Model::default();
    // Backend fences are opaque numbers; the model's epochs must map onto them one to one.
    let mut fence_of_epoch: HashMap<u64, Fence> = HashMap::new();
    let mut last_fence: Option<Fence> = None;
    for op in ops {
        match *op {
            Op::Acquire(owner) => {
                let got = block_on(backend.try_acquire(&key, owners[owner], LEASE)).unwrap();
                match (model.acquire(owner), got) {
                    (Ok((epoch, count)), TryAcquire::Acquired { fence, hold_count }) => {
                        prop_assert_eq!(hold_count, count, "{:?}", op);
                        let known = *fence_of_epoch.entry(epoch).or_insert(fence);
                        prop_assert_eq!(known, fence, "a reentrant acquire changed the fence");
                        if count == 1 {
                            prop_assert!(last_fence < Some(fence), "fences must grow");
                            last_fence = Some(fence);
                        }
                    }
                    (Err(()), TryAcquire::Held { .. }) => {}
                    (expected, got) => {
                        prop_assert!(false, "{op:?}: model {expected:?}, backend {got:?}")
                    }
                }
            }
            Op::Release {
                owner,
                stale_fence,
                all,
            } => {
                let epoch = model
                    .holder
                    .map(|(_, _, epoch)| epoch)
                    .filter(|_| !stale_fence);
                // A stale fence: one from an earlier epoch (or 0 before any).
                let fence = match epoch {
                    Some(epoch) => fence_of_epoch[&epoch],
                    None => Fence(last_fence.map_or(0, |f| f.0.saturating_sub(1))),
                };
                let model_epoch = epoch.or(Some(u64::MAX));
                let scope = if all {
                    ReleaseScope::All
                } else {
                    ReleaseScope::One
                };
                let expected = model.release(owner, model_epoch, all);
                let got =
                    block_on(backend.release(&key, owners[owner], Some(fence), scope)).unwrap();
                prop_assert_eq!(got, expected, "{:?}", op);
            }
            Op::ForceUnlock => {
                let expected = model.holder.take().is_some();
                let got = block_on(backend.force_unlock(&key)).unwrap();
                prop_assert_eq!(got, expected);
            }
            Op::Inspect(owner) => {
                let state = block_on(backend.inspect(&key, owners[owner])).unwrap();
                match model.holder {
                    None => prop_assert!(!state.locked && state.hold_count == 0),
                    Some((holder, count, epoch)) => {
                        prop_assert!(state.locked);
                        prop_assert_eq!(state.held_by_owner, holder == owner);
                        prop_assert_eq!(state.hold_count, count);
                        prop_assert_eq!(state.fence, Some(fence_of_epoch[&epoch]));
                    }
                }
            }
            Op::Extend { owner, stale_fence } => {
                let live = model
                    .holder
                    .filter(|(holder, _, _)| *holder == owner && !stale_fence);
                let fence = match (live, model.holder) {
                    (Some((_, _, epoch)), _) => fence_of_epoch[&epoch],
                    (None, Some((_, _, epoch))) if !stale_fence => fence_of_epoch[&epoch],
                    _ => Fence(0),
                };
                let got = block_on(backend.extend(&key, owners[owner], fence, LEASE)).unwrap();
                prop_assert_eq!(got, live.is_some(), "{:?}", op);
            }
        }
    }
    // Leave nothing behind for the next case.
    block_on(backend.force_unlock(&key)).unwrap();
    Ok(())
}

fn owners() -> Vec<Owner> {
    (0..OWNERS)
        .map(|_| std::thread::spawn(Owner::current).join().unwrap())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn memory_backend_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let backend = lock_core::MemoryBackend::shared();
        check(&backend, &owners(), &ops)?;
    }

    #[test]
    fn redis_backend_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let backend = support::shared_redis_backend();
        check(&backend, &owners(), &ops)?;
    }
}
