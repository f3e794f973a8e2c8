//! The embedded backend: locks of one process, kept in a hash map split into shards, each
//! behind a mutex of its own.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use event_listener::EventListener;
use hashbrown::HashTable;

use crate::backend::{
    Backend, BoxFuture, Fence, LeaseTime, LockState, PoolAcquire, PoolState, Release, ReleaseScope,
    RemainingLease, SharedBackend, TryAcquire,
};
use crate::error::Result;
use crate::memory_key::HeldKey;
use crate::memory_pools::Pools;
use crate::owner::Owner;
use crate::wakeups::KeyedWakeups;

/// Expired entries are swept, in every shard, once every `max(entries, MIN_SWEEP_OPS)` acquires
/// (wherever they land): a sweep costs O(entries), so this is amortised O(1) per acquire, and
/// holds that expire with nobody touching their key (or its shard) again are still reclaimed.
const MIN_SWEEP_OPS: usize = 1024;

/// Shards of the locks' table: threads working on different keys rarely wait for one another's
/// mutex (one table behind one mutex made 8 threads on 1,000 keys slower than on one key).
const TABLE_SHARDS: usize = 64;

/// A shard counts its acquires and adds them to the backend's total this many at a time, so
/// the shared counter is touched once per this many acquires of a shard.
const ACQUIRES_PER_COUNT: usize = 64;

/// The default backend: locks live in this process's memory. Exclusion holds between threads and
/// tasks of the process; use the Redis backend for several processes.
///
/// Free and released keys take no memory; expired holds are dropped when touched or swept.
/// Fences come from one counter per shard of the table (a key always lands in the same shard),
/// interleaved across shards, so they grow strictly per key and are unique across keys.
/// Each operation hashes its key once (seeded `foldhash`). A release wakes the waiters of its
/// own key only, and costs nothing more when nobody found the key taken.
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
    shards: Box<[TableShard]>,
    /// Acquires counted since the last sweep (see [`MIN_SWEEP_OPS`]), and how many make the next.
    acquires_since_sweep: AtomicUsize,
    sweep_every: AtomicUsize,
    pools: Pools,
    /// The waiters of locks and of pools, apart: a lock and a pool of one key are independent.
    lock_wakeups: KeyedWakeups,
    pool_wakeups: KeyedWakeups,
    hasher: foldhash::fast::RandomState,
    /// `None`: the monotonic clock.
    clock: Option<ManualClock>,
}

/// A clock that moves only when told to, for [`MemoryBackend::with_clock`]: tests can then check
/// expiry exactly instead of sleeping.
///
/// Only the backend reads it (expiry, remaining leases); waiting and the lease watchdog still
/// use real time, so drive such a backend through the [`Backend`] methods.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use lock_core::{Backend, ManualClock, MemoryBackend, Owner, TryAcquire};
///
/// let clock = ManualClock::new();
/// let backend = MemoryBackend::with_clock(clock.clone());
/// let key: Arc<str> = "job".into();
/// let lease = Some(Duration::from_secs(10));
/// let first = backend.try_acquire_sync(&key, Owner::current(), lease).unwrap()?;
/// assert!(matches!(first, TryAcquire::Acquired { .. }));
/// clock.advance(Duration::from_secs(10)); // the lease has run out, to the nanosecond
/// let other = std::thread::spawn(Owner::current).join().unwrap();
/// let second = backend.try_acquire_sync(&key, other, lease).unwrap()?;
/// assert!(matches!(second, TryAcquire::Acquired { .. }));
/// # Ok::<(), lock_core::LockError>(())
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock {
    start: Instant,
    elapsed: Arc<Mutex<std::time::Duration>>,
}

impl ManualClock {
    /// A clock standing at the moment it is made.
    pub fn new() -> Self {
        ManualClock {
            start: Instant::now(),
            elapsed: Default::default(),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        *self.elapsed.lock().unwrap_or_else(|p| p.into_inner()) += by;
    }

    /// What the clock says.
    pub fn now(&self) -> Instant {
        self.start + *self.elapsed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

/// One shard of the table, alone on its cache line (its neighbours' mutexes are other threads').
#[derive(Debug)]
#[repr(align(128))]
struct TableShard(Mutex<Table>);

#[derive(Debug)]
struct Table {
    holds: HashTable<Hold>,
    /// Acquires not yet added to the backend's count.
    uncounted: usize,
    /// Fences this shard has handed out. Counted under the shard's lock, not in one atomic of
    /// the backend: an atomic increment costs about 9 ns on the CI machine, of an uncontended
    /// acquire+release of 150 to 300 ns.
    fences: u64,
}

#[derive(Debug)]
struct Hold {
    /// Copied when short, else shared with the handles of the key: storing it costs no
    /// allocation.
    key: HeldKey,
    hash: u64,
    owner: Owner,
    count: u32,
    fence: Fence,
    expires_at: Option<Instant>,
    /// Another owner found it taken: its release wakes the key's waiters, and so does its
    /// removal once expired (swept, or released late): a waiter sleeps until the lease end by
    /// its own clock, which need not be the backend's (a `ManualClock`), and a hold taken after
    /// this one was removed starts unwaited.
    waited: bool,
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

/// The expiry of a key whose re-entered holds share one lease, when one of them sets `new`: the
/// later of the two, `None` (never) winning. Re-entry, extends and renewals all go through it, so
/// the key's lease is never shorter than the longest lease a live hold was given or extended to.
fn longer(current: Option<Instant>, new: Option<Instant>) -> Option<Instant> {
    match (current, new) {
        (Some(current), Some(new)) => Some(current.max(new)),
        _ => None,
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> Self {
        Self::with_optional_clock(None)
    }

    /// An empty backend whose leases run on `clock` instead of the monotonic clock.
    pub fn with_clock(clock: ManualClock) -> Self {
        Self::with_optional_clock(Some(clock))
    }

    fn with_optional_clock(clock: Option<ManualClock>) -> Self {
        MemoryBackend {
            clock,
            shards: (0..TABLE_SHARDS)
                .map(|_| {
                    TableShard(Mutex::new(Table {
                        holds: HashTable::new(),
                        uncounted: 0,
                        fences: 0,
                    }))
                })
                .collect(),
            acquires_since_sweep: AtomicUsize::new(0),
            sweep_every: AtomicUsize::new(MIN_SWEEP_OPS),
            pools: Pools::new(),
            lock_wakeups: KeyedWakeups::default(),
            pool_wakeups: KeyedWakeups::default(),
            hasher: Default::default(),
        }
    }

    /// A new backend behind an [`Arc`], ready for [`Lock::with_backend`](crate::Lock::with_backend).
    pub fn shared() -> SharedBackend {
        Arc::new(Self::new())
    }

    /// How many keys have an entry (locks held, or expired and not yet swept; pools with a
    /// slot, live or expired and not yet reclaimed). Diagnostic.
    pub fn entry_count(&self) -> usize {
        let holds: usize = self
            .shards
            .iter()
            .map(|shard| lock_table(shard).holds.len())
            .sum();
        holds + self.pools.entry_count()
    }

    /// Drops every expired hold and pool slot now, returning how many entries remain.
    pub fn purge_expired(&self) -> usize {
        let now = self.now();
        self.sweep_all(now) + self.pools.purge_expired(now)
    }

    /// Sweeps every shard of expired holds, one shard lock at a time; returns the holds left.
    fn sweep_all(&self, now: Instant) -> usize {
        let left: usize = self
            .shards
            .iter()
            .map(|shard| {
                let mut table = lock_table(shard);
                let swept = table.sweep(now);
                let left = table.holds.len();
                drop(table);
                // Woken once the shard is unlocked (see `Hold::waited`).
                for key in swept {
                    self.lock_wakeups.wake(&key);
                }
                left
            })
            .sum();
        self.sweep_every
            .store(left.max(MIN_SWEEP_OPS), Ordering::Relaxed);
        left
    }

    /// Counts an acquire of `table`'s shard (already locked, so it is counted in batches), and
    /// says whether the whole table is due a sweep.
    fn count_acquire(&self, table: &mut Table) -> bool {
        table.uncounted += 1;
        if table.uncounted < ACQUIRES_PER_COUNT {
            return false;
        }
        table.uncounted = 0;
        let counted = self
            .acquires_since_sweep
            .fetch_add(ACQUIRES_PER_COUNT, Ordering::Relaxed)
            + ACQUIRES_PER_COUNT;
        if counted < self.sweep_every.load(Ordering::Relaxed) {
            return false;
        }
        // One thread sweeps: the one that resets the count.
        self.acquires_since_sweep
            .compare_exchange(counted, 0, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// The pools' table is apart from the locks'; its hash is salted all the same.
    fn pool_hash(&self, key: &str) -> u64 {
        self.hash(key) ^ 0x9e37_79b9_7f4a_7c15
    }

    fn pool_release_now(
        &self,
        key: &str,
        owner: Option<Owner>,
        slot: Fence,
        now: Option<Instant>,
    ) -> bool {
        let live = self
            .pools
            .remove(key, self.pool_hash(key), owner, slot, now);
        if live {
            self.pool_wakeups.wake(key);
        }
        live
    }

    fn now(&self) -> Instant {
        match &self.clock {
            None => Instant::now(),
            Some(clock) => clock.now(),
        }
    }

    /// The shard of a key's hash (bits apart from those hashbrown uses for buckets and tags).
    fn shard_index(hash: u64) -> usize {
        (hash >> 32) as usize % TABLE_SHARDS
    }

    /// The locked shard of a key's hash.
    fn table(&self, hash: u64) -> MutexGuard<'_, Table> {
        lock_table(&self.shards[Self::shard_index(hash)])
    }

    fn hash(&self, key: &str) -> u64 {
        self.hasher.hash_one(key)
    }

    /// `now` is the real clock's reading, when the caller has one: it saves a clock read (a
    /// `ManualClock`, when there is one, is read all the same).
    fn acquire_in_table(
        &self,
        key: &Arc<str>,
        owner: Owner,
        lease: LeaseTime,
        now: Option<Instant>,
    ) -> TryAcquire {
        let hash = self.hash(key);
        let now = match (&self.clock, now) {
            (None, Some(now)) => now,
            _ => self.now(),
        };
        let mut table = self.table(hash);
        if self.count_acquire(&mut table) {
            drop(table);
            self.sweep_all(now);
            table = self.table(hash);
        }
        let table = &mut *table;
        let mut found = table.holds.find_mut(hash, |hold| hold.key.is(key));
        if let Some(hold) = found.as_mut().filter(|hold| !hold.expired(now)) {
            if hold.owner != owner {
                hold.waited = true;
                return TryAcquire::Held {
                    remaining: hold.remaining(now),
                };
            }
        }
        // The shard's next fence, interleaved with the other shards' (so unique across keys);
        // counted under the key's shard lock, so the key's fences grow.
        let shard = Self::shard_index(hash) as u64;
        let fences = &mut table.fences;
        let mut fence = || {
            *fences += 1;
            Fence(*fences * TABLE_SHARDS as u64 + shard)
        };
        let fresh = |key: &Arc<str>, waited, fence: Fence| Hold {
            key: HeldKey::new(key),
            hash,
            owner,
            count: 1,
            fence,
            expires_at: expiry(now, lease),
            waited,
        };
        match found {
            Some(hold) if !hold.expired(now) => {
                hold.count = hold.count.saturating_add(1);
                hold.expires_at = longer(hold.expires_at, expiry(now, lease));
                TryAcquire::Acquired {
                    fence: hold.fence,
                    hold_count: hold.count,
                }
            }
            // Whoever waited on the expired hold may still wait (woken by its lease's end,
            // not yet back): the new hold's release wakes them.
            Some(expired) => {
                *expired = fresh(key, expired.waited, fence());
                TryAcquire::Acquired {
                    fence: expired.fence,
                    hold_count: 1,
                }
            }
            None => {
                let hold = fresh(key, false, fence());
                let fence = hold.fence;
                table.holds.insert_unique(hash, hold, |hold| hold.hash);
                TryAcquire::Acquired {
                    fence,
                    hold_count: 1,
                }
            }
        }
    }

    /// `now` is `None` when the caller needs no expiry check: a guard's drop releases its own
    /// hold epoch (owner and fence match), and removing an expired hold nobody took since is
    /// what expiry would have done anyway, so it saves a clock read.
    fn release_now(
        &self,
        key: &str,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
        now: Option<Instant>,
    ) -> Release {
        let hash = self.hash(key);
        let mut table = self.table(hash);
        let Ok(mut entry) = table.holds.find_entry(hash, |hold| hold.key.is(key)) else {
            return Release::NotLocked;
        };
        let hold = entry.get_mut();
        if now.is_some_and(|now| hold.expired(now)) {
            let (hold, _) = entry.remove();
            drop(table);
            if hold.waited {
                self.lock_wakeups.wake(key);
            }
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
        let (hold, _) = entry.remove();
        drop(table);
        if hold.waited {
            self.lock_wakeups.wake(key);
        }
        Release::Freed
    }

    fn force_unlock_now(&self, key: &str) -> bool {
        let hash = self.hash(key);
        let now = self.now();
        let removed = match self
            .table(hash)
            .holds
            .find_entry(hash, |hold| hold.key.is(key))
        {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        };
        if removed.as_ref().is_some_and(|hold| hold.waited) {
            self.lock_wakeups.wake(key);
        }
        removed.is_some_and(|hold| !hold.expired(now))
    }

    fn inspect_now(&self, key: &str, owner: Owner) -> LockState {
        let hash = self.hash(key);
        let now = self.now();
        let table = self.table(hash);
        match table.holds.find(hash, |hold| hold.key.is(key)) {
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
        let hash = self.hash(key);
        let now = self.now();
        let mut table = self.table(hash);
        match table.holds.find_mut(hash, |hold| hold.key.is(key)) {
            Some(hold) if !hold.expired(now) && hold.owner == owner && hold.fence == fence => {
                hold.expires_at = longer(hold.expires_at, expiry(now, lease));
                true
            }
            _ => false,
        }
    }
}

fn lock_table(shard: &TableShard) -> MutexGuard<'_, Table> {
    // A panic cannot happen while a shard is mid-update (no user code runs under its mutex), so
    // a poisoned shard is still consistent.
    shard
        .0
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Table {
    /// Drops the expired holds; returns the keys of those someone waited on, to wake once the
    /// shard is unlocked.
    fn sweep(&mut self, now: Instant) -> Vec<Arc<str>> {
        let mut waited = Vec::new();
        self.holds.retain(|hold| {
            let expired = hold.expired(now);
            if expired && hold.waited {
                waited.push(hold.key.to_text());
            }
            !expired
        });
        // Give back the memory of a burst of keys once they are gone.
        let floor = MIN_SWEEP_OPS / TABLE_SHARDS;
        if self.holds.capacity() > 4 * self.holds.len().max(floor) {
            self.holds.shrink_to(2 * self.holds.len(), |hold| hold.hash);
        }
        waited
    }
}

impl Backend for MemoryBackend {
    fn try_acquire<'a>(
        &'a self,
        key: &'a Arc<str>,
        owner: Owner,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<TryAcquire>> {
        Box::pin(async move { Ok(self.acquire_in_table(key, owner, lease, None)) })
    }

    fn try_acquire_sync(
        &self,
        key: &Arc<str>,
        owner: Owner,
        lease: LeaseTime,
    ) -> Option<Result<TryAcquire>> {
        Some(Ok(self.acquire_in_table(key, owner, lease, None)))
    }

    fn try_acquire_sync_at(
        &self,
        key: &Arc<str>,
        owner: Owner,
        lease: LeaseTime,
        now: Instant,
    ) -> Option<Result<TryAcquire>> {
        Some(Ok(self.acquire_in_table(key, owner, lease, Some(now))))
    }

    fn release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        fence: Option<Fence>,
        scope: ReleaseScope,
    ) -> BoxFuture<'a, Result<Release>> {
        Box::pin(async move { Ok(self.release_now(key, owner, fence, scope, Some(self.now()))) })
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
        self.lock_wakeups.listen(key)
    }

    fn release_on_drop(&self, key: &str, owner: Owner, fence: Fence) {
        self.release_now(key, owner, Some(fence), ReleaseScope::One, None);
    }

    fn pool_acquire<'a>(
        &'a self,
        key: &'a Arc<str>,
        owner: Owner,
        max_size: u32,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<PoolAcquire>> {
        let acquired =
            self.pools
                .acquire(key, self.pool_hash(key), owner, max_size, lease, self.now());
        Box::pin(async move { acquired })
    }

    fn pool_release<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        slot: Fence,
    ) -> BoxFuture<'a, Result<bool>> {
        let live = self.pool_release_now(key, Some(owner), slot, Some(self.now()));
        Box::pin(async move { Ok(live) })
    }

    fn pool_extend<'a>(
        &'a self,
        key: &'a str,
        owner: Owner,
        slot: Fence,
        lease: LeaseTime,
    ) -> BoxFuture<'a, Result<bool>> {
        let live = self
            .pools
            .extend(key, self.pool_hash(key), owner, slot, lease, self.now());
        Box::pin(async move { Ok(live) })
    }

    fn pool_state<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<PoolState>> {
        let state = self.pools.state(key, self.pool_hash(key), self.now());
        Box::pin(async move { Ok(state) })
    }

    fn pool_force_release<'a>(
        &'a self,
        key: &'a str,
        slot: Option<Fence>,
    ) -> BoxFuture<'a, Result<u32>> {
        let now = self.now();
        let freed = match slot {
            Some(slot) => u32::from(self.pool_release_now(key, None, slot, Some(now))),
            None => {
                let hash = self.pool_hash(key);
                let freed = self.pools.clear(key, hash, now);
                if freed > 0 {
                    self.pool_wakeups.wake(key);
                }
                freed
            }
        };
        Box::pin(async move { Ok(freed) })
    }

    fn listen_pool(&self, key: &str) -> EventListener {
        self.pool_wakeups.listen(key)
    }

    fn pool_release_on_drop(&self, key: &str, owner: Owner, slot: Fence) {
        self.pool_release_now(key, Some(owner), slot, None);
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
