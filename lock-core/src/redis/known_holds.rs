//! The holds this process knows its owners have: what tells a re-entry from a ghost.
//!
//! Redis can bring back a hold its owner has given up since: a restart from an older snapshot,
//! a failover to a replica that lagged. The lock's value still names the owner, so the acquire
//! script alone would take the owner's next acquire for a re-entry and hand back the ghost's
//! old fence, below fences handed out since. So each acquire names the fence of the hold the
//! process knows the owner has (none: `""`), and the script re-enters only that hold; a hold
//! of the owner with another fence is replaced by a new hold with a new fence.
//!
//! One map serves every backend of the process, keyed by the server and prefix too, so an owner
//! re-enters its hold through any backend instance on the same server. An entry is written when
//! an acquire takes a new hold and removed when a release frees it or finds it gone. One left
//! behind (a hold that expired, a guard that was forgotten) is harmless: it names a fence the key
//! no longer has, or the very hold the key still has.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::backend::{Fence, Release};
use crate::owner::Owner;

/// (server and prefix, key, owner) → fence.
type Map = HashMap<(Arc<str>, Arc<str>, Owner), Fence>;

static KNOWN: LazyLock<Mutex<Map>> = LazyLock::new(Default::default);

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
        KNOWN
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn entry(&self, key: &Arc<str>, owner: Owner) -> (Arc<str>, Arc<str>, Owner) {
        (Arc::clone(&self.namespace), Arc::clone(key), owner)
    }

    /// The fence of `owner`'s hold on `key`, as the acquire script's argument.
    pub(super) fn fence_arg(&self, key: &Arc<str>, owner: Owner) -> String {
        Self::map()
            .get(&self.entry(key, owner))
            .map(|fence| fence.0.to_string())
            .unwrap_or_default()
    }

    /// An acquire answered `fence` with `hold_count`: a count of 1 is a new hold.
    pub(super) fn acquired(&self, key: &Arc<str>, owner: Owner, fence: Fence, hold_count: u32) {
        if hold_count == 1 {
            Self::map().insert(self.entry(key, owner), fence);
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
        let entry = self.entry(key, owner);
        let mut map = Self::map();
        if fence.is_none() || map.get(&entry) == fence.as_ref() {
            map.remove(&entry);
        }
    }
}
