//! The embedded backend's pools (keyed counting semaphores): a table of their live slots,
//! behind a mutex of its own so that pools never slow the locks' table.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use hashbrown::HashTable;

use crate::backend::{Fence, LeaseTime, PoolAcquire, PoolState, RemainingLease};
use crate::error::{LockError, Result};
use crate::owner::Owner;

/// The pools of one [`MemoryBackend`](crate::MemoryBackend).
#[derive(Debug)]
pub(crate) struct Pools {
    table: Mutex<PoolTable>,
}

#[derive(Debug)]
struct PoolTable {
    pools: HashTable<Pool>,
    /// Slot tokens come from one counter: never handed out twice, growing.
    next_slot: u64,
    acquires_since_sweep: usize,
}

/// A pool with at least one slot (live, or expired and not yet reclaimed).
#[derive(Debug)]
struct Pool {
    key: Arc<str>,
    hash: u64,
    /// The size its slots were taken with.
    max_size: u32,
    /// At most `max_size` entries: an acquire reclaims the expired ones first.
    slots: Vec<Slot>,
}

#[derive(Debug)]
struct Slot {
    token: Fence,
    owner: Owner,
    expires_at: Option<Instant>,
}

impl Slot {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.map_or(true, |at| at > now)
    }
}

impl Pool {
    fn reclaim(&mut self, now: Instant) {
        self.slots.retain(|slot| slot.live(now));
    }

    fn live_count(&self, now: Instant) -> u32 {
        self.slots.iter().filter(|slot| slot.live(now)).count() as u32
    }

    /// What is left of the slot that ends first.
    fn first_end(&self, now: Instant) -> RemainingLease {
        self.slots
            .iter()
            .filter(|slot| slot.live(now))
            .filter_map(|slot| slot.expires_at)
            .min()
            .map_or(RemainingLease::Unlimited, |at| {
                RemainingLease::Remaining(at.saturating_duration_since(now))
            })
    }
}

/// Pools are swept of expired slots once every `max(pools, MIN_SWEEP_OPS)` acquires (as the
/// locks' table is), so pools nobody touches again are reclaimed too.
const MIN_SWEEP_OPS: usize = 1024;

impl Pools {
    pub(crate) fn new() -> Self {
        Pools {
            table: Mutex::new(PoolTable {
                pools: HashTable::new(),
                next_slot: 1,
                acquires_since_sweep: 0,
            }),
        }
    }

    fn table(&self) -> MutexGuard<'_, PoolTable> {
        // No user code runs under the mutex, so a poisoned table is still consistent.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many pools have an entry (live slots, or expired ones not yet reclaimed).
    pub(crate) fn entry_count(&self) -> usize {
        self.table().pools.len()
    }

    /// Reclaims every expired slot now.
    pub(crate) fn purge_expired(&self, now: Instant) -> usize {
        let mut table = self.table();
        table.sweep(now);
        table.pools.len()
    }

    pub(crate) fn acquire(
        &self,
        key: &Arc<str>,
        hash: u64,
        owner: Owner,
        max_size: u32,
        lease: LeaseTime,
        now: Instant,
    ) -> Result<PoolAcquire> {
        let mut table = self.table();
        table.maybe_sweep(now);
        let table = &mut *table;
        let slot = Slot {
            token: Fence(table.next_slot),
            owner,
            // Leases are validated to at most a year, so this cannot overflow.
            expires_at: lease.map(|lease| now + lease),
        };
        let size = match table.pools.find_mut(hash, |pool| *pool.key == **key) {
            Some(pool) => {
                pool.reclaim(now);
                if pool.slots.is_empty() {
                    pool.max_size = max_size;
                } else if pool.max_size != max_size {
                    return Err(LockError::PoolSizeMismatch {
                        key: Arc::clone(key),
                        live: pool.max_size,
                        given: max_size,
                    });
                }
                if pool.slots.len() >= max_size as usize {
                    return Ok(PoolAcquire::Full {
                        remaining: pool.first_end(now),
                    });
                }
                pool.slots.push(slot);
                pool.slots.len() as u32
            }
            None => {
                table.pools.insert_unique(
                    hash,
                    Pool {
                        key: Arc::clone(key),
                        hash,
                        max_size,
                        slots: vec![slot],
                    },
                    |pool| pool.hash,
                );
                1
            }
        };
        let slot = Fence(table.next_slot);
        table.next_slot += 1;
        Ok(PoolAcquire::Acquired { slot, size })
    }

    /// Removes the slot `token` (of `owner`, when given); whether it was live. The pool's entry
    /// goes with its last slot.
    pub(crate) fn remove(
        &self,
        key: &str,
        hash: u64,
        owner: Option<Owner>,
        token: Fence,
        now: Option<Instant>,
    ) -> bool {
        let mut table = self.table();
        let Ok(mut entry) = table.pools.find_entry(hash, |pool| *pool.key == *key) else {
            return false;
        };
        let pool = entry.get_mut();
        let Some(at) = pool.slots.iter().position(|slot| {
            slot.token == token && owner.map_or(true, |owner| slot.owner == owner)
        }) else {
            return false;
        };
        let slot = pool.slots.swap_remove(at);
        if pool.slots.is_empty() {
            entry.remove();
        }
        now.map_or(true, |now| slot.live(now))
    }

    /// Removes every slot; how many were live.
    pub(crate) fn clear(&self, key: &str, hash: u64, now: Instant) -> u32 {
        match self
            .table()
            .pools
            .find_entry(hash, |pool| *pool.key == *key)
        {
            Ok(entry) => entry.remove().0.live_count(now),
            Err(_) => 0,
        }
    }

    pub(crate) fn extend(
        &self,
        key: &str,
        hash: u64,
        owner: Owner,
        token: Fence,
        lease: LeaseTime,
        now: Instant,
    ) -> bool {
        let mut table = self.table();
        let Some(pool) = table.pools.find_mut(hash, |pool| *pool.key == *key) else {
            return false;
        };
        match pool
            .slots
            .iter_mut()
            .find(|slot| slot.token == token && slot.owner == owner && slot.live(now))
        {
            Some(slot) => {
                // Never shortened, never given an expiry it does not have.
                slot.expires_at = match (slot.expires_at, lease.map(|lease| now + lease)) {
                    (Some(current), Some(new)) => Some(current.max(new)),
                    _ => None,
                };
                true
            }
            None => false,
        }
    }

    /// A read: expired slots are not counted, and not removed.
    pub(crate) fn state(&self, key: &str, hash: u64, now: Instant) -> PoolState {
        match self.table().pools.find(hash, |pool| *pool.key == *key) {
            Some(pool) => match pool.live_count(now) {
                0 => PoolState::EMPTY,
                size => PoolState {
                    size,
                    max_size: Some(pool.max_size),
                },
            },
            None => PoolState::EMPTY,
        }
    }
}

impl PoolTable {
    fn maybe_sweep(&mut self, now: Instant) {
        self.acquires_since_sweep += 1;
        if self.acquires_since_sweep >= self.pools.len().max(MIN_SWEEP_OPS) {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.pools.retain(|pool| {
            pool.reclaim(now);
            !pool.slots.is_empty()
        });
        self.acquires_since_sweep = 0;
        if self.pools.capacity() > 4 * self.pools.len().max(MIN_SWEEP_OPS) {
            self.pools.shrink_to(2 * self.pools.len(), |pool| pool.hash);
        }
    }
}
