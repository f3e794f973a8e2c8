//! The holds this process's owners have ended: what tells a re-entry from a ghost.
//!
//! Redis can bring back a hold its owner has ended since: a restart from an older snapshot, a
//! failover to a replica that lagged. The lock's value still names the owner, so the acquire
//! script alone would take the owner's next acquire for a re-entry and hand back the ghost's
//! old fence, below fences handed out since. But fences grow: every hold an owner takes after
//! ending one has a larger fence. So for each (key, owner) the process remembers the largest
//! fence of a hold the owner ended (a release that freed it, or found it gone), and passes it to
//! the acquire script, which re-enters only a hold with a larger fence and replaces one with a
//! smaller or equal fence (a ghost) by a new hold with a new fence.
//!
//! Nothing here decides that a live hold is a ghost, so concurrent acquires of one owner (futures
//! joined in one task) and any backend instance still re-enter. One map serves every backend of
//! the process, keyed by server and prefix. It is bounded: past `CAPACITY` entries, half are
//! forgotten, which only gives up ghost detection for those (key, owner) pairs.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::backend::{Fence, Release};
use crate::owner::Owner;

/// (server and prefix, key, owner) → the largest fence of a hold that owner ended.
type Map = HashMap<(Arc<str>, Arc<str>, Owner), Fence>;

/// Most entries kept: a few MiB.
const CAPACITY: usize = 65_536;

static ENDED: LazyLock<Mutex<Map>> = LazyLock::new(Default::default);

/// One backend's view of the process-wide map: its server and prefix.
#[derive(Debug)]
pub(super) struct KnownHolds {
    namespace: Arc<str>,
}

impl KnownHolds {
    /// For the backend at `redacted_url` (the password plays no part in which server it is)
    /// with key prefix `prefix`.
    pub(super) fn new(redacted_url: &str, prefix: &str) -> Self {
        KnownHolds {
            namespace: format!("{redacted_url}\n{prefix}").into(),
        }
    }

    fn map() -> MutexGuard<'static, Map> {
        // Every update is one map operation, so a poisoned map is still consistent.
        ENDED
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn entry(&self, key: &Arc<str>, owner: Owner) -> (Arc<str>, Arc<str>, Owner) {
        (Arc::clone(&self.namespace), Arc::clone(key), owner)
    }

    /// The acquire script's argument: the largest fence of a hold `owner` ended on `key`
    /// (`0` for none). A hold of `owner` with a fence up to it is a ghost.
    pub(super) fn ended_fence_arg(&self, key: &Arc<str>, owner: Owner) -> String {
        Self::map()
            .get(&self.entry(key, owner))
            .map_or_else(|| "0".to_owned(), |fence| fence.0.to_string())
    }

    /// A release of `owner`'s hold (of epoch `fence`, when given) answered `outcome`: a hold
    /// whose fence is known and that is now over (freed, or found gone) is remembered.
    pub(super) fn released(
        &self,
        key: &Arc<str>,
        owner: Owner,
        fence: Option<Fence>,
        outcome: Release,
    ) {
        let Some(fence) = fence else { return };
        if matches!(outcome, Release::StillHeld(_)) {
            return;
        }
        let mut map = Self::map();
        if map.len() >= CAPACITY {
            let mut keep = false;
            map.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        let ended = map.entry(self.entry(key, owner)).or_insert(fence);
        *ended = (*ended).max(fence);
    }
}
