//! Holds taken through the lock handle without a guard (Hazelcast's `lock()`, `try_lock()`):
//! the watchdog tickets of those acquired without `exp`, kept until the matching `unlock()`.
//!
//! A guard carries its own watchdog ticket. A handle hold has no value to carry one, and any
//! handle on the same key and backend may unlock it (as any Hazelcast proxy of a name may). So
//! the tickets live here, one per (backend, key, owner), with the count of that owner's handle
//! holds: re-entering adds to the count and keeps the one ticket, and the ticket is handed back
//! to be dropped (renewal stops) when the count is back to zero, before the release is sent, as
//! a guard's is. Holds with `exp` or `never_expires` need no renewal: they are recorded only as
//! one more on the count of a renewed hold they re-enter, since an unlock gives back the
//! last-taken handle hold (nested `lock()`/`unlock()` pairs), and the renewed one below must be
//! renewed until its own unlock. On their own they are not recorded (a `lock()` with `exp` that
//! is never unlocked, left to expire, leaves nothing behind).
//!
//! A record outlives the loss of its hold (found gone by the watchdog, or force-unlocked through
//! this process) so that `is_lease_lost()` and the next `unlock()` can tell; it goes with the
//! owner's last `unlock()` or its `release()`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

use crate::backend::{Fence, SharedBackend};
use crate::owner::Owner;
use crate::watchdog::Ticket;

/// One owner's renewed handle holds on one key.
struct Record {
    /// The hold epoch the holds belong to.
    fence: Fence,
    /// How many `lock()`s of the owner are not unlocked yet.
    count: u32,
    /// `None` once the hold is known lost without the watchdog's help (force-unlocked here, or
    /// an unlock found it gone): nothing renews it any more.
    ticket: Option<Ticket>,
    /// Keeps the backend, and so its identity (the records' key), from being reused by another
    /// while the record lasts.
    _backend: SharedBackend,
}

impl Record {
    fn new(fence: Fence, ticket: Ticket, backend: &SharedBackend) -> Self {
        Record {
            fence,
            count: 1,
            ticket: Some(ticket),
            _backend: Arc::clone(backend),
        }
    }

    fn is_lost(&self) -> bool {
        match &self.ticket {
            Some(ticket) => ticket.is_lost(),
            None => true,
        }
    }
}

/// Backend identity → key → owner → record.
type Records = HashMap<usize, HashMap<Arc<str>, HashMap<Owner, Record>>>;

static RECORDS: LazyLock<Mutex<Records>> = LazyLock::new(Default::default);

fn records() -> MutexGuard<'static, Records> {
    RECORDS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a release of recorded holds needs: the epoch to release, and the ticket to drop first
/// (when no recorded hold is left to renew).
pub(crate) struct Taken {
    pub(crate) fence: Fence,
    pub(crate) ticket: Option<Ticket>,
}

/// Records a renewed handle hold of `owner` (with the `ticket` that renews it), or one more of
/// a recorded hold of the same epoch. Returns the ticket that is no longer needed, for the
/// caller to drop outside the lock.
pub(crate) fn record(
    backend: &SharedBackend,
    key: &Arc<str>,
    owner: Owner,
    fence: Fence,
    ticket: Ticket,
) -> Option<Ticket> {
    let mut records = records();
    let owners = records
        .entry(backend.identity())
        .or_default()
        .entry(Arc::clone(key))
        .or_default();
    match owners.get_mut(&owner) {
        Some(record) if record.fence == fence => {
            record.count = record.count.saturating_add(1);
            if record.is_lost() {
                // The backend re-entered this very epoch, so the hold is live after all (the
                // watchdog gave it up while its renewals failed): renew it again.
                record.ticket.replace(ticket)
            } else {
                Some(ticket)
            }
        }
        // A new epoch: the recorded one is gone (and cannot be released any more).
        Some(record) => std::mem::replace(record, Record::new(fence, ticket, backend)).ticket,
        None => {
            owners.insert(owner, Record::new(fence, ticket, backend));
            None
        }
    }
}

/// Counts a handle hold that needs no renewal (taken with `exp` or `never_expires`) on the
/// record of a renewed one of the same epoch, if there is one: unlocks give handle holds back
/// last-taken first, so the renewed hold below it is renewed until its own unlock.
pub(crate) fn join(backend: &SharedBackend, key: &str, owner: Owner, fence: Fence) {
    let mut records = records();
    let record = records
        .get_mut(&backend.identity())
        .and_then(|keys| keys.get_mut(key))
        .and_then(|owners| owners.get_mut(&owner));
    if let Some(record) = record.filter(|record| record.fence == fence) {
        record.count = record.count.saturating_add(1);
    }
}

/// Takes one of `owner`'s recorded holds on `key` off the record; the ticket comes with it when
/// it was the last. `None` when the owner has no recorded hold there.
pub(crate) fn take_one(backend: &SharedBackend, key: &str, owner: Owner) -> Option<Taken> {
    let mut records = records();
    let record = records
        .get_mut(&backend.identity())?
        .get_mut(key)?
        .get_mut(&owner)?;
    record.count -= 1;
    if record.count > 0 {
        return Some(Taken {
            fence: record.fence,
            ticket: None,
        });
    }
    remove(&mut records, backend.identity(), key, owner)
}

/// Takes all of `owner`'s recorded holds on `key` off the record, with their ticket.
pub(crate) fn take_all(backend: &SharedBackend, key: &str, owner: Owner) -> Option<Taken> {
    remove(&mut records(), backend.identity(), key, owner)
}

fn remove(records: &mut Records, backend: usize, key: &str, owner: Owner) -> Option<Taken> {
    let keys = records.get_mut(&backend)?;
    let owners = keys.get_mut(key)?;
    let record = owners.remove(&owner)?;
    if owners.is_empty() {
        keys.remove(key);
        if keys.is_empty() {
            records.remove(&backend);
        }
    }
    Some(Taken {
        fence: record.fence,
        ticket: record.ticket,
    })
}

/// Marks `owner`'s recorded holds of epoch `fence` on `key` lost (an unlock found the hold
/// gone): they stay on the record, so each later unlock reports the loss too. Returns the
/// ticket to drop.
pub(crate) fn lost(
    backend: &SharedBackend,
    key: &str,
    owner: Owner,
    fence: Fence,
) -> Option<Ticket> {
    let mut records = records();
    let record = records
        .get_mut(&backend.identity())?
        .get_mut(key)?
        .get_mut(&owner)?;
    if record.fence != fence {
        return None;
    }
    record.ticket.take()
}

/// Marks every owner's recorded holds on `key` lost (the key was force-unlocked). Returns their
/// tickets to drop.
pub(crate) fn force_unlocked(backend: &SharedBackend, key: &str) -> Vec<Ticket> {
    let mut records = records();
    let Some(owners) = records
        .get_mut(&backend.identity())
        .and_then(|keys| keys.get_mut(key))
    else {
        return Vec::new();
    };
    owners
        .values_mut()
        .filter_map(|record| record.ticket.take())
        .collect()
}

/// `Some(lost)` when `owner` has recorded holds on `key`: whether their hold is lost.
pub(crate) fn is_lost(backend: &SharedBackend, key: &str, owner: Owner) -> Option<bool> {
    let records = records();
    let record = records.get(&backend.identity())?.get(key)?.get(&owner)?;
    Some(record.is_lost())
}
