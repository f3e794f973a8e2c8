//! What `watch` makes of successive snapshots of the locks: the events between two (a hold
//! taken, a hold released, a hold found contended) and the running counts. Pure: the I/O is in
//! `watch.rs`.

use std::collections::{BTreeMap, HashSet};

use lock_core::Fence;

use crate::scan::FoundLock;

/// Something that happened to a lock between two snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new hold: the key was free (or held under another fence) in the last snapshot.
    Take(FoundLock),
    /// An acquire found this hold held: someone waits on it.
    Contended(FoundLock),
    /// The hold ended (released, expired or force-unlocked). `handed_off`: someone waited on it,
    /// so its release woke them.
    Release {
        /// The hold as last seen.
        last_seen: FoundLock,
        /// Whether it ended with someone waiting on it.
        handed_off: bool,
    },
}

/// Running counts since the watch began.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Holds taken.
    pub takes: u64,
    /// Holds ended.
    pub releases: u64,
    /// Holds an acquire found held (contention), each counted once.
    pub contended: u64,
    /// Holds that ended while someone waited on them (a hand-off to a waiter).
    pub handoffs: u64,
}

/// The locks as last seen, and the counts.
#[derive(Debug, Default)]
pub struct WatchState {
    held: BTreeMap<String, FoundLock>,
    /// Keys whose wake-up was heard since the last snapshot (a release with waiters).
    woken: HashSet<String>,
    /// The counts so far.
    pub counts: Counts,
}

impl WatchState {
    /// The state at the start: what is held now is not an event.
    pub fn starting_with(locks: Vec<FoundLock>) -> Self {
        WatchState {
            held: locks
                .into_iter()
                .map(|lock| (lock.key.clone(), lock))
                .collect(),
            ..Default::default()
        }
    }

    /// The locks as last seen, by key.
    pub fn held(&self) -> impl Iterator<Item = &FoundLock> {
        self.held.values()
    }

    /// A wake-up was published for `key`: its hold ended with someone waiting (a hand-off),
    /// whatever the next snapshot shows (the key may be taken again by then).
    pub fn heard_wakeup(&mut self, key: &str) {
        self.woken.insert(key.to_owned());
    }

    /// The events from the last snapshot to `locks`, counted. A hold taken and ended between
    /// two snapshots is not seen.
    pub fn advance(&mut self, locks: Vec<FoundLock>) -> Vec<Event> {
        let now: BTreeMap<String, FoundLock> = locks
            .into_iter()
            .map(|lock| (lock.key.clone(), lock))
            .collect();
        let before = std::mem::replace(&mut self.held, now);
        let woken = std::mem::take(&mut self.woken);
        let mut events = Vec::new();
        for (key, old) in &before {
            if self.held.get(key).map(fence) != Some(fence(old)) {
                events.push(Event::Release {
                    last_seen: old.clone(),
                    handed_off: old.lock.hold.waited_on || woken.contains(key),
                });
            }
        }
        for (key, new) in &self.held {
            match before.get(key) {
                Some(old) if fence(old) == fence(new) => {
                    if new.lock.hold.waited_on && !old.lock.hold.waited_on {
                        events.push(Event::Contended(new.clone()));
                    }
                }
                _ => {
                    events.push(Event::Take(new.clone()));
                    if new.lock.hold.waited_on {
                        events.push(Event::Contended(new.clone()));
                    }
                }
            }
        }
        for event in &events {
            match event {
                Event::Take(_) => self.counts.takes += 1,
                Event::Contended(_) => self.counts.contended += 1,
                Event::Release { handed_off, .. } => {
                    self.counts.releases += 1;
                    self.counts.handoffs += u64::from(*handed_off);
                }
            }
        }
        events
    }
}

fn fence(lock: &FoundLock) -> Fence {
    lock.lock.hold.fence
}

#[cfg(test)]
mod tests {
    use super::{Counts, Event, WatchState};
    use crate::scan::FoundLock;
    use lock_core::{
        __operate::{StoredHold, StoredLock},
        Fence, RemainingLease,
    };

    fn lock(key: &str, fence: u64, waited_on: bool) -> FoundLock {
        FoundLock {
            key: key.to_owned(),
            redis_key: format!("lockwright:{{{key}}}"),
            server: "127.0.0.1:6379".to_owned(),
            lock: StoredLock {
                hold: StoredHold {
                    owner: "00ab-task-1".to_owned(),
                    fence: Fence(fence),
                    hold_count: 1,
                    waited_on,
                },
                remaining: RemainingLease::Unlimited,
                held_at_least: None,
            },
        }
    }

    fn kinds(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|event| match event {
                Event::Take(found) => format!("take {} {}", found.key, found.lock.hold.fence),
                Event::Contended(found) => format!("contended {}", found.key),
                Event::Release {
                    last_seen,
                    handed_off,
                } => {
                    format!(
                        "release {} {} {handed_off}",
                        last_seen.key, last_seen.lock.hold.fence
                    )
                }
            })
            .collect()
    }

    #[test]
    fn takes_contention_hand_offs_and_releases_are_told_and_counted() {
        let mut state = WatchState::starting_with(vec![lock("a", 1, false)]);
        assert!(state.advance(vec![lock("a", 1, false)]).is_empty());
        assert_eq!(
            kinds(&state.advance(vec![lock("a", 1, true)])),
            ["contended a"]
        );
        // Handed to a waiter between two snapshots: the old hold ends, a new one begins.
        assert_eq!(
            kinds(&state.advance(vec![lock("a", 2, false), lock("b", 7, false)])),
            ["release a 1 true", "take a 2", "take b 7"]
        );
        state.heard_wakeup("b");
        assert_eq!(
            kinds(&state.advance(vec![])),
            ["release a 2 false", "release b 7 true"]
        );
        assert_eq!(
            state.counts,
            Counts {
                takes: 2,
                releases: 3,
                contended: 1,
                handoffs: 2
            }
        );
    }
}
