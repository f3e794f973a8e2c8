//! Who holds a lock: the current tokio task, or else the current thread.

use std::cell::Cell;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// The identity that owns a hold on a lock, and so may re-enter and release it.
///
/// Inside a tokio task the owner is that task ([`tokio::task::try_id`]): tokio moves a task
/// between worker threads, so a thread id would be wrong. Outside any task (plain threads,
/// `spawn_blocking` excluded) it is the current thread. Every owner also carries a random
/// per-process nonce, so owners of different processes sharing a Redis server never compare equal.
/// That holds for a child made by `fork()` too, although it inherits its parent's memory (the
/// nonce, thread numbers, task ids): on Unix a `pthread_atfork` handler forgets the nonce in the
/// child, whose next `Owner::current()` makes its own (mixing in its new pid). Holds the parent
/// had before the fork are not the child's. A child made by a raw `clone` system call, which
/// runs no fork handlers, is not covered.
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

    /// A random number fixed for this process, shared by all its owners (a child made by
    /// `fork()` makes its own).
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

/// The process nonce; 0 until made, and again in a child right after `fork()`.
static NONCE: AtomicU64 = AtomicU64::new(0);

fn process_nonce() -> u64 {
    match NONCE.load(Ordering::Relaxed) {
        0 => make_process_nonce(),
        nonce => nonce,
    }
}

#[cold]
fn make_process_nonce() -> u64 {
    // Before any nonce is published: a fork after that resets it in the child.
    #[cfg(unix)]
    forget_the_nonce_in_forked_children();
    // RandomState is seeded from the OS (but a forked child inherits its per-thread keys);
    // the pid keeps a parent and its forks distinct, the clock adds to it.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    let fresh = hasher.finish().max(1);
    // Threads racing here all get the first one published.
    match NONCE.compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => fresh,
        Err(published) => published,
    }
}

/// Registers (once, in practice) a `pthread_atfork` child handler that resets the nonce, so a
/// forked child makes its own on its next [`Owner::current`] instead of sharing its parent's.
///
/// Not a `std::sync::Once`: a fork while another thread is registering would leave the child's
/// `Once` running for ever, and its first `Owner::current` waiting for ever. A flag set once
/// registered instead: a child that sees it set inherited the handler (handlers survive
/// `fork()`); threads that see it unset (racing the first caller, or in a child forked during
/// the registration) register too, and a handler registered twice just stores 0 twice.
#[cfg(unix)]
fn forget_the_nonce_in_forked_children() {
    use std::sync::atomic::AtomicBool;

    extern "C" fn in_child() {
        // Async-signal-safe: one atomic store.
        NONCE.store(0, Ordering::Relaxed);
    }

    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if !REGISTERED.load(Ordering::Acquire) {
        // SAFETY: registers a handler that only stores to an atomic; it is a function of this
        // crate, there as long as the program.
        if unsafe { libc::pthread_atfork(None, None, Some(in_child)) } == 0 {
            REGISTERED.store(true, Ordering::Release);
        }
    }
}
