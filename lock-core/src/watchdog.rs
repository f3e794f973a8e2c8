//! The lease watchdog: keeps holds acquired without `exp` alive while their guard lives.
//!
//! One thread per process serves every backend. Each hold is renewed to its full lease every
//! third of it; holds due together on one backend are renewed in one `extend_many` call. Renewal
//! is fence-checked, so it never revives a released or taken-over lock; when it finds the hold
//! gone, the guard's lost-lease signal fires.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

use crate::backend::{RenewHold, SharedBackend};
use crate::block_on::block_on;

/// Fires once when a watched hold is found gone (expired, force-unlocked, key deleted).
#[derive(Debug, Default)]
pub(crate) struct LostSignal {
    lost: AtomicBool,
    event: Event,
}

impl LostSignal {
    pub(crate) fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    fn fire(&self) {
        self.lost.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    pub(crate) async fn wait(&self) {
        loop {
            if self.is_lost() {
                return;
            }
            let listener = self.event.listen();
            if self.is_lost() {
                return;
            }
            listener.await;
        }
    }

    pub(crate) fn wait_blocking(&self) {
        while !self.is_lost() {
            let listener = self.event.listen();
            if self.is_lost() {
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
    signal: Arc<LostSignal>,
}

#[derive(Default)]
struct Registry {
    watched: HashMap<u64, Watched>,
    next_id: u64,
}

struct Watchdog {
    registry: Mutex<Registry>,
    changed: Condvar,
}

/// A hold under watch; dropping it stops the renewals.
#[derive(Debug)]
pub(crate) struct Ticket {
    id: u64,
    pub(crate) signal: Arc<LostSignal>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        watchdog().registry().watched.remove(&self.id);
    }
}

fn watchdog() -> &'static Watchdog {
    static WATCHDOG: OnceLock<&'static Watchdog> = OnceLock::new();
    WATCHDOG.get_or_init(|| {
        let watchdog: &'static Watchdog = Box::leak(Box::new(Watchdog {
            registry: Mutex::new(Registry::default()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("lockwright-watchdog".into())
            .spawn(move || watchdog.run())
            .expect("spawn the lease watchdog thread");
        watchdog
    })
}

/// Starts renewing `hold` on `backend` every `lease / 3`.
pub(crate) fn watch(backend: SharedBackend, hold: RenewHold, lease: Duration) -> Ticket {
    let watchdog = watchdog();
    let signal = Arc::new(LostSignal::default());
    let mut registry = watchdog.registry();
    let id = registry.next_id;
    registry.next_id += 1;
    registry.watched.insert(
        id,
        Watched {
            backend,
            hold,
            lease,
            renew_at: Instant::now() + lease / 3,
            signal: Arc::clone(&signal),
        },
    );
    drop(registry);
    watchdog.changed.notify_one();
    Ticket { id, signal }
}

impl Watchdog {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn run(&self) {
        loop {
            let due = self.wait_for_due();
            // Batch per backend and lease: one extend_many call each.
            let mut batches: HashMap<(usize, Duration), Vec<(u64, RenewHold)>> = HashMap::new();
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
                let backend = &backends[&backend_id];
                let (ids, holds): (Vec<u64>, Vec<RenewHold>) = holds.into_iter().unzip();
                match block_on(backend.extend_many(&holds, lease)) {
                    Ok(live) => self.settle(&ids, &live, lease),
                    Err(err) => {
                        // The backend is unreachable: try again soon; the lease still runs.
                        tracing::warn!(error = %err, "lockwright: lease renewal failed");
                        self.retry_soon(&ids, lease);
                    }
                }
            }
        }
    }

    /// Sleeps until some hold is due, then returns it with every hold due within a sixth of
    /// its lease: renewing those a little early lets them share one batch, and still renews each
    /// hold at least every third of its lease.
    fn wait_for_due(&self) -> Vec<(u64, SharedBackend, RenewHold, Duration)> {
        let mut registry = self.registry();
        loop {
            let now = Instant::now();
            if registry
                .watched
                .values()
                .any(|watched| watched.renew_at <= now)
            {
                return registry
                    .watched
                    .iter()
                    .filter(|(_, watched)| watched.renew_at <= now + watched.lease / 6)
                    .map(|(id, w)| (*id, Arc::clone(&w.backend), w.hold.clone(), w.lease))
                    .collect();
            }
            let next = registry.watched.values().map(|w| w.renew_at).min();
            registry = match next {
                Some(at) => {
                    self.changed
                        .wait_timeout(registry, at.saturating_duration_since(now))
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .0
                }
                None => self
                    .changed
                    .wait(registry)
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            };
        }
    }

    fn settle(&self, ids: &[u64], live: &[bool], lease: Duration) {
        let mut registry = self.registry();
        let renewed_at = Instant::now();
        for (id, live) in ids.iter().zip(live) {
            if *live {
                if let Some(watched) = registry.watched.get_mut(id) {
                    watched.renew_at = renewed_at + lease / 3;
                }
            } else if let Some(watched) = registry.watched.remove(id) {
                watched.signal.fire();
            }
        }
    }

    fn retry_soon(&self, ids: &[u64], lease: Duration) {
        let mut registry = self.registry();
        let retry_at = Instant::now() + (lease / 10).min(Duration::from_secs(1));
        for id in ids {
            if let Some(watched) = registry.watched.get_mut(id) {
                watched.renew_at = retry_at;
            }
        }
    }
}
