//! Lanes: where an operation's connection and batch sender run, so that a caller on a
//! multi-thread tokio runtime does its Redis I/O on its own runtime, with no hop to another
//! thread and back.
//!
//! The home lane runs on the backend's runtime (its own, or the one given with
//! [`RedisConfig::runtime`](super::RedisConfig::runtime)) and takes its connections from the
//! deployment's pool. With no runtime given, a caller on another multi-thread runtime gets a
//! lane of its own there: its own connections (their driver tasks live where they were made)
//! and its own queues, whose batches its runtime sends. That runtime shutting down ends only
//! its lane (its callers end with it); later callers elsewhere are not affected.
//!
//! The home lane keeps what must outlive any caller's runtime: the blocking API (its thread
//! does nothing but wait, it may have no runtime), callers on a current-thread runtime (whose
//! one thread may be the one blocking), guards' releases on drop and the undoing of abandoned
//! acquires (nobody waits for them, and a runtime shutting down must not cut them off), the
//! lease watchdog's renewals, wake-ups, and on a Cluster everything (a lane there would need a
//! connection to every node and a queue per hash slot for each runtime). Timers stay on the
//! home runtime too: an operation whose caller left is finished there, and a timer of a runtime
//! that shut down panics when polled.
//!
//! Order is unchanged: a caller's operations on a key are issued one after another, and a
//! release on drop is waited for by this process's next operation on its key, whichever lanes
//! carry them.
//!
//! A caller's runtime shutting down drops its tasks: the callers' futures, and the senders of
//! its lane's queues. Each moves to the home runtime unfinished (`Detachable`). A moved sender
//! sends what it had not sent yet through the home lane ([`RedisBackend::sending_lane`]): never
//! sent, it may go out now. A call already sent through the lane's connections gets no reply
//! (their driver tasks are gone): it may have landed, so it is not sent again (a second release
//! could take away another hold of the same owner, a second acquire take the lock twice); each
//! of its operations fails, and one whose failure may leave a hold behind (an acquire that may
//! have taken the lock, a release that may not have happened) is logged as an error naming its
//! key (`Unanswered`, `RedisBackend::run_release`).

use std::sync::{Arc, RwLock, Weak};

use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::Mutex as AsyncMutex;

use super::runtime::RuntimeGone;
use super::{batch, topology, RedisBackend};

/// Most callers' runtimes with a lane at once; callers on others use the home lane.
const MAX_CALLER_LANES: usize = 8;

/// Where an operation goes: the lane of where it is issued, or home whatever the caller.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Route {
    /// The caller's lane (see [`RedisBackend::lane_here`]).
    Here,
    /// The home lane: for operations nobody waits for (a release on drop, an undo).
    Home,
}

/// One runtime's connections and queues.
pub(super) struct Lane {
    /// Where its connections' driver tasks and its batches' senders run.
    pub(super) handle: Handle,
    /// Set once that runtime has shut down.
    pub(super) gone: Arc<RuntimeGone>,
    /// One connection per slot of keys (see `RedisBackend::slot_of`).
    pub(super) slots: Box<[AsyncMutex<Option<topology::Held>>]>,
    /// One queue of operations per slot, or per hash slot on a cluster (see `batch`).
    pub(super) queues: Box<[batch::Queue]>,
    /// Home: connections from the deployment's pool. A caller's lane makes its own, so that
    /// their drivers run on its runtime (a pooled one may have been made on another).
    pub(super) pooled: bool,
    /// A caller's lane: the id of its runtime. `None` for home.
    caller_runtime: Option<tokio::runtime::Id>,
}

impl Lane {
    pub(super) fn new(
        handle: Handle,
        gone: Arc<RuntimeGone>,
        slots: usize,
        queues: usize,
        pooled: bool,
    ) -> Self {
        Lane {
            caller_runtime: (!pooled).then(|| handle.id()),
            handle,
            gone,
            slots: (0..slots).map(|_| AsyncMutex::new(None)).collect(),
            queues: (0..queues).map(|_| Default::default()).collect(),
            pooled,
        }
    }

    pub(super) fn is_gone(&self) -> bool {
        self.gone.flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Why nothing more runs on this lane once [`Self::is_gone`].
    pub(super) fn gone_reason(&self) -> &'static str {
        if self.pooled {
            "the runtime given to RedisConfig::runtime has shut down"
        } else {
            "the caller's tokio runtime has shut down"
        }
    }
}

/// The backend's lanes: home, and those of its callers' runtimes.
pub(super) struct Lanes {
    pub(super) home: Arc<Lane>,
    home_id: tokio::runtime::Id,
    /// `None` when callers get no lanes of their own (a runtime was given, or a cluster).
    callers: Option<Arc<CallerLanes>>,
}

#[derive(Default)]
struct CallerLanes {
    lanes: RwLock<Vec<(tokio::runtime::Id, Arc<Lane>)>>,
}

impl CallerLanes {
    fn find(&self, id: tokio::runtime::Id) -> Option<Arc<Lane>> {
        let lanes = self
            .lanes
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lanes
            .iter()
            .find(|(lane_id, _)| *lane_id == id)
            .map(|(_, lane)| Arc::clone(lane))
    }

    fn remove(&self, id: tokio::runtime::Id) {
        let mut lanes = self
            .lanes
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        lanes.retain(|(lane_id, _)| *lane_id != id);
    }
}

impl Lanes {
    pub(super) fn new(home: Lane, callers_get_lanes: bool) -> Self {
        Lanes {
            home_id: home.handle.id(),
            home: Arc::new(home),
            callers: callers_get_lanes.then(Default::default),
        }
    }
}

/// Lives in a task on a caller's runtime: dropped when that runtime shuts down (or when the
/// backend closes), it marks the lane gone and forgets it.
struct LaneWatch {
    gone: Arc<RuntimeGone>,
    callers: Weak<CallerLanes>,
    id: tokio::runtime::Id,
}

impl Drop for LaneWatch {
    fn drop(&mut self) {
        self.gone
            .flag
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(callers) = self.callers.upgrade() {
            callers.remove(self.id);
        }
    }
}

impl RedisBackend {
    /// The lane to send a call of `lane`'s queue through: `lane` itself while its runtime runs
    /// the send; home once the send has moved off it. A caller's runtime that shuts down drops
    /// its tasks, and the rest of a send it was running moves to the backend's runtime (see
    /// `Detachable`): what it has not sent yet then goes out through home, never through
    /// connections whose driver tasks are gone with that runtime.
    pub(super) fn sending_lane<'a>(&'a self, lane: &'a Lane) -> &'a Lane {
        let Some(id) = lane.caller_runtime else {
            return lane; // home
        };
        let here = Handle::try_current().is_ok_and(|current| current.id() == id);
        if here && !lane.is_gone() {
            lane
        } else {
            &self.inner.lanes.home
        }
    }

    /// The lane for `route` from here: home, or for an operation issued by a task of a
    /// multi-thread runtime other than the backend's (and not through the blocking API), that
    /// runtime's lane, made on first use.
    pub(super) fn lane(&self, route: Route) -> Arc<Lane> {
        let lanes = &self.inner.lanes;
        let home = || Arc::clone(&lanes.home);
        let Some(callers) = lanes.callers.as_ref().filter(|_| route == Route::Here) else {
            return home();
        };
        if crate::block_on::polled_by_block_on() {
            return home();
        }
        let Ok(current) = Handle::try_current() else {
            return home();
        };
        if current.runtime_flavor() != RuntimeFlavor::MultiThread {
            return home();
        }
        let id = current.id();
        if id == lanes.home_id {
            return home();
        }
        if let Some(lane) = callers.find(id) {
            return if lane.is_gone() { home() } else { lane };
        }
        self.new_caller_lane(callers, current, id)
            .unwrap_or_else(home)
    }

    /// A lane on `runtime` (a caller's), watched so that it ends with that runtime; `None` when
    /// there are as many lanes as allowed, or the runtime is already shutting down.
    fn new_caller_lane(
        &self,
        callers: &Arc<CallerLanes>,
        runtime: Handle,
        id: tokio::runtime::Id,
    ) -> Option<Arc<Lane>> {
        let lane = {
            let mut lanes = callers
                .lanes
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some((_, lane)) = lanes.iter().find(|(lane_id, _)| *lane_id == id) {
                return Some(Arc::clone(lane)); // another thread of that runtime made it
            }
            if lanes.len() >= MAX_CALLER_LANES {
                return None;
            }
            let config = &self.inner.config;
            let lane = Arc::new(Lane::new(
                runtime.clone(),
                Arc::default(),
                config.pool_size,
                Self::queue_count(config, false),
                false,
            ));
            lanes.push((id, Arc::clone(&lane)));
            lane
        };
        // Spawned outside the lock: on a runtime shutting down the task is dropped at once,
        // and its drop takes the lock.
        let watch = LaneWatch {
            gone: Arc::clone(&lane.gone),
            callers: Arc::downgrade(callers),
            id,
        };
        let closing = self.inner.closing.listen();
        drop(runtime.spawn(async move {
            let _watch = watch;
            closing.await;
        }));
        (!lane.is_gone()).then_some(lane)
    }
}
