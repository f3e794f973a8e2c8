//! Model-based property test: random sequences of lock operations with time passing, applied
//! through the `Backend` trait to each backend and to a small reference model, must give the
//! same results.
//!
//! The sequences mix every lease kind (short, long, never), re-entry with mixed leases, `extend`,
//! `persist`, the watchdog's renewals (`extend_many`), releases with live and stale fences,
//! `force_unlock`, and time: holds expire mid-sequence, and their stale owners then try to
//! release, extend and renew them. Time moves in half-units. Leases are odd numbers of
//! half-units and the clock only stops on even ones, so no operation runs at the instant a
//! lease ends. On the memory backend the clock is a `ManualClock` (expiry checked exactly); the
//! same kind of sequences are replayed on Redis in real time, with leases of a few hundred
//! milliseconds, each step started on its own schedule so delays do not add up.

mod conformance;
mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lock_core::{
    Fence, ManualClock, Owner, Release, ReleaseScope, RemainingLease, RenewHold, SharedBackend,
    TryAcquire,
};
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

const OWNERS: usize = 3;

#[derive(Clone, Copy, Debug)]
enum LeaseKind {
    Short,
    Long,
    Never,
}

impl LeaseKind {
    fn half_units(self) -> Option<u64> {
        match self {
            LeaseKind::Short => Some(3),
            LeaseKind::Long => Some(9),
            LeaseKind::Never => None,
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Acquire {
        owner: usize,
        lease: LeaseKind,
    },
    /// Release by an owner, naming its current hold's fence (or a stale one), one or all holds.
    Release {
        owner: usize,
        stale_fence: bool,
        all: bool,
    },
    ForceUnlock,
    Inspect(usize),
    /// `extend`; with `LeaseKind::Never`, `persist`.
    Extend {
        owner: usize,
        stale_fence: bool,
        lease: LeaseKind,
    },
    /// The watchdog's renewal (`extend_many`).
    Renew {
        owner: usize,
        stale_fence: bool,
        long: bool,
    },
    /// Time passes: this many units (two half-units each).
    Advance(u64),
}

fn lease_kind() -> impl Strategy<Value = LeaseKind> {
    prop_oneof![
        Just(LeaseKind::Short),
        Just(LeaseKind::Long),
        Just(LeaseKind::Never)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let owner = 0..OWNERS;
    prop_oneof![
        4 => (owner.clone(), lease_kind()).prop_map(|(owner, lease)| Op::Acquire { owner, lease }),
        3 => (owner.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(owner, stale_fence, all)| Op::Release { owner, stale_fence, all }),
        1 => Just(Op::ForceUnlock),
        2 => owner.clone().prop_map(Op::Inspect),
        2 => (owner.clone(), any::<bool>(), lease_kind())
            .prop_map(|(owner, stale_fence, lease)| Op::Extend { owner, stale_fence, lease }),
        2 => (owner, any::<bool>(), any::<bool>())
            .prop_map(|(owner, stale_fence, long)| Op::Renew { owner, stale_fence, long }),
        3 => (1..=3u64).prop_map(Op::Advance),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Held {
    owner: usize,
    count: u32,
    epoch: u64,
    /// In half-units; `None`: never.
    expires: Option<u64>,
}

/// The whole semantics of one key, in a few lines.
#[derive(Default)]
struct Model {
    holder: Option<Held>,
    epochs: u64,
    /// In half-units.
    now: u64,
}

/// The rule for a key's one lease: never shorter than the longest a live hold was given.
fn longer(current: Option<u64>, new: Option<u64>) -> Option<u64> {
    current.zip(new).map(|(current, new)| current.max(new))
}

impl Model {
    fn live(&mut self) -> Option<&mut Held> {
        let now = self.now;
        if self
            .holder
            .is_some_and(|held| held.expires.is_some_and(|at| at <= now))
        {
            self.holder = None;
        }
        self.holder.as_mut()
    }

    fn expiry(&self, lease: LeaseKind) -> Option<u64> {
        lease.half_units().map(|lease| self.now + lease)
    }

    /// `Err(remaining half-units)` when another owner holds it.
    fn acquire(&mut self, owner: usize, lease: LeaseKind) -> Result<(u64, u32), Option<u64>> {
        let expiry = self.expiry(lease);
        let now = self.now;
        match self.live() {
            Some(held) if held.owner == owner => {
                held.count += 1;
                held.expires = longer(held.expires, expiry);
                Ok((held.epoch, held.count))
            }
            Some(held) => Err(held.expires.map(|at| at - now)),
            None => {
                self.epochs += 1;
                self.holder = Some(Held {
                    owner,
                    count: 1,
                    epoch: self.epochs,
                    expires: expiry,
                });
                Ok((self.epochs, 1))
            }
        }
    }

    fn release(&mut self, owner: usize, epoch: u64, all: bool) -> Release {
        let Some(held) = self.live() else {
            return Release::NotLocked;
        };
        if held.owner != owner || held.epoch != epoch {
            return Release::NotOwner;
        }
        held.count = if all { 0 } else { held.count - 1 };
        if held.count > 0 {
            return Release::StillHeld(held.count);
        }
        self.holder = None;
        Release::Freed
    }

    fn extend(&mut self, owner: usize, epoch: u64, lease: LeaseKind) -> bool {
        let expiry = self.expiry(lease);
        match self.live() {
            Some(held) if held.owner == owner && held.epoch == epoch => {
                held.expires = longer(held.expires, expiry);
                true
            }
            _ => false,
        }
    }
}

/// How time passes for a backend: exactly on a manual clock, or in real time on schedule.
enum Time {
    Manual(ManualClock, Duration),
    Real { start: Instant, half_unit: Duration },
}

impl Time {
    fn half_unit(&self) -> Duration {
        match self {
            Time::Manual(_, half_unit) => *half_unit,
            Time::Real { half_unit, .. } => *half_unit,
        }
    }

    /// Moves to `now` half-units after the start.
    fn advance_to(&self, now: u64, by: u64) {
        match self {
            Time::Manual(clock, half_unit) => clock.advance(*half_unit * by as u32),
            Time::Real { start, half_unit } => {
                let at = *start + *half_unit * now as u32;
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
            }
        }
    }

    /// In real time, an operation must run well clear of every lease end (start and answer
    /// within half a half-unit of its step), or its outcome would depend on the machine's
    /// speed: a case with a step that ran late proves nothing either way and is rejected, not
    /// failed (a machine too slow for every case fails on the rejects' limit, loudly).
    fn check_on_schedule(&self, now: u64) -> Result<(), TestCaseError> {
        if let Time::Real { start, half_unit } = self {
            let late = Instant::now().saturating_duration_since(*start + *half_unit * now as u32);
            // Rejected cases are counted, not shown: the reason names no figure.
            prop_assume!(
                late < *half_unit / 2,
                "this machine ran an operation too long after its step for the replay"
            );
        }
        Ok(())
    }

    /// Runs one operation at step `now`, then checks it answered on schedule.
    fn run<T>(
        &self,
        now: u64,
        op: impl std::future::Future<Output = T>,
    ) -> Result<T, TestCaseError> {
        let answer = block_on(op);
        self.check_on_schedule(now)?;
        Ok(answer)
    }

    /// How far a backend's remaining lease may be from the model's.
    fn tolerance(&self) -> Duration {
        match self {
            Time::Manual(..) => Duration::ZERO,
            Time::Real { half_unit, .. } => *half_unit * 3 / 4,
        }
    }
}

fn remaining_close(
    got: RemainingLease,
    expected: Option<u64>,
    time: &Time,
) -> Result<(), TestCaseError> {
    match (got, expected) {
        (RemainingLease::Unlimited, None) => {}
        (RemainingLease::Remaining(left), Some(half_units)) => {
            let expected = time.half_unit() * half_units as u32;
            let off = if left > expected {
                left - expected
            } else {
                expected - left
            };
            prop_assert!(
                off <= time.tolerance(),
                "remaining {left:?}, model {expected:?}"
            );
        }
        (got, expected) => prop_assert!(false, "remaining {got:?}, model {expected:?} half-units"),
    }
    Ok(())
}

/// The fence an owner names, and the epoch the model takes it for: the current hold's, or a
/// stale one (from an earlier epoch, or 0 before any).
fn named(
    model: &Model,
    fence_of_epoch: &HashMap<u64, Fence>,
    last_fence: Option<Fence>,
    stale: bool,
) -> (Fence, u64) {
    match model.holder {
        Some(held) if !stale => (fence_of_epoch[&held.epoch], held.epoch),
        _ => (
            Fence(last_fence.map_or(0, |f| f.0.saturating_sub(1))),
            u64::MAX,
        ),
    }
}

/// Runs `ops` on `backend` and on the model, failing at the first difference.
fn check(
    backend: &SharedBackend,
    owners: &[Owner],
    ops: &[Op],
    time: &Time,
) -> Result<(), TestCaseError> {
    let key: std::sync::Arc<str> = conformance::key("model").into();
    let mut model = Model::default();
    let half_unit = time.half_unit();
    let lease = |kind: LeaseKind| kind.half_units().map(|h| half_unit * h as u32);
    // Backend fences are opaque numbers; the model's epochs must map onto them one to one.
    let mut fence_of_epoch: HashMap<u64, Fence> = HashMap::new();
    let mut last_fence: Option<Fence> = None;
    for op in ops {
        let step = model.now;
        time.check_on_schedule(step)?;
        match *op {
            Op::Acquire { owner, lease: kind } => {
                let got = time
                    .run(step, backend.try_acquire(&key, owners[owner], lease(kind)))?
                    .unwrap();
                match (model.acquire(owner, kind), got) {
                    (Ok((epoch, count)), TryAcquire::Acquired { fence, hold_count }) => {
                        prop_assert_eq!(hold_count, count, "{:?}", op);
                        let known = *fence_of_epoch.entry(epoch).or_insert(fence);
                        prop_assert_eq!(known, fence, "a reentrant acquire changed the fence");
                        if count == 1 {
                            prop_assert!(last_fence < Some(fence), "fences must grow");
                            last_fence = Some(fence);
                        }
                    }
                    (Err(expected), TryAcquire::Held { remaining }) => {
                        remaining_close(remaining, expected, time)?
                    }
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
                let (fence, epoch) = named(&model, &fence_of_epoch, last_fence, stale_fence);
                let scope = if all {
                    ReleaseScope::All
                } else {
                    ReleaseScope::One
                };
                let expected = model.release(owner, epoch, all);
                let got = time
                    .run(
                        step,
                        backend.release(&key, owners[owner], Some(fence), scope),
                    )?
                    .unwrap();
                prop_assert_eq!(got, expected, "{:?}", op);
            }
            Op::ForceUnlock => {
                let expected = model.live().is_some();
                model.holder = None;
                let got = time.run(step, backend.force_unlock(&key))?.unwrap();
                prop_assert_eq!(got, expected);
            }
            Op::Inspect(owner) => {
                let state = time
                    .run(step, backend.inspect(&key, owners[owner]))?
                    .unwrap();
                let now = model.now;
                match model.live().copied() {
                    None => prop_assert!(!state.locked && state.hold_count == 0, "{:?}", state),
                    Some(held) => {
                        prop_assert!(state.locked);
                        prop_assert_eq!(state.held_by_owner, held.owner == owner);
                        prop_assert_eq!(state.hold_count, held.count);
                        prop_assert_eq!(state.fence, Some(fence_of_epoch[&held.epoch]));
                        remaining_close(state.remaining, held.expires.map(|at| at - now), time)?;
                    }
                }
            }
            Op::Extend {
                owner,
                stale_fence,
                lease: kind,
            } => {
                let (fence, epoch) = named(&model, &fence_of_epoch, last_fence, stale_fence);
                let expected = model.extend(owner, epoch, kind);
                let got = time
                    .run(
                        step,
                        backend.extend(&key, owners[owner], fence, lease(kind)),
                    )?
                    .unwrap();
                prop_assert_eq!(got, expected, "{:?}", op);
            }
            Op::Renew {
                owner,
                stale_fence,
                long,
            } => {
                let (fence, epoch) = named(&model, &fence_of_epoch, last_fence, stale_fence);
                let kind = if long {
                    LeaseKind::Long
                } else {
                    LeaseKind::Short
                };
                let expected = model.extend(owner, epoch, kind);
                let hold = RenewHold {
                    key: key.clone(),
                    owner: owners[owner],
                    fence,
                    kind: lock_core::HoldKind::Lock,
                };
                let got = time
                    .run(step, backend.extend_many(&[hold], lease(kind).unwrap()))?
                    .unwrap();
                prop_assert_eq!(got, vec![Some(expected)], "{:?}", op);
            }
            Op::Advance(units) => {
                model.now += 2 * units;
                time.advance_to(model.now, 2 * units);
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
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn memory_backend_agrees_with_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let clock = ManualClock::new();
        let backend: SharedBackend =
            std::sync::Arc::new(lock_core::MemoryBackend::with_clock(clock.clone()));
        check(&backend, &owners(), &ops, &Time::Manual(clock, Duration::from_secs(10)))?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, max_global_rejects: 64, ..ProptestConfig::default() })]

    /// The same kind of sequences on Redis, in real time: a half-unit is 100 ms, so leases are
    /// 300 ms and 900 ms, and operations run more than 50 ms clear of any lease end.
    #[test]
    fn redis_backend_agrees_with_the_model(ops in prop::collection::vec(op(), 1..40)) {
        let backend = support::shared_redis_backend();
        let time = Time::Real { start: Instant::now(), half_unit: Duration::from_millis(100) };
        check(&backend, &owners(), &ops, &time)?;
    }
}
