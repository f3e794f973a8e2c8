//! The embedded backend: locks of one process, kept in a hash map behind one mutex.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use event_listener::{Event, EventListener};

use crate::backend::{
    Backend, BoxFuture, Fence, LeaseTime, LockState, Release, ReleaseScope, RemainingLease,
    SharedBackend, TryAcquire,
};
use crate::error::Result;
use crate::owner::Owner;

/// Wake-up events are striped by key hash: a release wakes the waiters of its stripe, who
/// re-check their own key. 64 stripes keep unrelated wake-ups rare without per-key state.
const WAKE_STRIPES: usize = 64;

/// Expired entries are swept once every `max(entries, MIN_SWEEP_OPS)` acquires: a sweep costs
/// O(entries), so this is amortised O(1) per acquire, and holds that expire with nobody touching
/// their key again are still reclaimed.
const MIN_SWEEP_OPS: usize = 1024;

/// The default backend: locks live in this process's memory. Exclusion holds between threads and
/// tasks of the process; use the Redis backend for several processes.
///
/// Free and released keys take no memory; expired holds are dropped when touched or swept.
/// Fences come from one counter per backend, so they grow strictly per key (and globally).
///
/// ```
/// use lock_core::{Lock, MemoryBackend};
///
/// let backend = MemoryBackend::shared();
/// let lock = Lock::with_backend("invoice-1", &backend);
/// let guard = lock.acquire_blocking()?;
/// assert!(lock.is_locked_blocking()?);
/// drop(guard);
/// assert!(!lock.is_locked_blocking()?);
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[derive(Debug)]
pub struct MemoryBackend {
    table: Mutex<Table>,
    next_fence: AtomicU64,
    stripes: Box<[Event]>,
    stripe_hasher: std::collections::hash_map::RandomState,
}

#[derive(Debug)]
struct Table {
    holds: HashMap<Box<str>, Hold>,
    acquires_since_sweep: usize,
}

#[derive(Debug)]
struct Hold {
    owner: Owner,
    count: u32,
    fence: Fence,
    expires_at: Option<Instant>,
}

impl Hold {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn remaining(&self, now: Instant) -> RemainingLease {
        match self.expires_at {
            None => RemainingLease::Unlimited,
            Some(at) => RemainingLease::Remaining(at.saturating_duration_since(now)),
        }
    }
}

fn expiry(now: Instant, lease: LeaseTime) -> Option<Instant> {
    // Leases are validated to at most a year, so this cannot overflow.
    lease.map(|lease| now + lease)
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        MemoryBackend {
            table: Mutex::new(Table {
                holds: HashMap::new(),
                acquires_since_sweep: 0,
            }),
            next_fence: AtomicU64::new(1),
            stripes: (0..WAKE_STRIPES).map(|_| Event::new()).collect(),
            stripe_hasher: Default::default(),
        }
    }

    /// A new backend behind an [`Arc`], ready for [`Lock::with_backend`](crate::Lock::with_backend).
    pub fn shared() -> SharedBackend {
        Arc::new(Self::new())
    }

    /// How many keys have an entry (held, or expired and not yet swept). Diagnostic.
    pub fn entry_count(&self) -> usize {
        self.table().holds.len()
    }

    /// Drops every expired hold now, returning how many entries remain.
    pub fn purge_expired(&self) -> usize {
        let mut table = self.table();
        table.sweep(Instant::now());
        table.holds.len()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic cannot happen while the table is mid-update (no user code runs under the
        // mutex), so a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn wake(&self, key: &str) {
        let stripe = self.stripe_hasher.hash_one(key) as usize % WAKE_STRIPES;
        self.stripes[stripe].notify(usize::MAX);
    }

    fn try_acquire_now(&self, key: &str, owner: Owner, lease: LeaseTime) -> TryAcquire {
        let now = Instant::now();
        let mut table = self.table();
        table.maybe_sweep(now);
        if let Some(hold) = table.holds.get_mut(key) {
            if !hold.expired(now) {
                if hold.owner != owner {
                    return TryAcquire::Held {
                        remaining: hold.remaining(now),
                    };
                }
                hold.count = hold.count.saturating_add(1);
                // Re-entering extends the lease if the new one ends later; it never shortens it.
                hold.expires_at = match (hold.expires_at, expiry(now, lease)) {
                    (Some(old), Some(new)) => Some(old.max(new)),
                    _ => None,
                };
                return TryAcquire::Acquired {
                    fence: hold.fence,
                    hold_count: hold.count,
                };
            }
        }
        let fence = Fence(self.next_fence.fetch_add(1, Ordering::Relaxed));
        let hold = Hold {
            owner,
            count: 1,
            fence,
            expires_at: expiry(now, lease),
        };
        match table.holds.get_mut(key) {
            Some(expired) => *expired = hold,
            None => {
                table.holds.insert(key.into(), hold);
            }
        }
        TryAcquire::Acquired {
            fence,
            hold_count: 1,
        }
    }

    fn release_now(
        &self,
        key: &str,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    ) -> Release {
        let now = Instant::now();
        let mut table = self.table();
        let Some(hold) = table.holds.get_mut(key) else {
            return Release::NotLocked;
        };
        if hold.expired(now) {
            table.holds.remove(key);
            return Release::NotLocked;
        }
        if hold.owner != owner || fence.is_some_and(|fence| fence != hold.fence) {
            return Release::NotOwner;
        }
        hold.count = match scope {
            ReleaseScope::One => hold.count - 1,
            ReleaseScope::All => 0,
        };
        if hold.count > 0 {
            return Release::StillHeld(hold.count);
        }
        table.holds.remove(key);
        drop(table);
        self.wake(key);
        Release::Freed
    }

    fn force_unlock_now(&self, key: &str) -> bool {
        let now = Instant::now();
        let removed = self.table().holds.remove(key);
        let was_held = removed.is_some_and(|hold| !hold.expired(now));
        if was_held {
            self.wake(key);
        }
        was_held
    }

    fn inspect_now(&self, key: &str, owner: Owner) -> LockState {
        let now = Instant::now();
        let table = self.table();
        match table.holds.get(key) {
            Some(hold) if !hold.expired(now) => LockState {
                locked: true,
                held_by_owner: hold.owner == owner,
                hold_count: hold.count,
                fence: Some(hold.fence),
                remaining: hold.remaining(now),
            },
            // An expired entry is reported free but not removed here: a reader never deletes,
            // so it cannot race a writer (py-cachify defect 4).
            _ => LockState::FREE,
        }
    }

    fn extend_now(&self, key: &str, owner: Owner, fence: Fence, lease: LeaseTime) -> bool {
        let now = Instant::now();
        let mut table = self.table();
        match table.holds.get_mut(key) {
            Some(hold) if !hold.expired(now) && hold.owner == owner && hold.fence == fence => {
                hold.expires_at = expiry(now, lease);
                true
            }
            _ => false,
        }
    }
}

impl Table {
    fn maybe_sweep(&mut self, now: Instant) {
        self.acquires_since_sweep += 1;
        if self.acquires_since_sweep >= self.holds.len().max(MIN_SWEEP_OPS) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.holds.retain(|_, hold| !hold.expired(now));
        self.acquires_since_sweep = 0;
        // Give back the memory of a burst of keys once they are gone.
        if self.holds.capacity() > 4 * self.holds.len().max(MIN_SWEEP_OPS) {
            self.holds.shrink_to(2 * self.holds.len());
        }
    }
}

impl Backend for MemoryBackend {
    fn try_acquire<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<TryAcquire>> {
        Box::pin(async move { Ok(self.try_acquire_now(key, owner, lease)) })
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    ) -> BoxFuture<'a, Result<Release>> {
        Box::pin(async move { Ok(self.release_now(key, owner, fence, scope)) })
    }

    fn force_unlock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.force_unlock_now(key)) })
    }

    fn inspect<'a>(&'a self, key: &'a str, owner: Owner) -> BoxFuture<'a, Result<LockState>> {
        Box::pin(async move { Ok(self.inspect_now(key, owner)) })
    }

    fn extend<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<bool>> {
        Box::pin(async move { Ok(self.extend_now(key, owner, fence, lease)) })
    }

    fn listen(&self, key: &str) -> EventListener {
        let stripe = self.stripe_hasher.hash_one(key) as usize % WAKE_STRIPES;
        self.stripes[stripe].listen()
    }

    fn release_on_drop(&self, key: &str, owner: Owner, fence: Fence) {
        self.release_now(key, owner, Some(fence), ReleaseScope::One);
    }
}
