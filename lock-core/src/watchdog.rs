//! The lease watchdog: keeps holds acquired without `exp` alive while their guard lives.
//!
//! One thread per process serves every backend. Each hold is renewed to its full lease at least
//! every third of it; holds due together on one backend are renewed in one `extend_many` call.
//! Renewal is fence-checked, so it never revives a released or taken-over lock; when it finds
//! the hold gone, the hold is marked lost and its guard's signal fires.
//!
//! Registering is on the path of every default acquire, so it is kept to one short critical
//! section: no clock read, no allocation, and no wake-up call unless the new hold is due before
//! the thread's next planned wake-up.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

use crate::backend::{RenewHold, SharedBackend};
use crate::block_on::block_on;

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

struct Watched {
    backend: SharedBackend,
    hold: RenewHold,
    lease: Duration,
    renew_at: Instant,
    lost: bool,
    /// Created only when the guard asks to be told (`lease_lost`).
    signal: Option<Arc<LostSignal>>,
}

/// The watched holds: a slab (ids are reused slots), so registering and unregistering cost a
/// slot write, not a hash-map operation.
struct Registry {
    slots: Vec<Option<Watched>>,
    free: Vec<usize>,
    /// When the thread last woke up: registrations count their renewal from there, at most
    /// `MAX_SLEEP` early, which only renews sooner than needed.
    last_wake: Instant,
    /// When the thread wakes up next on its own (`None` while it is renewing).
    next_wake: Option<Instant>,
}

impl Registry {
    fn watched(&self) -> impl Iterator<Item = (usize, &Watched)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(id, slot)| Some((id, slot.as_ref()?)))
            .filter(|(_, watched)| !watched.lost)
    }

    fn get_mut(&mut self, id: usize) -> Option<&mut Watched> {
        self.slots.get_mut(id)?.as_mut()
    }
}

struct Watchdog {
    registry: Mutex<Registry>,
    changed: Condvar,
}

/// A hold under watch; dropping it stops the renewals.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: usize,
}

impl Ticket {
    /// Whether a renewal found the hold gone.
    pub(crate) fn is_lost(&self) -> bool {
        let registry = watchdog().registry();
        registry.slots[self.id]
            .as_ref()
            .is_some_and(|watched| watched.lost)
    }

    /// The signal that fires when a renewal finds the hold gone (already fired if it did).
    pub(crate) fn signal(&self) -> Arc<LostSignal> {
        let mut registry = watchdog().registry();
        let watched = registry
            .get_mut(self.id)
            .expect("a ticket's slot lives with it");
        let lost = watched.lost;
        let signal = watched.signal.get_or_insert_with(Default::default);
        if lost {
            signal.fire();
        }
        Arc::clone(signal)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut registry = watchdog().registry();
        registry.slots[self.id] = None;
        registry.free.push(self.id);
    }
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            registry: Mutex::new(Registry {
                slots: Vec::new(),
                free: Vec::new(),
                last_wake: Instant::now(),
                next_wake: None,
            }),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("lockwright-watchdog".into())
            .spawn(move || watchdog.run())
            .expect("spawn the lease watchdog thread");
        watchdog
    })
}

/// Starts renewing `hold` on `backend` at least every `lease / 3`.
pub(crate) fn watch(backend: SharedBackend, hold: RenewHold, lease: Duration) -> Ticket {
    let watchdog = watchdog();
    let mut registry = watchdog.registry();
    let renew_at = registry.last_wake + lease / 3;
    let watched = Watched {
        backend,
        hold,
        lease,
        renew_at,
        lost: false,
        signal: None,
    };
    let id = match registry.free.pop() {
        Some(id) => {
            registry.slots[id] = Some(watched);
            id
        }
        None => {
            registry.slots.push(Some(watched));
            registry.slots.len() - 1
        }
    };
    let wake_now = registry
        .next_wake
        .is_some_and(|next_wake| renew_at < next_wake);
    drop(registry);
    if wake_now {
        watchdog.changed.notify_one();
    }
    Ticket { id }
}

impl Watchdog {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self) {
        loop {
            let due = self.wait_for_due();
            // Batch per backend and lease: one extend_many call each.
            let mut batches: HashMap<(usize, Duration), Vec<(usize, RenewHold)>> = HashMap::new();
            let mut backends: HashMap<usize, SharedBackend> = HashMap::new();
            for (id, backend, hold, lease) in due {
                let backend_id = Arc::as_ptr(&backend) as *const () as usize;
                backends.entry(backend_id).or_insert(backend);
                batches
                    .entry((backend_id, lease))
                    .or_default()
                    .push((id, hold));
            }
            for ((backend_id, lease), holds) in batches {
                let (ids, holds): (Vec<usize>, Vec<RenewHold>) = holds.into_iter().unzip();
                match block_on(backends[&backend_id].extend_many(&holds, lease)) {
                    Ok(live) => self.settle(&ids, &holds, &live, lease),
                    Err(err) => {
                        // The backend is unreachable: try again soon; the lease still runs.
                        tracing::warn!(error = %err, "lockwright: lease renewal failed");
                        self.retry_soon(&ids, &holds, lease);
                    }
                }
            }
        }
    }

    /// Sleeps until some hold is due, then returns it with every hold due within a sixth of
    /// its lease: renewing those a little early lets them share one batch, and still renews each
    /// hold at least every third of its lease.
    fn wait_for_due(&self) -> Vec<(usize, SharedBackend, RenewHold, Duration)> {
        let mut registry = self.registry();
        loop {
            let now = Instant::now();
            registry.last_wake = now;
            if registry
                .watched()
                .any(|(_, watched)| watched.renew_at <= now)
            {
                registry.next_wake = None;
                return registry
                    .watched()
                    .filter(|(_, watched)| watched.renew_at <= now + watched.lease / 6)
                    .map(|(id, w)| (id, Arc::clone(&w.backend), w.hold.clone(), w.lease))
                    .collect();
            }
            let next_due = registry.watched().map(|(_, w)| w.renew_at).min();
            let wake_at = next_due.map_or(now + MAX_SLEEP, |due| due.min(now + MAX_SLEEP));
            registry.next_wake = Some(wake_at);
            registry = self
                .changed
                .wait_timeout(registry, wake_at.saturating_duration_since(now))
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The slot still watches the hold it was renewing (not a reused slot of another hold).
    fn same_hold<'r>(
        registry: &'r mut Registry,
        id: usize,
        hold: &RenewHold,
    ) -> Option<&'r mut Watched> {
        registry
            .get_mut(id)
            .filter(|watched| watched.hold == *hold && !watched.lost)
    }

    fn settle(&self, ids: &[usize], holds: &[RenewHold], live: &[bool], lease: Duration) {
        let mut registry = self.registry();
        let renewed_at = Instant::now();
        for ((id, hold), live) in ids.iter().zip(holds).zip(live) {
            let Some(watched) = Self::same_hold(&mut registry, *id, hold) else {
                continue;
            };
            if *live {
                watched.renew_at = renewed_at + lease / 3;
            } else {
                watched.lost = true;
                if let Some(signal) = &watched.signal {
                    signal.fire();
                }
            }
        }
    }

    fn retry_soon(&self, ids: &[usize], holds: &[RenewHold], lease: Duration) {
        let mut registry = self.registry();
        let retry_at = Instant::now() + (lease / 10).min(MAX_SLEEP);
        for (id, hold) in ids.iter().zip(holds) {
            if let Some(watched) = Self::same_hold(&mut registry, *id, hold) {
                watched.renew_at = retry_at;
            }
        }
    }
}
