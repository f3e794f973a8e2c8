//! Per-key wake-ups, for every backend: a release wakes the waiters of its own key and nobody
//! else's.
//!
//! Wake-ups shared by a group of keys (stripes) would make every release of a busy key wake
//! the waiters of all the other keys of its group; on Redis each of them then makes a round
//! trip for nothing, so the busier a server, the more it is asked in vain. Here a waiter's
//! [`KeyedWakeups::listen`] registers under its key; [`KeyedWakeups::wake`] notifies that key's
//! listeners and forgets the key (a waiter that sleeps again listens again).

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use event_listener::{Event, EventListener};
use hashbrown::HashTable;

/// Shards of the key table, so that listens and wakes of different keys rarely meet on one
/// mutex.
const SHARDS: usize = 16;

/// A shard is swept of keys nobody listens on any more (their waiters took the key, timed out
/// or were dropped) when it has grown to twice its size after the last sweep, and at least
/// this: amortised O(1) per listen, and never more than about twice the keys that were live at
/// the shard's last sweep (a burst of waiters that all left is forgotten at the next sweep,
/// which new keys bring on).
const MIN_SWEEP_LEN: usize = 64;

pub(crate) struct KeyedWakeups {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    /// Keys in all shards: a wake finds none without taking a lock (the common case, a
    /// release nobody waits for).
    keys: AtomicUsize,
}

#[derive(Default)]
struct Shard {
    events: HashTable<(Box<str>, Event)>,
    swept_len: usize,
}

impl std::fmt::Debug for KeyedWakeups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedWakeups")
            .field("keys", &self.keys.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for KeyedWakeups {
    fn default() -> Self {
        KeyedWakeups {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            keys: AtomicUsize::new(0),
        }
    }
}

/// The shard of a key's hash, from bits that the shard's own `HashTable` does not use: it
/// takes its buckets from the low bits and its 7-bit tags from the top ones (bits 57 to 63), so
/// shards chosen by top bits would leave each table 8 tags instead of 128, and many more keys
/// compared for nothing.
fn shard_index(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl KeyedWakeups {
    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // No user code runs under these mutexes: a poisoned one is still consistent.
        self.shards[shard_index(hash)]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers for the next [`wake`](Self::wake) of `key` (or [`wake_everyone`](Self::wake_everyone)).
    /// Waiters listen *before* they try, so a release between the try and the sleep wakes them.
    pub(crate) fn listen(&self, key: &str) -> EventListener {
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        if let Some((_, event)) = shard.events.find(hash, |(known, _)| **known == *key) {
            return event.listen();
        }
        if shard.events.len() >= 2 * shard.swept_len.max(MIN_SWEEP_LEN) {
            let before = shard.events.len();
            shard
                .events
                .retain(|(_, event)| event.total_listeners() > 0);
            shard.swept_len = shard.events.len();
            self.keys
                .fetch_sub(before - shard.swept_len, Ordering::Relaxed);
        }
        let event = Event::new();
        let listener = event.listen();
        let hasher = &self.hasher;
        shard
            .events
            .insert_unique(hash, (key.into(), event), |(known, _)| {
                hasher.hash_one(known)
            });
        // Under the shard's lock, before the waiter's try: a release that the try misses
        // sees this count (the backend's own lock or the server orders the two).
        self.keys.fetch_add(1, Ordering::SeqCst);
        listener
    }

    /// Wakes the listeners of `key`, if any.
    pub(crate) fn wake(&self, key: &str) {
        if self.keys.load(Ordering::SeqCst) == 0 {
            return;
        }
        let hash = self.hasher.hash_one(key);
        let mut shard = self.shard(hash);
        let Ok(entry) = shard.events.find_entry(hash, |(known, _)| **known == *key) else {
            return;
        };
        let ((_, event), _) = entry.remove();
        drop(shard);
        self.keys.fetch_sub(1, Ordering::Relaxed);
        event.notify(usize::MAX);
    }

    /// Wakes every listener: after the wake-ups themselves may have been missed (a subscriber
    /// reconnecting), everyone re-checks.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))] // only the Redis subscriber misses any
    pub(crate) fn wake_everyone(&self) {
        for shard in self.shards.iter() {
            let events = {
                let mut shard = shard
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                shard.swept_len = 0;
                std::mem::take(&mut shard.events)
            };
            self.keys.fetch_sub(events.len(), Ordering::Relaxed);
            for (_, event) in events {
                event.notify(usize::MAX);
            }
        }
    }

    /// How many keys are registered (live listeners or not yet swept). Diagnostic, for tests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_listener::Listener;
    use std::time::{Duration, Instant};

    fn woken(listener: EventListener) -> bool {
        listener
            .wait_deadline(Instant::now() + Duration::from_millis(20))
            .is_some()
    }

    #[test]
    fn a_wake_reaches_its_keys_listeners_only() {
        let wakeups = KeyedWakeups::default();
        let mine = wakeups.listen("a");
        let also_mine = wakeups.listen("a");
        let others: Vec<_> = (0..200).map(|i| wakeups.listen(&format!("b{i}"))).collect();
        wakeups.wake("a");
        assert!(woken(mine));
        assert!(woken(also_mine));
        for other in others {
            assert!(!woken(other), "a wake of `a` woke another key's listener");
        }
    }

    #[test]
    fn a_listener_registered_after_a_wake_waits_for_the_next_one() {
        let wakeups = KeyedWakeups::default();
        let first = wakeups.listen("k");
        wakeups.wake("k");
        let second = wakeups.listen("k");
        assert!(woken(first));
        assert!(!woken(second));
        let third = wakeups.listen("k");
        wakeups.wake("k");
        assert!(woken(third));
    }

    #[test]
    fn wake_everyone_wakes_every_key() {
        let wakeups = KeyedWakeups::default();
        let listeners: Vec<_> = (0..100).map(|i| wakeups.listen(&format!("k{i}"))).collect();
        wakeups.wake_everyone();
        assert!(listeners.into_iter().all(woken));
        assert_eq!(wakeups.len(), 0);
    }

    /// The waiters' protocol (listen, try, sleep) against releases on other threads, with
    /// sweeps (keys of dropped listeners filling the same shards), `wake_everyone` and re-listens
    /// going on meanwhile: a waiter whose try failed is woken by the next release of its key,
    /// whichever of them runs first. Holders free their key within a fraction of a millisecond, so a waiter
    /// asleep for seconds missed its wake-up.
    #[test]
    fn no_wake_up_is_lost_to_racing_releases_sweeps_and_wake_everyone() {
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;

        const KEYS: usize = 3;
        const WAITERS: usize = 6;
        let wakeups = Arc::new(KeyedWakeups::default());
        let held: Arc<Vec<AtomicBool>> =
            Arc::new((0..KEYS).map(|_| AtomicBool::new(false)).collect());
        let until = Instant::now() + Duration::from_millis(1500);
        let stop = Arc::new(AtomicBool::new(false));
        let noise = {
            let (wakeups, stop) = (Arc::clone(&wakeups), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Keys nobody listens on any more: the shards grow and are swept.
                    drop(wakeups.listen(&format!("gone-{i}")));
                    if i % 50_000 == 0 {
                        wakeups.wake_everyone();
                    }
                    i += 1;
                }
            })
        };
        let waiters: Vec<_> = (0..WAITERS)
            .map(|w| {
                let (wakeups, held) = (Arc::clone(&wakeups), Arc::clone(&held));
                std::thread::spawn(move || {
                    let key = w % KEYS;
                    let name = format!("key-{key}");
                    let mut taken = 0u64;
                    while Instant::now() < until {
                        let listener = wakeups.listen(&name);
                        if held[key]
                            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                        {
                            drop(listener);
                            taken += 1;
                            // Long enough for the others to fall asleep, and for sweeps
                            // meanwhile.
                            std::thread::sleep(Duration::from_micros(100));
                            held[key].store(false, Ordering::SeqCst);
                            wakeups.wake(&name);
                            continue;
                        }
                        assert!(
                            listener
                                .wait_deadline(Instant::now() + Duration::from_secs(10))
                                .is_some(),
                            "a waiter of {name} slept 10 s past its releases"
                        );
                    }
                    taken
                })
            })
            .collect();
        let taken: u64 = waiters.into_iter().map(|w| w.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        noise.join().unwrap();
        assert!(taken > 0);
    }

    /// A listener that was woken and listens again is woken again by the next wake, also when
    /// other listeners of the key are still around from before (the entry is new each time).
    #[test]
    fn a_woken_listener_that_listens_again_is_woken_by_the_next_wake() {
        let wakeups = KeyedWakeups::default();
        for _ in 0..100 {
            let listener = wakeups.listen("k");
            wakeups.wake("k");
            assert!(woken(listener));
        }
        assert_eq!(wakeups.len(), 0);
        let first = wakeups.listen("k");
        wakeups.wake_everyone();
        let second = wakeups.listen("k");
        assert!(woken(first));
        wakeups.wake("k");
        assert!(woken(second));
        assert_eq!(wakeups.len(), 0);
    }

    /// Dropped listeners' keys are swept however they come: many rounds of distinct keys,
    /// then a few, then many again, stay bounded by the live ones (twice, per shard, at least
    /// `MIN_SWEEP_LEN`), also after a burst of live keys that left.
    #[test]
    fn keys_stay_bounded_after_a_burst_of_live_listeners_leaves() {
        let wakeups = KeyedWakeups::default();
        let burst: Vec<_> = (0..10_000)
            .map(|i| wakeups.listen(&format!("burst-{i}")))
            .collect();
        // One more key per shard with the burst still live: each shard sweeps at its size.
        drop(burst);
        for i in 0..100_000 {
            drop(wakeups.listen(&format!("after-{i}")));
        }
        let bound = SHARDS * 2 * MIN_SWEEP_LEN;
        assert!(
            wakeups.len() <= bound,
            "{} keys kept with no listener at all (bound {bound})",
            wakeups.len()
        );
    }

    /// The keys of one shard spread over all the tags of its table (hashbrown's top 7 bits).
    #[test]
    fn the_keys_of_one_shard_use_all_the_tags_of_its_table() {
        let hasher = foldhash::fast::RandomState::default();
        let mut tags = std::collections::HashSet::new();
        for i in 0..20_000 {
            let hash = hasher.hash_one(format!("key-{i}"));
            if shard_index(hash) == 0 {
                tags.insert(hash >> 57);
            }
        }
        assert!(
            tags.len() > 100,
            "the keys of shard 0 use {} tags of 128",
            tags.len()
        );
    }

    #[test]
    fn keys_nobody_listens_on_are_swept() {
        let wakeups = KeyedWakeups::default();
        for i in 0..20_000 {
            drop(wakeups.listen(&format!("gone-{i}")));
        }
        let live: Vec<_> = (0..10)
            .map(|i| wakeups.listen(&format!("live-{i}")))
            .collect();
        assert!(
            wakeups.len() <= SHARDS * 2 * MIN_SWEEP_LEN + live.len(),
            "{} keys kept for 10 listeners",
            wakeups.len()
        );
        for (i, listener) in live.into_iter().enumerate() {
            wakeups.wake(&format!("live-{i}"));
            assert!(woken(listener), "a swept key lost its live listener");
        }
    }
}
