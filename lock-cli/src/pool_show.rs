//! How pools are shown: a table of pools and one of slots for people, JSON records for scripts.

use lock_core::__operate::{StoredPool, StoredSlot};
use lock_core::RemainingLease;
use serde::Serialize;

use crate::pool_scan::FoundPool;
use crate::show::{aligned, duration, lease_ms, remaining};

/// One pool as JSON (`pools --json`, `inspect --pool KEY --json`).
#[derive(Debug, Serialize)]
pub struct PoolRecord<'a> {
    /// The key, as given to the library.
    pub key: &'a str,
    /// The Redis name of its sorted set of slots.
    pub redis_key: &'a str,
    /// Where it was found: the master's `host:port` (`pools`), or the deployment (`inspect`).
    pub server: &'a str,
    /// Slots taken now (expired ones not counted).
    pub live_slots: usize,
    /// The `max_size` they were taken with; `null` when the pool's meta is gone.
    pub max_size: Option<u32>,
    /// An acquire found the pool full: someone waits (or waited); the next slot freed wakes
    /// them.
    pub waited_on: bool,
    /// Milliseconds until the first slot ends; `null` when no slot ends.
    pub soonest_end_ms: Option<u64>,
    /// The live slots, soonest end first.
    pub slots: Vec<SlotRecord<'a>>,
}

impl<'a> PoolRecord<'a> {
    /// The record of a found pool.
    pub fn of(found: &'a FoundPool) -> Self {
        let pool = &found.pool;
        PoolRecord {
            key: &found.key,
            redis_key: &found.redis_key,
            server: &found.server,
            live_slots: pool.slots.len(),
            max_size: pool.max_size,
            waited_on: pool.waited_on,
            soonest_end_ms: lease_ms(pool.soonest_end()),
            slots: pool.slots.iter().map(SlotRecord::of).collect(),
        }
    }
}

/// One slot as JSON.
#[derive(Debug, Serialize)]
pub struct SlotRecord<'a> {
    /// Its token (`PoolGuard::slot`; `force-unlock --pool KEY --slot TOKEN` frees it).
    pub token: u64,
    /// Who holds it.
    pub owner: &'a str,
    /// Milliseconds left of its lease; `null` for a slot that lasts until given back.
    pub remaining_lease_ms: Option<u64>,
}

impl<'a> SlotRecord<'a> {
    /// The record of a slot.
    pub fn of(slot: &'a StoredSlot) -> Self {
        SlotRecord {
            token: slot.token.0,
            owner: &slot.owner,
            remaining_lease_ms: lease_ms(slot.remaining),
        }
    }
}

/// Slots freed by `force-unlock --pool` as JSON.
#[derive(Debug, Serialize)]
pub struct FreedSlotsRecord<'a> {
    /// The pool's key.
    pub key: &'a str,
    /// How many live slots were freed.
    pub freed: u32,
    /// The slots asked to be freed, as read just before.
    pub slots: Vec<SlotRecord<'a>>,
}

/// `2/3`: live slots of the max size (`?` when the meta is gone).
pub fn occupancy(pool: &StoredPool) -> String {
    let max = pool
        .max_size
        .map_or_else(|| "?".to_owned(), |max| max.to_string());
    format!("{}/{max}", pool.slots.len())
}

/// When the first slot ends, in words.
pub fn soonest_end(pool: &StoredPool) -> String {
    match pool.soonest_end() {
        RemainingLease::Remaining(left) => duration(left),
        RemainingLease::Unlimited => "never".to_owned(),
        RemainingLease::NotLocked => "-".to_owned(),
    }
}

/// The pools as a table with a header, columns aligned.
pub fn pool_table(pools: &[FoundPool]) -> String {
    let mut rows = vec![["KEY", "SLOTS", "WAITED ON", "SOONEST END"]
        .map(str::to_owned)
        .to_vec()];
    for found in pools {
        rows.push(vec![
            found.key.clone(),
            occupancy(&found.pool),
            yes_no(found.pool.waited_on),
            soonest_end(&found.pool),
        ]);
    }
    aligned(&rows)
}

/// Slots as a table with a header, each line indented by `indent`.
pub fn slot_table(slots: &[StoredSlot], indent: &str) -> String {
    let mut rows = vec![["TOKEN", "OWNER", "LEASE LEFT"].map(str::to_owned).to_vec()];
    for slot in slots {
        rows.push(vec![
            slot.token.to_string(),
            slot.owner.clone(),
            remaining(slot.remaining),
        ]);
    }
    aligned(&rows)
        .lines()
        .map(|line| format!("{indent}{line}\n"))
        .collect()
}

fn yes_no(yes: bool) -> String {
    if yes { "yes" } else { "no" }.to_owned()
}
