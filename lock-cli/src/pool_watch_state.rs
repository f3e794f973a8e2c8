//! What `watch` makes of successive snapshots of the pools: the slots taken and freed between
//! two, the pools found full, and the running counts. Pure: the I/O is in `watch.rs`.

use std::collections::{BTreeMap, HashSet};

use lock_core::__operate::StoredSlot;
use lock_core::Fence;

use crate::pool_scan::FoundPool;

/// Something that happened to a pool between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolEvent {
    /// A slot that was not live in the last snapshot.
    SlotTake {
        /// The pool's key.
        key: String,
        /// The new slot.
        slot: StoredSlot,
    },
    /// A slot of the last snapshot is gone (given back, expired or force-released).
    SlotFree {
        /// The pool's key.
        key: String,
        /// The slot as last seen.
        slot: StoredSlot,
        /// Someone waited on the pool (its mark, or a wake-up heard): the free woke them.
        waited_on: bool,
    },
    /// An acquire found the pool full (its waiting mark appeared).
    Full(FoundPool),
}

/// Running counts since the watch began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    /// Slots taken.
    pub slot_takes: u64,
    /// Slots ended.
    pub slot_frees: u64,
    /// Times a pool was found full.
    pub full: u64,
}

/// The pools as last seen, and the counts.
#[derive(Debug, Default)]
pub struct PoolWatchState {
    pools: BTreeMap<String, FoundPool>,
    /// Pools whose wake-up was heard since the last snapshot (a slot freed with waiters).
    woken: HashSet<String>,
    /// The counts so far.
    pub counts: PoolCounts,
}

impl PoolWatchState {
    /// The state at the start: what is taken now is not an event.
    pub fn starting_with(pools: Vec<FoundPool>) -> Self {
        PoolWatchState {
            pools: by_key(pools),
            ..Default::default()
        }
    }

    /// The pools as last seen, by key.
    pub fn pools(&self) -> impl Iterator<Item = &FoundPool> {
        self.pools.values()
    }

    /// A wake-up was published for the pool `key`: a slot was freed with someone waiting.
    pub fn heard_wakeup(&mut self, key: &str) {
        self.woken.insert(key.to_owned());
    }

    /// The events from the last snapshot to `pools`, counted. A slot taken and freed between
    /// two snapshots is not seen.
    pub fn advance(&mut self, pools: Vec<FoundPool>) -> Vec<PoolEvent> {
        let before = std::mem::replace(&mut self.pools, by_key(pools));
        let woken = std::mem::take(&mut self.woken);
        let mut events = Vec::new();
        for (key, old) in &before {
            let now = self.pools.get(key);
            for slot in &old.pool.slots {
                if !now.is_some_and(|now| has(now, slot.token)) {
                    events.push(PoolEvent::SlotFree {
                        key: key.clone(),
                        slot: slot.clone(),
                        waited_on: old.pool.waited_on || woken.contains(key),
                    });
                }
            }
        }
        for (key, new) in &self.pools {
            let old = before.get(key);
            for slot in &new.pool.slots {
                if !old.is_some_and(|old| has(old, slot.token)) {
                    events.push(PoolEvent::SlotTake {
                        key: key.clone(),
                        slot: slot.clone(),
                    });
                }
            }
            if new.pool.waited_on && !old.is_some_and(|old| old.pool.waited_on) {
                events.push(PoolEvent::Full(new.clone()));
            }
        }
        for event in &events {
            match event {
                PoolEvent::SlotTake { .. } => self.counts.slot_takes += 1,
                PoolEvent::SlotFree { .. } => self.counts.slot_frees += 1,
                PoolEvent::Full(_) => self.counts.full += 1,
            }
        }
        events
    }
}

fn by_key(pools: Vec<FoundPool>) -> BTreeMap<String, FoundPool> {
    pools
        .into_iter()
        .map(|found| (found.key.clone(), found))
        .collect()
}

fn has(found: &FoundPool, token: Fence) -> bool {
    found.pool.slots.iter().any(|slot| slot.token == token)
}

#[cfg(test)]
mod tests {
    use super::{PoolCounts, PoolEvent, PoolWatchState};
    use crate::pool_scan::FoundPool;
    use lock_core::__operate::{StoredPool, StoredSlot};
    use lock_core::{Fence, RemainingLease};

    fn pool(key: &str, tokens: &[u64], waited_on: bool) -> FoundPool {
        FoundPool {
            key: key.to_owned(),
            redis_key: format!("lockwright:{{{key}}}:pool"),
            server: "127.0.0.1:6379".to_owned(),
            pool: StoredPool {
                slots: tokens
                    .iter()
                    .map(|token| StoredSlot {
                        token: Fence(*token),
                        owner: "00ab-task-1".to_owned(),
                        remaining: RemainingLease::Unlimited,
                    })
                    .collect(),
                max_size: Some(2),
                waited_on,
            },
        }
    }

    fn kinds(events: &[PoolEvent]) -> Vec<String> {
        events
            .iter()
            .map(|event| match event {
                PoolEvent::SlotTake { key, slot } => format!("take {key} {}", slot.token),
                PoolEvent::SlotFree {
                    key,
                    slot,
                    waited_on,
                } => format!("free {key} {} {waited_on}", slot.token),
                PoolEvent::Full(found) => format!("full {}", found.key),
            })
            .collect()
    }

    #[test]
    fn slots_taken_and_freed_and_pools_found_full_are_told_and_counted() {
        let mut state = PoolWatchState::starting_with(vec![pool("a", &[1], false)]);
        assert!(state.advance(vec![pool("a", &[1], false)]).is_empty());
        assert_eq!(
            kinds(&state.advance(vec![pool("a", &[1, 2], false)])),
            ["take a 2"]
        );
        assert_eq!(
            kinds(&state.advance(vec![pool("a", &[1, 2], true)])),
            ["full a"]
        );
        // A slot handed to a waiter between two snapshots: one ends, another begins.
        assert_eq!(
            kinds(&state.advance(vec![pool("a", &[2, 3], false), pool("b", &[7], true)])),
            ["free a 1 true", "take a 3", "take b 7", "full b"]
        );
        state.heard_wakeup("a");
        assert_eq!(
            kinds(&state.advance(vec![pool("b", &[7], true)])),
            ["free a 2 true", "free a 3 true"]
        );
        assert_eq!(kinds(&state.advance(vec![])), ["free b 7 true"]);
        assert_eq!(
            state.counts,
            PoolCounts {
                slot_takes: 3,
                slot_frees: 4,
                full: 2
            }
        );
    }
}
