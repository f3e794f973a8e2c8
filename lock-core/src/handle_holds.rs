//! Holds taken through the lock handle without a guard (Hazelcast's `lock()`, `try_lock()`):
//! their fence, count and (without `exp`) watchdog ticket, kept until the matching `unlock()`.
//!
//! A guard carries its own fence and watchdog ticket. A handle hold has no value to carry them,
//! and any handle on the same key and backend may unlock it (as any Hazelcast proxy of a name
//! may). So they live here, one record per (backend, key, owner), with the count of that owner's
//! handle holds of one epoch: re-entering adds to the count and keeps the one ticket, which is
//! handed back to be dropped (renewal stops) when the count is back to zero, before the release
//! is sent, as a guard's is. The fence makes every unlock of a recorded hold fenced, as a guard's
//! release is: it never gives back a newer hold, and the backend learns which epoch ended (the
//! Redis backend's ghost detection needs that).
//!
//! Unlocks give handle holds back last-taken first (nested `lock()`/`unlock()` pairs): a renewed
//! hold is renewed until the count is back to zero, whatever holds with `exp` were taken on top.
//!
//! A record outlives the loss of its hold (found gone by the watchdog, or force-unlocked through
//! this process) so that `is_lease_lost()` and the next `unlock()` can tell; it goes with the
//! owner's last `unlock()` or its `release()`. Only records of fixed-lease holds that have surely
//! expired are swept without an unlock (a `lock()` with `exp` left to expire, never unlocked, is
//! a common pattern): amortised over later records, so they stay bounded by the live ones.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::backend::{Fence, SharedBackend};
use crate::owner::Owner;
use crate::watchdog::Ticket;

/// How a new handle hold lasts.
pub(crate) enum Kept {
    /// Renewed by the watchdog through this ticket (no `exp`).
    Renewed(Ticket),
    /// Until this long after its acquire (`exp`).
    Fixed(Duration),
    /// Until released (`never_expires`).
    Never,
}

/// One owner's handle holds of one epoch on one key.
struct Record {
    /// The hold epoch the holds belong to.
    fence: Fence,
    /// How many `lock()`s of the owner are not unlocked yet.
    count: u32,
    /// Where the lowest renewed hold sits (the count right after it was taken): the holds are
    /// renewed while the count is at least that. Unlocks give back the last-taken hold first.
    renewed_depth: Option<u32>,
    /// The watchdog's ticket while a renewed hold is on the record, until it is known lost
    /// without the watchdog's help (force-unlocked here, or an unlock found it gone).
    ticket: Option<Ticket>,
    /// A never-expiring hold was taken onto the record.
    never: bool,
    /// When the fixed-lease holds on the record have surely expired on the server.
    expires: Option<Instant>,
    /// Keeps the backend, and so its identity (the records' key), from being reused by another
    /// while the record lasts.
    _backend: SharedBackend,
}

impl Record {
    fn new(fence: Fence, kept: Kept, backend: &SharedBackend) -> Self {
        let mut record = Record {
            fence,
            count: 0,
            renewed_depth: None,
            ticket: None,
            never: false,
            expires: None,
            _backend: Arc::clone(backend),
        };
        drop(record.add(kept)); // a fresh record has no ticket to give back
        record
    }

    /// One more hold of the record's epoch. Returns the ticket no longer needed.
    fn add(&mut self, kept: Kept) -> Option<Ticket> {
        self.count = self.count.saturating_add(1);
        match kept {
            Kept::Renewed(ticket) => match self.renewed_depth {
                None => {
                    self.renewed_depth = Some(self.count);
                    self.ticket.replace(ticket)
                }
                // The backend re-entered this very epoch after the watchdog gave it up while
                // its renewals failed, so it is live after all: renew it again.
                Some(_) if self.is_lost() => self.ticket.replace(ticket),
                Some(_) => Some(ticket),
            },
            // Counted from after the acquire returned: the server's lease started before.
            Kept::Fixed(lease) => {
                let end = Instant::now() + lease;
                self.expires = Some(self.expires.map_or(end, |expires| expires.max(end)));
                None
            }
            Kept::Never => {
                self.never = true;
                None
            }
        }
    }

    /// A renewed hold is on the record, and it is lost.
    fn is_lost(&self) -> bool {
        match &self.ticket {
            Some(ticket) => ticket.is_lost(),
            None => self.renewed_depth.is_some(),
        }
    }

    /// Only fixed-lease holds are on the record, and they have surely expired.
    fn sweepable(&self, now: Instant) -> bool {
        self.renewed_depth.is_none()
            && !self.never
            && self.expires.is_some_and(|expires| expires <= now)
    }
}

/// Backend identity → key → owner → record.
type Records = HashMap<usize, HashMap<Arc<str>, HashMap<Owner, Record>>>;

/// The fewest records at which a sweep runs.
const MIN_SWEEP: usize = 1024;

#[derive(Default)]
struct Registry {
    records: Records,
    len: usize,
    /// A sweep runs when `len` reaches this (twice what the last sweep left, at least
    /// `MIN_SWEEP`): amortised O(1) per record.
    sweep_at: usize,
}

impl Registry {
    fn sweep(&mut self) {
        let now = Instant::now();
        let mut len = 0;
        self.records.retain(|_, keys| {
            keys.retain(|_, owners| {
                owners.retain(|_, record| !record.sweepable(now));
                len += owners.len();
                !owners.is_empty()
            });
            !keys.is_empty()
        });
        self.len = len;
        self.sweep_at = (2 * len).max(MIN_SWEEP);
    }
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a release of recorded holds needs: the epoch to release, the ticket to drop first
/// (when no recorded hold is left to renew), and whether a renewed hold was on the record.
pub(crate) struct Taken {
    pub(crate) fence: Fence,
    pub(crate) ticket: Option<Ticket>,
    pub(crate) renewed: bool,
}

/// What `Lock::is_renewed` and `Lock::is_lease_lost` read.
pub(crate) struct Status {
    pub(crate) renewed: bool,
    pub(crate) lost: bool,
}

/// Records a handle hold of `owner`: one more on the record of its epoch, or a new record (a
/// new epoch replaces the old one, whose holds are gone and cannot be released any more).
/// Returns the ticket that is no longer needed, for the caller to drop outside the lock.
pub(crate) fn record(
    backend: &SharedBackend,
    key: &Arc<str>,
    owner: Owner,
    fence: Fence,
    kept: Kept,
) -> Option<Ticket> {
    let mut registry = registry();
    let owners = registry
        .records
        .entry(backend.identity())
        .or_default()
        .entry(Arc::clone(key))
        .or_default();
    match owners.get_mut(&owner) {
        Some(record) if record.fence == fence => record.add(kept),
        Some(record) => std::mem::replace(record, Record::new(fence, kept, backend)).ticket,
        None => {
            owners.insert(owner, Record::new(fence, kept, backend));
            registry.len += 1;
            if registry.len >= registry.sweep_at.max(MIN_SWEEP) {
                registry.sweep();
            }
            None
        }
    }
}

fn get_mut<'r>(
    registry: &'r mut Registry,
    backend: &SharedBackend,
    key: &str,
    owner: Owner,
) -> Option<&'r mut Record> {
    registry
        .records
        .get_mut(&backend.identity())?
        .get_mut(key)?
        .get_mut(&owner)
}

/// Takes one of `owner`'s recorded holds on `key` off the record; the ticket comes with it when
/// it was the last. `None` when the owner has no recorded hold there.
pub(crate) fn take_one(backend: &SharedBackend, key: &str, owner: Owner) -> Option<Taken> {
    let mut registry = registry();
    let record = get_mut(&mut registry, backend, key, owner)?;
    record.count -= 1;
    if record.count == 0 {
        return remove(&mut registry, backend.identity(), key, owner);
    }
    let renewed = record.renewed_depth.is_some();
    // The last renewed hold goes: renewal stops (before the release is sent).
    let ticket = match record.renewed_depth {
        Some(depth) if record.count < depth => {
            record.renewed_depth = None;
            record.ticket.take()
        }
        _ => None,
    };
    Some(Taken {
        fence: record.fence,
        ticket,
        renewed,
    })
}

/// Takes all of `owner`'s recorded holds on `key` off the record, with their ticket.
pub(crate) fn take_all(backend: &SharedBackend, key: &str, owner: Owner) -> Option<Taken> {
    remove(&mut registry(), backend.identity(), key, owner)
}

fn remove(registry: &mut Registry, backend: usize, key: &str, owner: Owner) -> Option<Taken> {
    let keys = registry.records.get_mut(&backend)?;
    let owners = keys.get_mut(key)?;
    let record = owners.remove(&owner)?;
    if owners.is_empty() {
        keys.remove(key);
        if keys.is_empty() {
            registry.records.remove(&backend);
        }
    }
    registry.len -= 1;
    Some(Taken {
        fence: record.fence,
        renewed: record.renewed_depth.is_some(),
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
    let mut registry = registry();
    let record = get_mut(&mut registry, backend, key, owner)?;
    if record.fence != fence {
        return None;
    }
    record.ticket.take()
}

/// Marks every owner's recorded holds on `key` lost (the key was force-unlocked). Returns their
/// tickets to drop.
pub(crate) fn force_unlocked(backend: &SharedBackend, key: &str) -> Vec<Ticket> {
    let mut registry = registry();
    let Some(owners) = registry
        .records
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

/// The status of `owner`'s recorded holds on `key`, if it has any.
pub(crate) fn status(backend: &SharedBackend, key: &str, owner: Owner) -> Option<Status> {
    let registry = registry();
    let record = registry
        .records
        .get(&backend.identity())?
        .get(key)?
        .get(&owner)?;
    Some(Status {
        renewed: record.renewed_depth.is_some(),
        lost: record.is_lost(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryBackend;

    fn records_of(backend: &SharedBackend) -> usize {
        registry()
            .records
            .get(&backend.identity())
            .map_or(0, |keys| keys.values().map(HashMap::len).sum())
    }

    /// `lock()` with `exp`, left to expire and never unlocked: the records go once surely
    /// expired, amortised over later records; live ones (fixed or never expiring) stay.
    #[test]
    fn records_of_expired_fixed_leases_never_unlocked_are_swept() {
        let backend = MemoryBackend::shared();
        let owner = Owner::current();
        let add = |i: u64, kept: Kept| {
            let key: Arc<str> = format!("left-to-expire-{i}").into();
            drop(record(&backend, &key, owner, Fence(i), kept));
        };
        for i in 0..5_000 {
            add(i, Kept::Fixed(Duration::from_millis(1)));
        }
        std::thread::sleep(Duration::from_millis(10));
        for i in 5_000..5_010 {
            add(i, Kept::Never);
        }
        for i in 5_010..10_010 {
            add(i, Kept::Fixed(Duration::from_secs(60)));
        }
        assert_eq!(records_of(&backend), 5_010);
        for i in 5_000..10_010 {
            let key = format!("left-to-expire-{i}");
            assert!(take_one(&backend, &key, owner).is_some_and(|taken| taken.fence == Fence(i)));
        }
        assert_eq!(records_of(&backend), 0);
    }
}
