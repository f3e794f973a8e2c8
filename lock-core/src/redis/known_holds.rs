//! The holds a backend knows its owners have: what tells a re-entry from a ghost.
//!
//! Redis can bring back a hold its owner has given up since: a restart from an older snapshot,
//! a failover to a replica that lagged. The lock's value still names the owner, so the acquire
//! script alone would take the owner's next acquire for a re-entry and hand back the ghost's
//! old fence, below fences handed out since. So each acquire names the fence of the hold the
//! backend knows the owner has (none: `""`), and the script re-enters only that hold; a hold
//! of the owner with another fence is replaced by a new hold with a new fence.
//!
//! An entry is written when an acquire takes a new hold and removed when a release frees it or
//! finds it gone. One left behind (a hold that expired, a guard that was forgotten) is harmless:
//! it names a fence the key no longer has, or the very hold the key still has.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::backend::{Fence, Release};
use crate::owner::Owner;

#[derive(Debug, Default)]
pub(super) struct KnownHolds(Mutex<HashMap<(Arc<str>, Owner), Fence>>);

impl KnownHolds {
    fn map(&self) -> MutexGuard<'_, HashMap<(Arc<str>, Owner), Fence>> {
        // Every update is one map operation, so a poisoned map is still consistent.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The fence of `owner`'s hold on `key`, as the acquire script's argument.
    pub(super) fn fence_arg(&self, key: &Arc<str>, owner: Owner) -> String {
        self.map()
            .get(&(Arc::clone(key), owner))
            .map(|fence| fence.0.to_string())
            .unwrap_or_default()
    }

    /// An acquire answered `fence` with `hold_count`: a count of 1 is a new hold.
    pub(super) fn acquired(&self, key: &Arc<str>, owner: Owner, fence: Fence, hold_count: u32) {
        if hold_count == 1 {
            self.map().insert((Arc::clone(key), owner), fence);
        }
    }

    /// A release of `owner`'s hold (of epoch `fence`, when given) answered `outcome`.
    pub(super) fn released(
        &self,
        key: &Arc<str>,
        owner: Owner,
        fence: Option<Fence>,
        outcome: Release,
    ) {
        if matches!(outcome, Release::StillHeld(_)) {
            return;
        }
        let mut map = self.map();
        let entry = (Arc::clone(key), owner);
        if fence.is_none() || map.get(&entry) == fence.as_ref() {
            map.remove(&entry);
        }
    }
}
