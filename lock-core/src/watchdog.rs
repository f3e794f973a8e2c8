//! The lease watchdog: keeps holds acquired without `exp` alive while their guard lives.
//!
//! One scheduler thread per process plans every backend's renewals, but never waits on a
//! backend: each backend's batch runs on a thread of its own (at most one batch in flight per
//! backend), caught if it panics. So a backend that fails, hangs or panics delays only its own
//! holds. Each hold is renewed to its full lease at least every third of it; holds due together
//! on one backend are renewed in one `extend_many` call. Renewal is fence-checked, so it never
//! revives a released or taken-over lock; when it finds the hold gone, the hold is marked lost
//! and its guard's signal fires.
//!
//! A hold whose renewals do not succeed is declared lost at the latest when its lease could end
//! on the server, less a safety margin: the send time of its last successful renewal (or of its
//! acquire) plus the lease, minus a tenth of the lease. Until then the server still holds it.
//!
//! Registering is on the path of every default acquire, so it is kept to one short critical
//! section: no clock read, no allocation, and no wake-up call unless the new hold is due before
//! the thread's next planned wake-up. The registry is split into shards, each thread registering
//! in its own, so threads taking different locks at once do not wait for one another there.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

use crate::backend::{Fence, HoldKind, RenewHold, SharedBackend};
use crate::block_on::block_on;
use crate::owner::Owner;
use crate::target::Target;
use crate::telemetry::{self, FoundBy};

/// The longest the watchdog thread sleeps, so that registering a hold rarely has to wake it.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Fires once when a watched hold is found gone (expired, force-unlocked, key deleted).
#[derive(Debug, Default)]
pub(crate) struct LostSignal {
    lost: AtomicBool,
    event: Event,
}

impl LostSignal {
    fn fire(&self) {
        self.lost.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    pub(crate) async fn wait(&self) {
        while !self.lost.load(Ordering::Acquire) {
            let listener = self.event.listen();
            if self.lost.load(Ordering::Acquire) {
                return;
            }
            listener.await;
        }
    }

    pub(crate) fn wait_blocking(&self) {
        while !self.lost.load(Ordering::Acquire) {
            let listener = self.event.listen();
            if self.lost.load(Ordering::Acquire) {
                return;
            }
            listener.wait();
        }
    }
}

/// Which hold of a [`Target`] the watchdog renews.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WatchedHold {
    pub(crate) owner: Owner,
    pub(crate) fence: Fence,
    pub(crate) kind: HoldKind,
}

struct Watched {
    /// The key and backend, shared with the guard: registering costs one reference count.
    target: Arc<Target>,
    hold: WatchedHold,
    lease: Duration,
    /// When to renew it, as a [`Reading`].
    renew_at: Reading,
    /// Until then the hold is surely live on the server: the send time of its last successful
    /// renewal (or acquire), plus the lease, less the safety margin. Past it, it is lost.
    valid_until: Reading,
    /// A renewal of this hold is on its way.
    in_flight: bool,
    lost: bool,
    /// Created only when the guard asks to be told (`lease_lost`).
    signal: Option<Arc<LostSignal>>,
}

/// A hold the watchdog has just declared lost, to report (count and log) once the registry is
/// unlocked: a slow log subscriber must not hold up every acquire's registration. (So the report
/// follows, by a moment, the guard's signal and `is_lease_lost`.)
struct NewlyLost {
    kind: &'static str,
    key: Arc<str>,
    fence: Fence,
}

impl NewlyLost {
    fn report_all(lost: Vec<NewlyLost>) {
        for hold in lost {
            telemetry::lease_lost(hold.kind, &hold.key, hold.fence, FoundBy::Watchdog);
        }
    }
}

impl Watched {
    fn backend(&self) -> &SharedBackend {
        &self.target.backend
    }

    /// The hold, as the backend's `extend_many` takes it.
    fn renew_hold(&self) -> RenewHold {
        RenewHold {
            key: Arc::clone(&self.target.key),
            owner: self.hold.owner,
            fence: self.hold.fence,
            kind: self.hold.kind,
        }
    }

    /// Whether this is the hold `hold` names (a slot may be reused for another).
    fn is(&self, hold: &RenewHold) -> bool {
        *self.target.key == *hold.key
            && self.hold.owner == hold.owner
            && self.hold.fence == hold.fence
            && self.hold.kind == hold.kind
    }

    /// Whether the hold is lost at `now`: found gone, or past its validity (marked so here, and
    /// added to `newly_lost`).
    fn lost_by(&mut self, now: Reading, newly_lost: &mut Vec<NewlyLost>) -> bool {
        if !self.lost && self.valid_until <= now {
            self.mark_lost(newly_lost);
        }
        self.lost
    }

    fn mark_lost(&mut self, newly_lost: &mut Vec<NewlyLost>) {
        self.lost = true;
        if let Some(signal) = &self.signal {
            signal.fire();
        }
        newly_lost.push(NewlyLost {
            kind: self.backend().kind(),
            key: Arc::clone(&self.target.key),
            fence: self.hold.fence,
        });
    }

    /// When the scheduler must look at this hold next: its renewal, unless one is on its way
    /// or its backend is busy, and in any case the end of its validity.
    fn next_event(&self, busy: &HashSet<usize>) -> Reading {
        if self.in_flight || busy.contains(&backend_id(self.backend())) {
            self.valid_until
        } else {
            self.renew_at.min(self.valid_until)
        }
    }
}

/// The part of the lease kept as a safety margin: a hold is declared lost a tenth of its lease
/// before the server could expire it (the two clocks may run at slightly different rates, and
/// the scheduler may wake a little late).
const SAFETY_MARGIN_DIVISOR: u64 = 10;

/// A point in time as the watchdog keeps it: nanoseconds since its epoch. Registering computes a
/// hold's times in these (integer additions) rather than in `Instant`s, whose arithmetic checks
/// and normalises seconds and nanoseconds at every step: by callgrind, that took registering from
/// 343 to 241 instructions, a sixteenth of a default acquire+release.
type Reading = u64;

/// `duration` in nanoseconds, saturated at `u64::MAX` (584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The part of a lease of `lease_nanos` a hold is taken to be live for after its send time.
fn live_part(lease_nanos: u64) -> u64 {
    lease_nanos - lease_nanos / SAFETY_MARGIN_DIVISOR
}

/// Which backend a hold renews on: holds of one backend share its batches and its one renewal
/// thread at a time.
fn backend_id(backend: &SharedBackend) -> usize {
    backend.identity()
}

/// Shards of the registry. A thread registers its holds in the shard it was given (round robin
/// over threads), so with up to this many threads none waits for another's registration.
const SHARDS: usize = 16;

/// A ticket's id: its shard, and its slot there.
fn shard_of(id: usize) -> usize {
    id % SHARDS
}

fn slot_of(id: usize) -> usize {
    id / SHARDS
}

fn id_of(shard: usize, slot: usize) -> usize {
    slot * SHARDS + shard
}

/// One shard of the watched holds: a slab (slots are reused), so registering and unregistering
/// cost a slot write, not a hash-map operation.
#[derive(Default)]
struct Shard {
    slots: Vec<Option<Watched>>,
    free: Vec<usize>,
}

impl Shard {
    fn get_mut(&mut self, slot: usize) -> Option<&mut Watched> {
        self.slots.get_mut(slot)?.as_mut()
    }
}

/// A shard alone on its cache line (its neighbours' mutexes are other threads').
#[repr(align(128))]
#[derive(Default)]
struct ShardLock(Mutex<Shard>);

/// What the scheduler plans with, apart from the holds. The scheduler holds it while it plans
/// and sleeps on it; a registration that must wake it takes it, so the wake-up cannot fall
/// between the scheduler's plan and its sleep.
struct Schedule {
    /// Backends with a renewal batch on its way: none gets a second one until it answers, so a
    /// hung backend ties up one thread, not one per cycle.
    busy: HashSet<usize>,
}

/// [`Watchdog::next_wake`] while the scheduler is planning.
const PLANNING: u64 = 0;

struct Watchdog {
    shards: Box<[ShardLock]>,
    schedule: Mutex<Schedule>,
    changed: Condvar,
    /// What every [`Reading`] counts from (in nanoseconds; 0 is never a reading).
    epoch: Instant,
    /// When the scheduler last woke up: registrations count their renewal from there, at most
    /// `MAX_SLEEP` early, which only renews sooner than needed.
    last_wake: AtomicU64,
    /// When the scheduler wakes up next on its own ([`PLANNING`] while it plans).
    next_wake: AtomicU64,
    /// The earliest first event of the holds registered while it planned (`u64::MAX`: none): it
    /// may have looked at their shard before they were there, so it takes this in before it
    /// sleeps, without those registrations having to wait for its plan.
    registered_while_planning: AtomicU64,
}

/// Resolves when the hold behind a guard's ticket is lost; never, for a hold nobody renews.
pub(crate) async fn lost(watch: Option<&Ticket>) {
    match watch {
        Some(watch) => watch.signal().wait().await,
        None => std::future::pending().await,
    }
}

/// Blocking form of [`lost`].
pub(crate) fn lost_blocking(watch: Option<&Ticket>) {
    match watch {
        Some(watch) => watch.signal().wait_blocking(),
        None => loop {
            std::thread::park();
        },
    }
}

/// A hold under watch; dropping it stops the renewals.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: usize,
}

impl Ticket {
    /// Whether the hold was found gone, or its renewals did not succeed in time. Read against
    /// the clock too, so a scheduler thread that runs late (or is missing, in a forked child)
    /// never lets a hold past its validity look fine.
    pub(crate) fn is_lost(&self) -> bool {
        let mut newly_lost = Vec::new();
        let mut shard = watchdog().shard(self.id);
        let lost = shard
            .get_mut(slot_of(self.id))
            .is_some_and(|watched| watched.lost_by(watchdog().now(), &mut newly_lost));
        drop(shard);
        NewlyLost::report_all(newly_lost);
        lost
    }

    /// The signal that fires when the hold is lost (already fired if it was).
    pub(crate) fn signal(&self) -> Arc<LostSignal> {
        let mut newly_lost = Vec::new();
        let mut shard = watchdog().shard(self.id);
        let watched = shard
            .get_mut(slot_of(self.id))
            .expect("a ticket's slot lives with it");
        let lost = watched.lost_by(watchdog().now(), &mut newly_lost);
        let signal = watched.signal.get_or_insert_with(Default::default);
        if lost {
            signal.fire();
        }
        let signal = Arc::clone(signal);
        drop(shard);
        NewlyLost::report_all(newly_lost);
        signal
    }

    /// Stops watching the hold, as dropping the ticket does; returns whether the watchdog had
    /// declared it lost.
    pub(crate) fn stop(self) -> bool {
        let mut shard = watchdog().shard(self.id);
        let lost = shard
            .get_mut(slot_of(self.id))
            .is_some_and(|watched| watched.lost);
        Self::free(&mut shard, self.id);
        drop(shard);
        std::mem::forget(self);
        lost
    }

    /// Frees the ticket's slot, dropping what it held in place (moving it out to drop it
    /// unlocked costs a copy of it on every release; the guard or handle shares the hold's
    /// `Target`, so this is rarely the last reference to it or to its backend).
    fn free(shard: &mut Shard, id: usize) {
        let slot = slot_of(id);
        shard.slots[slot] = None;
        shard.free.push(slot);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        Self::free(&mut watchdog().shard(self.id), self.id);
    }
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let epoch = Instant::now();
        let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            shards: (0..SHARDS).map(|_| ShardLock::default()).collect(),
            schedule: Mutex::new(Schedule {
                busy: HashSet::new(),
            }),
            changed: Condvar::new(),
            epoch,
            last_wake: AtomicU64::new(1),
            next_wake: AtomicU64::new(PLANNING),
            registered_while_planning: AtomicU64::new(u64::MAX),
        }));
        std::thread::Builder::new()
            .name("lockwright-watchdog".into())
            .spawn(move || watchdog.run())
            .expect("spawn the lease watchdog thread");
        watchdog
    })
}

/// Starts renewing `hold` of `target` (its key, on its backend) at least every `lease / 3`.
/// `sent_at` is when the acquire that took the hold was sent: the hold is surely live until one
/// lease after it (less the safety margin).
pub(crate) fn watch(
    target: Arc<Target>,
    hold: WatchedHold,
    lease: Duration,
    sent_at: Instant,
) -> Ticket {
    let watchdog = watchdog();
    let lease_nanos = nanos(lease);
    let renew_at = watchdog
        .last_wake
        .load(Ordering::Acquire)
        .saturating_add(lease_nanos / 3);
    let watched = Watched {
        target,
        hold,
        lease,
        renew_at,
        valid_until: watchdog.valid_until(sent_at, lease_nanos),
        in_flight: false,
        lost: false,
        signal: None,
    };
    let first_event = watched.renew_at.min(watched.valid_until);
    let shard_index = own_shard();
    let mut shard = watchdog.shards[shard_index].lock();
    let slot = match shard.free.pop() {
        Some(slot) => {
            shard.slots[slot] = Some(watched);
            slot
        }
        None => {
            shard.slots.push(Some(watched));
            shard.slots.len() - 1
        }
    };
    drop(shard);
    // Read after the hold is in its shard. A published wake-up: the next plan will see the hold
    // (it sets `PLANNING` before it looks at the shards), so only an earlier first event needs a
    // wake-up call. `PLANNING`: this plan may have looked at the shard already, so the first
    // event is left for it to take in before it sleeps (it publishes its wake-up first, then
    // takes in); read again after leaving it, a `PLANNING` is of a plan that has yet to take it
    // in, so the registration need not wait for any plan.
    let mut next_wake = watchdog.next_wake.load(Ordering::Acquire);
    if next_wake == PLANNING {
        watchdog
            .registered_while_planning
            .fetch_min(first_event, Ordering::AcqRel);
        next_wake = watchdog.next_wake.load(Ordering::Acquire);
    }
    if next_wake != PLANNING && first_event < next_wake {
        // Taken so that the scheduler is asleep (and is woken) or has yet to plan again.
        drop(watchdog.schedule());
        watchdog.changed.notify_one();
    }
    Ticket {
        id: id_of(shard_index, slot),
    }
}

/// The shard this thread registers in: given round robin to threads on their first hold.
fn own_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static SHARD: Cell<usize> = const { Cell::new(usize::MAX) });
    SHARD.with(|shard| {
        if shard.get() == usize::MAX {
            shard.set(NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
        }
        shard.get()
    })
}

/// How many holds on `backend` the lease watchdog has on its books: those it renews, and those
/// it found lost whose guard (or, for `Lock::lock()`, whose `unlock()`) has not come yet. Once
/// every guard is gone and every handle hold unlocked, it is 0: nothing is left to renew.
///
/// ```
/// use lock_core::{watched_holds, Lock, MemoryBackend};
///
/// let backend = MemoryBackend::shared();
/// let lock = Lock::with_backend("nightly-report", &backend);
/// lock.lock_blocking()?; // no `exp`: renewed until unlocked
/// assert_eq!(watched_holds(&backend), 1);
/// lock.unlock_blocking()?;
/// assert_eq!(watched_holds(&backend), 0);
/// # Ok::<(), lock_core::LockError>(())
/// ```
pub fn watched_holds(backend: &SharedBackend) -> usize {
    let id = backend_id(backend);
    watchdog()
        .shards
        .iter()
        .map(|shard| {
            shard
                .lock()
                .slots
                .iter()
                .flatten()
                .filter(|watched| backend_id(watched.backend()) == id)
                .count()
        })
        .sum()
}

/// One `extend_many` call: holds of one backend with one lease.
struct Batch {
    /// Its backend's identity: a slot may come to hold an equal hold (key, owner, fence) of
    /// another backend while the batch is on its way.
    backend: usize,
    lease: Duration,
    ids: Vec<usize>,
    holds: Vec<RenewHold>,
}

impl ShardLock {
    fn lock(&self) -> MutexGuard<'_, Shard> {
        // No user code runs under a shard's mutex but the drop of a backend whose last
        // reference a freed slot held: a poisoned shard is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Watchdog {
    fn schedule(&self) -> MutexGuard<'_, Schedule> {
        self.schedule
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn shard(&self, id: usize) -> MutexGuard<'_, Shard> {
        self.shards[shard_of(id)].lock()
    }

    /// The reading of `at`, an instant since `epoch` (never 0: that is [`PLANNING`]).
    fn reading(&self, at: Instant) -> Reading {
        nanos(at.saturating_duration_since(self.epoch)).max(1)
    }

    fn now(&self) -> Reading {
        self.reading(Instant::now())
    }

    /// Until when a hold whose acquire or renewal with a lease of `lease_nanos` was sent at
    /// `sent_at` is surely live. Never later than that: an acquire sent before the epoch (the
    /// process's first watched hold) counts from its own send time, not from the epoch.
    fn valid_until(&self, sent_at: Instant, lease_nanos: u64) -> Reading {
        let live = live_part(lease_nanos);
        match sent_at.checked_duration_since(self.epoch) {
            Some(since) => nanos(since).saturating_add(live).max(1),
            None => live.saturating_sub(nanos(self.epoch - sent_at)).max(1),
        }
    }

    /// Every watched hold not yet lost, with its id, shard by shard (each locked in turn).
    fn for_each_watched(&self, mut f: impl FnMut(usize, &mut Watched)) {
        for (index, shard) in self.shards.iter().enumerate() {
            let mut shard = shard.lock();
            for (slot, watched) in shard.slots.iter_mut().enumerate() {
                if let Some(watched) = watched.as_mut().filter(|watched| !watched.lost) {
                    f(id_of(index, slot), watched);
                }
            }
        }
    }

    fn run(&'static self) {
        loop {
            for (backend, batches) in self.wait_for_due() {
                let id = backend_id(&backend);
                let spawned = std::thread::Builder::new()
                    .name("lockwright-renew".into())
                    .spawn(move || self.renew(backend, batches));
                if let Err(err) = spawned {
                    // No thread for it now: the holds stay due and are tried again soon.
                    tracing::warn!(error = %err, "lockwright: cannot start a lease renewal");
                    let retry_at = self.now().saturating_add(nanos(MAX_SLEEP / 10));
                    self.for_each_watched(|_, watched| {
                        if backend_id(watched.backend()) == id && watched.in_flight {
                            watched.in_flight = false;
                            watched.renew_at = retry_at;
                        }
                    });
                    self.schedule().busy.remove(&id);
                }
            }
        }
    }

    /// Sleeps until some hold is due or past its validity. Declares the latter lost, and returns
    /// per backend (only backends with no batch on its way) the due holds, with every hold of
    /// that backend due within a sixth of its lease, batched per lease: renewing those a little
    /// early lets them share one batch, and still renews each hold at least every third of its
    /// lease.
    fn wait_for_due(&self) -> Vec<(SharedBackend, Vec<Batch>)> {
        struct Due {
            backend: SharedBackend,
            /// Some hold of it is due now, not only soon.
            urgent: bool,
            batches: HashMap<Duration, Batch>,
        }
        let mut schedule = self.schedule();
        loop {
            let now = self.now();
            self.last_wake.store(now, Ordering::Release);
            self.next_wake.store(PLANNING, Ordering::Release);
            let mut newly_lost = Vec::new();
            let mut due: HashMap<usize, Due> = HashMap::new();
            let mut next_event: Option<Reading> = None;
            let busy = &schedule.busy;
            self.for_each_watched(|id, watched| {
                if watched.valid_until <= now {
                    watched.mark_lost(&mut newly_lost);
                    return;
                }
                let event = watched.next_event(busy);
                next_event = Some(next_event.map_or(event, |next| next.min(event)));
                let backend = backend_id(watched.backend());
                if watched.in_flight
                    || busy.contains(&backend)
                    || watched.renew_at > now.saturating_add(nanos(watched.lease) / 6)
                {
                    return;
                }
                let entry = due.entry(backend).or_insert_with(|| Due {
                    backend: Arc::clone(watched.backend()),
                    urgent: false,
                    batches: HashMap::new(),
                });
                entry.urgent |= watched.renew_at <= now;
                let batch = entry.batches.entry(watched.lease).or_insert_with(|| Batch {
                    backend,
                    lease: watched.lease,
                    ids: Vec::new(),
                    holds: Vec::new(),
                });
                batch.ids.push(id);
                batch.holds.push(watched.renew_hold());
            });
            let ready: Vec<(SharedBackend, Vec<Batch>)> = due
                .into_iter()
                .filter(|(_, due)| due.urgent)
                .map(|(id, due)| {
                    schedule.busy.insert(id);
                    (due.backend, due.batches.into_values().collect())
                })
                .collect();
            if !ready.is_empty() {
                // The shards were unlocked since: a slot may hold another hold by now.
                for batch in ready.iter().flat_map(|(_, batches)| batches) {
                    for (id, hold) in batch.ids.iter().zip(&batch.holds) {
                        let mut shard = self.shard(*id);
                        if let Some(watched) = Self::same_hold(&mut shard, *id, batch, hold) {
                            watched.in_flight = true;
                        }
                    }
                }
                drop(schedule);
                NewlyLost::report_all(newly_lost);
                return ready;
            }
            if !newly_lost.is_empty() {
                // Report unlocked, then plan again (the holds may have changed meanwhile).
                drop(schedule);
                NewlyLost::report_all(newly_lost);
                schedule = self.schedule();
                continue;
            }
            let latest = now.saturating_add(nanos(MAX_SLEEP));
            // Never 0 ([`PLANNING`]): a reading past the epoch is at least 1.
            let planned = next_event.map_or(latest, |at| at.min(latest)).max(1);
            // Published first, then what registrations while planning asked for is taken in
            // (see `watch`): each is either taken in here or sees this wake-up.
            self.next_wake.store(planned, Ordering::Release);
            let registered = self
                .registered_while_planning
                .swap(u64::MAX, Ordering::AcqRel);
            let wake_at = planned.min(registered).max(1);
            if wake_at < planned {
                // Registrations compare with the wake-up actually planned: against the later
                // one, every registration due before it would wake the scheduler for a full
                // plan of its own.
                self.next_wake.store(wake_at, Ordering::Release);
            }
            schedule = self
                .changed
                .wait_timeout(schedule, Duration::from_nanos(wake_at.saturating_sub(now)))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// Runs one backend's batches, on a thread of their own. A batch that fails or panics leaves
    /// its holds to be tried again soon; their validity still runs out on time.
    fn renew(&'static self, backend: SharedBackend, batches: Vec<Batch>) {
        /// Frees the backend for its next batch however this thread ends (a panic in a logger
        /// included), and unsticks every hold of these batches still marked in flight.
        struct Done<'a> {
            watchdog: &'static Watchdog,
            backend: usize,
            batches: &'a [Batch],
        }
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                for batch in self.batches {
                    self.watchdog.retry_soon(batch);
                }
                self.watchdog.schedule().busy.remove(&self.backend);
                self.watchdog.changed.notify_one();
            }
        }
        let _done = Done {
            watchdog: self,
            backend: backend_id(&backend),
            batches: &batches,
        };
        for batch in &batches {
            let sent_at = Instant::now();
            let renewed = catch_unwind(AssertUnwindSafe(|| {
                block_on(backend.extend_many(&batch.holds, batch.lease))
            }));
            match renewed {
                Ok(Ok(live)) if live.len() == batch.holds.len() => {
                    self.settle(&backend, batch, &live, sent_at);
                }
                Ok(Ok(live)) => {
                    telemetry::renewal_batch_failed(backend.kind(), batch.holds.len());
                    tracing::error!(
                        backend = ?backend,
                        holds = batch.holds.len(),
                        answers = live.len(),
                        "lockwright: a lease renewal answered for another number of holds"
                    );
                    self.retry_soon(batch);
                }
                Ok(Err(err)) => {
                    // The backend is unreachable: try again soon; the lease still runs.
                    telemetry::renewal_batch_failed(backend.kind(), batch.holds.len());
                    tracing::warn!(error = %err, "lockwright: lease renewal failed");
                    self.retry_soon(batch);
                }
                Err(_) => {
                    telemetry::renewal_batch_failed(backend.kind(), batch.holds.len());
                    tracing::error!(
                        backend = ?backend,
                        "lockwright: a lease renewal panicked; its holds are lost unless a retry \
                         succeeds in time"
                    );
                    self.retry_soon(batch);
                }
            }
        }
    }

    /// The slot still watches the hold the batch was renewing: not a reused slot of another hold,
    /// nor of an equal hold (key, owner, fence) on another backend.
    fn same_hold<'r>(
        shard: &'r mut Shard,
        id: usize,
        batch: &Batch,
        hold: &RenewHold,
    ) -> Option<&'r mut Watched> {
        shard
            .get_mut(slot_of(id))
            .filter(|watched| watched.is(hold) && backend_id(watched.backend()) == batch.backend)
    }

    fn settle(
        &self,
        backend: &SharedBackend,
        batch: &Batch,
        live: &[Option<bool>],
        sent_at: Instant,
    ) {
        let renewed = live.iter().filter(|live| **live == Some(true)).count();
        let unanswered = live.iter().filter(|live| live.is_none()).count();
        telemetry::renewals(backend.kind(), renewed as u64, unanswered as u64);
        let mut newly_lost = Vec::new();
        let retry_at = self.retry_at(batch.lease);
        let lease_nanos = nanos(batch.lease);
        let (renew_at, valid_until) = (
            self.reading(sent_at).saturating_add(lease_nanos / 3),
            self.valid_until(sent_at, lease_nanos),
        );
        for ((id, hold), live) in batch.ids.iter().zip(&batch.holds).zip(live) {
            let mut shard = self.shard(*id);
            let Some(watched) = Self::same_hold(&mut shard, *id, batch, hold) else {
                continue;
            };
            watched.in_flight = false;
            if watched.lost {
                continue; // declared lost while this renewal was on its way: it stays lost
            }
            match live {
                Some(true) => {
                    watched.renew_at = renew_at;
                    watched.valid_until = watched.valid_until.max(valid_until);
                }
                Some(false) => watched.mark_lost(&mut newly_lost),
                // Its part of the batch failed: try again soon; the lease still runs.
                None => watched.renew_at = retry_at,
            }
        }
        NewlyLost::report_all(newly_lost);
    }

    /// When to try a failed renewal of a lease of `lease` again: soon, well within the lease.
    fn retry_at(&self, lease: Duration) -> Reading {
        self.now()
            .saturating_add(nanos((lease / 10).min(MAX_SLEEP)))
    }

    /// Puts the batch's holds still in flight back to be renewed soon (those it settled are no
    /// longer in flight, and keep their new renewal time).
    fn retry_soon(&self, batch: &Batch) {
        let retry_at = self.retry_at(batch.lease);
        for (id, hold) in batch.ids.iter().zip(&batch.holds) {
            if let Some(watched) = Self::same_hold(&mut self.shard(*id), *id, batch, hold) {
                if watched.in_flight {
                    watched.in_flight = false;
                    watched.renew_at = retry_at;
                }
            }
        }
    }
}
