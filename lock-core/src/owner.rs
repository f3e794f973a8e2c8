//! Who holds a lock: the current tokio task, or else the current thread.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The identity that owns a hold on a lock, and so may re-enter and release it.
///
/// Inside a tokio task the owner is that task ([`tokio::task::try_id`]): tokio moves a task
/// between worker threads, so a thread id would be wrong. Outside any task (plain threads,
/// `spawn_blocking` excluded) it is the current thread. Every owner also carries a random
/// per-process nonce, so owners of different processes sharing a Redis server never compare equal.
///
/// Consequence worth knowing: futures polled concurrently *within one task* (`join!`, `select!`)
/// are one owner, so they re-enter each other's locks instead of excluding each other. Spawn a
/// task per contender when they must exclude each other.
///
/// ```
/// use lock_core::Owner;
///
/// let here = Owner::current();
/// assert_eq!(here, Owner::current());
/// let there = std::thread::spawn(Owner::current).join().unwrap();
/// assert_ne!(here, there);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Owner {
    process: u64,
    local: LocalOwner,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum LocalOwner {
    Task(tokio::task::Id),
    Thread(u64),
}

impl Owner {
    /// The owner of code running here: the current tokio task if any, else the current thread.
    pub fn current() -> Owner {
        let local = match tokio::task::try_id() {
            Some(task) => LocalOwner::Task(task),
            None => LocalOwner::Thread(current_thread_number()),
        };
        Owner {
            process: process_nonce(),
            local,
        }
    }

    /// A random number fixed for this process, shared by all its owners.
    pub fn process_nonce(&self) -> u64 {
        self.process
    }
}

/// `"<process nonce>-task-<id>"` or `"<process nonce>-thread-<n>"`: the form a shared backend
/// stores, unique across processes.
impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.local {
            LocalOwner::Task(id) => write!(f, "{:016x}-task-{id}", self.process),
            LocalOwner::Thread(n) => write!(f, "{:016x}-thread-{n}", self.process),
        }
    }
}

fn current_thread_number() -> u64 {
    // Our own counter: `ThreadId::as_u64` is unstable, and a plain number formats cheaply.
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local!(static NUMBER: Cell<u64> = const { Cell::new(0) });
    NUMBER.with(|n| {
        if n.get() == 0 {
            n.set(NEXT.fetch_add(1, Ordering::Relaxed));
        }
        n.get()
    })
}

fn process_nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        // RandomState is seeded from the OS; mixing in the pid and clock keeps forks distinct.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)
        {
            hasher.write_u128(since_epoch.as_nanos());
        }
        hasher.finish()
    })
}
