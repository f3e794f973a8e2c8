//! Metrics and tracing of lock operations: the metric names, and the one place where each event
//! is recorded.
//!
//! **Metrics** go through the [`metrics`](https://docs.rs/metrics) facade, so any exporter works
//! (Prometheus, StatsD, OpenTelemetry...): install its recorder at start-up, before locking, and
//! call [`describe_metrics`] to give it the units and help texts. With no recorder installed,
//! each event is a call into the facade's no-op recorder: no allocation, no formatting, and no
//! clock read beyond one for an acquire that had to wait. Labels are static: `backend` is the
//! backend's [`kind`](crate::Backend::kind) (`memory`, `redis`), and `outcome` or `operation`
//! come from the fixed sets below. A lock's key is never a label (one series per key would grow
//! without bound).
//!
//! | name | type | labels | what |
//! |---|---|---|---|
//! | [`ACQUIRE_ATTEMPTS`] | counter | `backend` | acquire calls with valid arguments, counted when they start |
//! | [`ACQUIRED`] | counter | `backend` | acquires that took the lock or re-entered their own hold |
//! | [`ACQUIRE_REFUSED`] | counter | `backend` | acquires that found the lock held and were not to wait (`nowait`, `try_acquire`, `try_lock`) |
//! | [`ACQUIRE_TIMED_OUT`] | counter | `backend` | acquires whose wait timeout ran out |
//! | [`ACQUIRE_WAIT_SECONDS`] | histogram, seconds | `backend`, `outcome` = `acquired` / `timed_out` | how long an acquire waited for another owner: 0 when the first try took it |
//! | [`HOLD_SECONDS`] | histogram, seconds | `backend` | from acquire to the guard's release (explicit, on drop, or at the end of a `#[locked]` body) |
//! | [`LEASE_LOST`] | counter | `backend` | holds found gone while their guard lived (by the watchdog or by the guard's release or extend), each counted once |
//! | [`RENEWALS`] | counter | `backend` | holds the lease watchdog renewed |
//! | [`RENEWAL_FAILURES`] | counter | `backend` | hold renewals that got no answer (backend error): the watchdog tries again while the lease runs |
//! | [`BACKEND_ERRORS`] | counter | `backend`, `operation` = `acquire` / `release` / `extend` / `inspect` / `force_unlock` / `renew` / `pool_acquire` / `pool_release` / `pool_extend` / `pool_state` / `pool_force_release` | backend calls that failed |
//! | [`POOL_ACQUIRE_ATTEMPTS`] | counter | `backend` | pool acquire calls with valid arguments ([`Pool`](crate::Pool), `#[pooled]`) |
//! | [`POOL_ACQUIRED`] | counter | `backend` | pool acquires that took a slot |
//! | [`POOL_ACQUIRE_REFUSED`] | counter | `backend` | pool acquires that found every slot taken and were not to wait |
//! | [`POOL_ACQUIRE_TIMED_OUT`] | counter | `backend` | pool acquires whose wait timeout ran out |
//! | [`POOL_ACQUIRE_WAIT_SECONDS`] | histogram, seconds | `backend`, `outcome` = `acquired` / `timed_out` | how long a pool acquire waited for a slot |
//! | [`POOL_HOLD_SECONDS`] | histogram, seconds | `backend` | from a slot's acquire to its guard's release |
//!
//! Pool slots are holds too: [`LEASE_LOST`], [`RENEWALS`] and [`RENEWAL_FAILURES`] count them
//! with the locks' holds. A pool acquire ends as exactly one of [`POOL_ACQUIRED`],
//! [`POOL_ACQUIRE_REFUSED`], [`POOL_ACQUIRE_TIMED_OUT`] or a [`BACKEND_ERRORS`] with
//! `operation="pool_acquire"` (a size mismatch or an invalid argument counts as none).
//!
//! An acquire started ([`ACQUIRE_ATTEMPTS`]) ends as exactly one of [`ACQUIRED`],
//! [`ACQUIRE_REFUSED`], [`ACQUIRE_TIMED_OUT`] or a [`BACKEND_ERRORS`] with `operation="acquire"`;
//! the difference is the acquires still waiting. Holds taken without a guard (`Lock::lock`,
//! `try_lock`) have no hold time.
//!
//! **Tracing**: every acquire is a `DEBUG` span [`ACQUIRE_SPAN`] with the fields `key`,
//! `backend`, `fence`, `waited_ms` and `outcome` (`acquired`, `refused`, `timed_out`, `error`),
//! and every release a `DEBUG` span [`RELEASE_SPAN`] with `key`, `backend`, `fence` and `outcome`
//! (`released`, `dropped`, `lease_lost`, `not_owner`, `not_locked`, `error`); each ends with a
//! `DEBUG` event carrying the outcome. A lost lease is a `WARN` event (key, fence, backend, who
//! found it). A backend error returned to the caller is a `DEBUG` event (the caller has the error
//! itself; errors nobody receives, such as a failed renewal, are logged at `WARN`). Pools have
//! the same spans under their own names, [`POOL_ACQUIRE_SPAN`] and [`POOL_RELEASE_SPAN`], whose
//! `fence` field is the slot's token (release outcomes `released`, `dropped`, `lease_lost`,
//! `error`). Nothing is
//! logged at `INFO` per operation. Fields carry keys, fences and errors, whose texts never
//! contain a password.
//!
//! ```
//! use lock_core::{telemetry, Lock, MemoryBackend};
//!
//! // Install a recorder first (an exporter's), then describe the metrics to it:
//! telemetry::describe_metrics();
//! let lock = Lock::with_backend("report", &MemoryBackend::shared());
//! drop(lock.acquire_blocking()?); // one attempt, one acquired, one hold time
//! assert_eq!(telemetry::ACQUIRED, "lockwright_acquired_total");
//! # Ok::<(), lock_core::LockError>(())
//! ```

use std::cell::Cell;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use metrics::{Histogram, IntoF64, Key, Label, Level, Metadata, Recorder, Unit};
use tracing::field::Empty;
use tracing::Span;

use crate::backend::Fence;
use crate::error::{LockError, Result};
use crate::guard::LockGuard;

/// Counter: acquire calls with valid arguments, counted when they start (every acquiring method,
/// blocking or async, and `#[locked]` calls). Label `backend`.
pub const ACQUIRE_ATTEMPTS: &str = "lockwright_acquire_attempts_total";
/// Counter: acquires that took the lock or re-entered their owner's hold. Label `backend`.
pub const ACQUIRED: &str = "lockwright_acquired_total";
/// Counter: acquires that found the lock held by another owner and were not to wait
/// ([`LockError::Locked`] with `nowait`, `None` from `try_acquire`, `false` from `try_lock`).
/// Label `backend`.
pub const ACQUIRE_REFUSED: &str = "lockwright_acquire_refused_total";
/// Counter: acquires whose wait timeout ran out with the lock still held
/// ([`LockError::TimedOut`], `false` from `try_lock_for`). Label `backend`.
pub const ACQUIRE_TIMED_OUT: &str = "lockwright_acquire_timed_out_total";
/// Histogram, seconds: how long an acquire waited for another owner to let go, from the first
/// try that found the lock held until it returned; 0 when the first try took it. Labels
/// `backend`, `outcome` (`acquired`, `timed_out`).
pub const ACQUIRE_WAIT_SECONDS: &str = "lockwright_acquire_wait_seconds";
/// Histogram, seconds: how long a guard held its lock, from the acquire to its release
/// (explicit, on drop, or at the end of a `#[locked]` body). Label `backend`.
pub const HOLD_SECONDS: &str = "lockwright_hold_seconds";
/// Counter: holds found gone while their guard lived (lease expired, force-unlocked, key
/// deleted), found by the lease watchdog or by the guard's release or extend; each hold counted
/// once. Label `backend`.
pub const LEASE_LOST: &str = "lockwright_lease_lost_total";
/// Counter: holds the lease watchdog renewed. Label `backend`.
pub const RENEWALS: &str = "lockwright_renewals_total";
/// Counter: hold renewals that got no answer (the backend failed): the watchdog tries again
/// while the lease runs. Label `backend`.
pub const RENEWAL_FAILURES: &str = "lockwright_renewal_failures_total";
/// Counter: backend calls that failed ([`LockError::Backend`], [`LockError::Connection`],
/// [`LockError::NotReplicated`]). Labels `backend`, `operation` (`acquire`, `release`, `extend`,
/// `inspect`, `force_unlock`, `renew`).
pub const BACKEND_ERRORS: &str = "lockwright_backend_errors_total";

/// Counter: pool acquire calls with valid arguments, counted when they start (every acquiring
/// method of [`Pool`](crate::Pool), and `#[pooled]` calls). Label `backend`.
pub const POOL_ACQUIRE_ATTEMPTS: &str = "lockwright_pool_acquire_attempts_total";
/// Counter: pool acquires that took a slot. Label `backend`.
pub const POOL_ACQUIRED: &str = "lockwright_pool_acquired_total";
/// Counter: pool acquires that found every slot taken and were not to wait
/// ([`LockError::PoolFull`], `None` from `try_acquire`). Label `backend`.
pub const POOL_ACQUIRE_REFUSED: &str = "lockwright_pool_acquire_refused_total";
/// Counter: pool acquires whose wait timeout ran out with the pool still full. Label `backend`.
pub const POOL_ACQUIRE_TIMED_OUT: &str = "lockwright_pool_acquire_timed_out_total";
/// Histogram, seconds: how long a pool acquire waited for a slot, from the first try that found
/// the pool full until it returned; 0 when the first try took one. Labels `backend`, `outcome`.
pub const POOL_ACQUIRE_WAIT_SECONDS: &str = "lockwright_pool_acquire_wait_seconds";
/// Histogram, seconds: how long a pool guard held its slot. Label `backend`.
pub const POOL_HOLD_SECONDS: &str = "lockwright_pool_hold_seconds";

/// The label naming the backend's [`kind`](crate::Backend::kind) (`memory`, `redis`), on every
/// metric.
pub const BACKEND_LABEL: &str = "backend";
/// The label of [`ACQUIRE_WAIT_SECONDS`]: `acquired` or `timed_out`.
pub const OUTCOME_LABEL: &str = "outcome";
/// The label of [`BACKEND_ERRORS`]: which operation failed.
pub const OPERATION_LABEL: &str = "operation";

/// The `DEBUG` span of an acquire: fields `key`, `backend`, `fence`, `waited_ms`, `outcome`.
pub const ACQUIRE_SPAN: &str = "lockwright.acquire";
/// The `DEBUG` span of a release: fields `key`, `backend`, `fence`, `outcome`.
pub const RELEASE_SPAN: &str = "lockwright.release";
/// The `DEBUG` span of a pool acquire: fields `key`, `backend`, `fence` (the slot's token),
/// `waited_ms`, `outcome`.
pub const POOL_ACQUIRE_SPAN: &str = "lockwright.pool_acquire";
/// The `DEBUG` span of a pool slot's release: fields `key`, `backend`, `fence`, `outcome`.
pub const POOL_RELEASE_SPAN: &str = "lockwright.pool_release";

/// Gives the installed recorder the unit and help text of every metric (Prometheus prints them
/// as `# HELP`). Call it once, after installing the recorder; without a recorder it does nothing.
pub fn describe_metrics() {
    use metrics::{describe_counter, describe_histogram};
    describe_counter!(
        ACQUIRE_ATTEMPTS,
        "Acquire calls with valid arguments, counted when they start."
    );
    describe_counter!(
        ACQUIRED,
        "Acquires that took the lock or re-entered their own hold."
    );
    describe_counter!(
        ACQUIRE_REFUSED,
        "Acquires that found the lock held and were not to wait (nowait, try_acquire, try_lock)."
    );
    describe_counter!(
        ACQUIRE_TIMED_OUT,
        "Acquires whose wait timeout ran out with the lock still held."
    );
    describe_histogram!(
        ACQUIRE_WAIT_SECONDS,
        Unit::Seconds,
        "How long an acquire waited for another owner (0 when the first try took the lock)."
    );
    describe_histogram!(
        HOLD_SECONDS,
        Unit::Seconds,
        "How long a guard held its lock, from acquire to release."
    );
    describe_counter!(
        LEASE_LOST,
        "Holds found gone (expired, force-unlocked) while their guard lived."
    );
    describe_counter!(RENEWALS, "Holds the lease watchdog renewed.");
    describe_counter!(
        RENEWAL_FAILURES,
        "Hold renewals that got no answer; retried while the lease runs."
    );
    describe_counter!(BACKEND_ERRORS, "Backend calls that failed.");
    describe_counter!(
        POOL_ACQUIRE_ATTEMPTS,
        "Pool acquire calls with valid arguments, counted when they start."
    );
    describe_counter!(POOL_ACQUIRED, "Pool acquires that took a slot.");
    describe_counter!(
        POOL_ACQUIRE_REFUSED,
        "Pool acquires that found every slot taken and were not to wait."
    );
    describe_counter!(
        POOL_ACQUIRE_TIMED_OUT,
        "Pool acquires whose wait timeout ran out with the pool still full."
    );
    describe_histogram!(
        POOL_ACQUIRE_WAIT_SECONDS,
        Unit::Seconds,
        "How long a pool acquire waited for a slot (0 when the first try took one)."
    );
    describe_histogram!(
        POOL_HOLD_SECONDS,
        Unit::Seconds,
        "How long a pool guard held its slot, from acquire to release."
    );
}

/// A backend call, for the `operation` label of [`BACKEND_ERRORS`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Operation {
    Acquire,
    Release,
    Extend,
    Inspect,
    ForceUnlock,
    Renew,
    PoolAcquire,
    PoolRelease,
    PoolExtend,
    PoolState,
    PoolForceRelease,
}

impl Operation {
    const ALL: [Operation; 11] = [
        Operation::Acquire,
        Operation::Release,
        Operation::Extend,
        Operation::Inspect,
        Operation::ForceUnlock,
        Operation::Renew,
        Operation::PoolAcquire,
        Operation::PoolRelease,
        Operation::PoolExtend,
        Operation::PoolState,
        Operation::PoolForceRelease,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Operation::Acquire => "acquire",
            Operation::Release => "release",
            Operation::Extend => "extend",
            Operation::Inspect => "inspect",
            Operation::ForceUnlock => "force_unlock",
            Operation::Renew => "renew",
            Operation::PoolAcquire => "pool_acquire",
            Operation::PoolRelease => "pool_release",
            Operation::PoolExtend => "pool_extend",
            Operation::PoolState => "pool_state",
            Operation::PoolForceRelease => "pool_force_release",
        }
    }
}

/// What a release span reports.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ReleaseOutcome {
    /// Given back, and the backend confirmed it.
    Released,
    /// Given back by a guard's drop, without waiting for the answer.
    Dropped,
    /// The guard's hold was gone.
    LeaseLost,
    /// The current owner holds nothing there (`Lock::unlock`).
    NotOwner,
    /// Nobody held it (`Lock::release`).
    NotLocked,
    /// The backend failed.
    Error,
}

impl ReleaseOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ReleaseOutcome::Released => "released",
            ReleaseOutcome::Dropped => "dropped",
            ReleaseOutcome::LeaseLost => "lease_lost",
            ReleaseOutcome::NotOwner => "not_owner",
            ReleaseOutcome::NotLocked => "not_locked",
            ReleaseOutcome::Error => "error",
        }
    }
}

/// What an acquire takes: a lock's hold or a pool's slot (their metrics and spans are named
/// apart).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Subject {
    Lock,
    Pool,
}

/// The keys of one subject's acquires and holds.
struct AcquireKeys {
    attempts: Key,
    acquired: Key,
    refused: Key,
    timed_out: Key,
    waited_acquired: Key,
    waited_timed_out: Key,
    hold: Key,
}

/// Every metric key of one backend kind, built once: recording then only looks a key up.
pub(crate) struct Keys {
    kind: &'static str,
    lock: AcquireKeys,
    pool: AcquireKeys,
    lease_lost: Key,
    renewals: Key,
    renewal_failures: Key,
    backend_errors: [Key; Operation::ALL.len()],
}

impl Keys {
    fn new(kind: &'static str) -> Self {
        let backend = Label::from_static_parts(BACKEND_LABEL, kind);
        let key = |name: &'static str| Key::from_parts(name, vec![backend.clone()]);
        let with = |name: &'static str, label: &'static str, value: &'static str| {
            Key::from_parts(
                name,
                vec![backend.clone(), Label::from_static_parts(label, value)],
            )
        };
        Keys {
            kind,
            lock: AcquireKeys {
                attempts: key(ACQUIRE_ATTEMPTS),
                acquired: key(ACQUIRED),
                refused: key(ACQUIRE_REFUSED),
                timed_out: key(ACQUIRE_TIMED_OUT),
                waited_acquired: with(ACQUIRE_WAIT_SECONDS, OUTCOME_LABEL, "acquired"),
                waited_timed_out: with(ACQUIRE_WAIT_SECONDS, OUTCOME_LABEL, "timed_out"),
                hold: key(HOLD_SECONDS),
            },
            pool: AcquireKeys {
                attempts: key(POOL_ACQUIRE_ATTEMPTS),
                acquired: key(POOL_ACQUIRED),
                refused: key(POOL_ACQUIRE_REFUSED),
                timed_out: key(POOL_ACQUIRE_TIMED_OUT),
                waited_acquired: with(POOL_ACQUIRE_WAIT_SECONDS, OUTCOME_LABEL, "acquired"),
                waited_timed_out: with(POOL_ACQUIRE_WAIT_SECONDS, OUTCOME_LABEL, "timed_out"),
                hold: key(POOL_HOLD_SECONDS),
            },
            lease_lost: key(LEASE_LOST),
            renewals: key(RENEWALS),
            renewal_failures: key(RENEWAL_FAILURES),
            backend_errors: Operation::ALL
                .map(|operation| with(BACKEND_ERRORS, OPERATION_LABEL, operation.as_str())),
        }
    }

    fn backend_error(&self, operation: Operation) -> &Key {
        &self.backend_errors[operation as usize]
    }

    fn of(&self, subject: Subject) -> &AcquireKeys {
        match subject {
            Subject::Lock => &self.lock,
            Subject::Pool => &self.pool,
        }
    }
}

/// The metric keys of a handle's backend, looked up once when the handle is made (a lock's
/// [`Target`](crate::target::Target) keeps them): its acquires and releases then record with no
/// lookup.
#[derive(Clone, Copy)]
pub(crate) struct KindKeys(&'static Keys);

impl KindKeys {
    pub(crate) fn of(kind: &'static str) -> Self {
        KindKeys(keys(kind))
    }
}

impl std::fmt::Debug for KindKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("KindKeys").field(&self.0.kind).finish()
    }
}

/// The keys of backends of `kind`: the two built-in kinds without a lock, others from a list
/// that gains one entry per kind (kinds are constants, so the list stays short).
fn keys(kind: &'static str) -> &'static Keys {
    static MEMORY: OnceLock<Keys> = OnceLock::new();
    static REDIS: OnceLock<Keys> = OnceLock::new();
    static OTHERS: Mutex<Vec<&'static Keys>> = Mutex::new(Vec::new());
    // The usual case: the very string the built-in kind was first seen with (a pointer
    // comparison, not a string comparison, on every event).
    for cell in [&MEMORY, &REDIS] {
        if let Some(keys) = cell.get().filter(|keys| std::ptr::eq(keys.kind, kind)) {
            return keys;
        }
    }
    match kind {
        "memory" => MEMORY.get_or_init(|| Keys::new(kind)),
        "redis" => REDIS.get_or_init(|| Keys::new(kind)),
        _ => {
            let mut others = OTHERS
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(keys) = others.iter().find(|keys| keys.kind == kind) {
                return keys;
            }
            let keys: &'static Keys = Box::leak(Box::new(Keys::new(kind)));
            others.push(keys);
            keys
        }
    }
}

static METADATA: Metadata<'static> =
    Metadata::new("lock_core", Level::INFO, Some("lock_core::telemetry"));

fn count(recorder: &dyn Recorder, key: &Key, n: u64) {
    if n > 0 {
        recorder.register_counter(key, &METADATA).increment(n);
    }
}

fn histogram(recorder: &dyn Recorder, key: &Key) -> Histogram {
    recorder.register_histogram(key, &METADATA)
}

/// Seconds since an instant, read from the clock only when a live histogram takes the sample:
/// the facade converts a sample only for a metric some recorder keeps.
struct SecondsSince(Instant);

impl IntoF64 for SecondsSince {
    fn into_f64(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A sample that only notes it was asked for.
struct Probe<'a>(&'a Cell<bool>);

impl IntoF64 for Probe<'_> {
    fn into_f64(self) -> f64 {
        self.0.set(true);
        0.0
    }
}

/// Whether some recorder keeps this histogram, asked without recording anything: a sample given
/// zero times is converted (only) by a live histogram, and recorded by none. This is what lets an
/// acquire skip the clock read of the hold time when nobody collects it.
fn is_live(histogram: &Histogram) -> bool {
    let asked = Cell::new(false);
    histogram.record_many(Probe(&asked), 0);
    asked.get()
}

fn millis(waited: Duration) -> u64 {
    u64::try_from(waited.as_millis()).unwrap_or(u64::MAX)
}

fn is_backend_failure(err: &LockError) -> bool {
    matches!(
        err,
        LockError::Backend { .. } | LockError::Connection { .. } | LockError::NotReplicated { .. }
    )
}

/// Counts a failed backend call and says so at `DEBUG` (the caller receives the error itself).
pub(crate) fn backend_error(kind: &'static str, operation: Operation, key: &str, err: &LockError) {
    let keys = keys(kind);
    metrics::with_recorder(|recorder| count(recorder, keys.backend_error(operation), 1));
    tracing::debug!(
        key,
        backend = kind,
        operation = operation.as_str(),
        error = %err,
        "lockwright: backend error"
    );
}

/// Passes a backend call's result through, counting it when it is a backend failure.
pub(crate) fn observe<T>(
    kind: &'static str,
    operation: Operation,
    key: &str,
    result: Result<T>,
) -> Result<T> {
    if let Err(err) = &result {
        if is_backend_failure(err) {
            backend_error(kind, operation, key, err);
        }
    }
    result
}

/// What an acquire returns, as the observer records it: a lock's guard or a pool's.
pub(crate) trait Taken {
    /// The fence (a slot's token).
    fn token(&self) -> Fence;
    /// Whether the hold time has a start.
    fn hold_timed(&self) -> bool;
    /// Times the hold from `since`.
    fn time_hold_from(&mut self, since: Instant);
}

impl Taken for LockGuard {
    fn token(&self) -> Fence {
        self.fence()
    }

    fn hold_timed(&self) -> bool {
        LockGuard::hold_timed(self)
    }

    fn time_hold_from(&mut self, since: Instant) {
        LockGuard::time_hold_from(self, since)
    }
}

/// One acquire, from its start to its outcome: its span, and when it started to wait.
pub(crate) struct AcquireObserver {
    keys: &'static Keys,
    subject: Subject,
    span: Span,
    waiting_since: Option<Instant>,
    attempt_counted: bool,
}

impl AcquireObserver {
    /// Opens the span of a lock's acquire.
    pub(crate) fn start(keys: KindKeys, key: &str) -> Self {
        let kind = keys.0.kind;
        let span = tracing::debug_span!(
            ACQUIRE_SPAN,
            key,
            backend = kind,
            fence = Empty,
            waited_ms = Empty,
            outcome = Empty
        );
        Self::with_span(keys, Subject::Lock, span)
    }

    /// Opens the span of a pool's acquire.
    pub(crate) fn start_pool(keys: KindKeys, key: &str) -> Self {
        let kind = keys.0.kind;
        let span = tracing::debug_span!(
            POOL_ACQUIRE_SPAN,
            key,
            backend = kind,
            fence = Empty,
            waited_ms = Empty,
            outcome = Empty
        );
        Self::with_span(keys, Subject::Pool, span)
    }

    fn with_span(keys: KindKeys, subject: Subject, span: Span) -> Self {
        AcquireObserver {
            keys: keys.0,
            subject,
            span,
            waiting_since: None,
            attempt_counted: false,
        }
    }

    /// Counts the attempt now: it is about to wait or await the backend. (One answered at once
    /// is counted with its outcome, in one call into the recorder: nothing can observe the
    /// difference.)
    pub(crate) fn count_attempt(&mut self) {
        if !self.attempt_counted {
            self.attempt_counted = true;
            let attempts = &self.keys.of(self.subject).attempts;
            metrics::with_recorder(|recorder| count(recorder, attempts, 1));
        }
    }

    /// The acquire's span, to enter while it waits.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// A try found the lock held at `now`: the wait, if any, starts at the first such try.
    pub(crate) fn found_held(&mut self, now: Instant) {
        self.waiting_since.get_or_insert(now);
    }

    /// Records the outcome and passes the result through. For a guard whose hold time nobody
    /// has started timing (a hold the watchdog does not renew), starts it if the hold time is
    /// collected.
    pub(crate) fn finish<T: Taken>(self, mut result: Result<T>) -> Result<T> {
        let (all, keys) = (self.keys, self.keys.of(self.subject));
        let operation = match self.subject {
            Subject::Lock => Operation::Acquire,
            Subject::Pool => Operation::PoolAcquire,
        };
        let waited = self.waiting_since.map(|since| since.elapsed());
        let waited_secs = waited.unwrap_or_default();
        let attempt = u64::from(!self.attempt_counted);
        let outcome = match &mut result {
            Ok(guard) => {
                metrics::with_recorder(|recorder| {
                    count(recorder, &keys.attempts, attempt);
                    count(recorder, &keys.acquired, 1);
                    histogram(recorder, &keys.waited_acquired).record(waited_secs);
                    if !guard.hold_timed() && is_live(&histogram(recorder, &keys.hold)) {
                        guard.time_hold_from(Instant::now());
                    }
                });
                self.span.record("fence", guard.token().0);
                "acquired"
            }
            Err(LockError::Locked { .. } | LockError::PoolFull { .. }) => {
                metrics::with_recorder(|recorder| {
                    count(recorder, &keys.attempts, attempt);
                    count(recorder, &keys.refused, 1);
                });
                "refused"
            }
            Err(LockError::TimedOut { .. }) => {
                metrics::with_recorder(|recorder| {
                    count(recorder, &keys.attempts, attempt);
                    count(recorder, &keys.timed_out, 1);
                    histogram(recorder, &keys.waited_timed_out).record(waited_secs);
                });
                "timed_out"
            }
            Err(err) => {
                metrics::with_recorder(|recorder| count(recorder, &keys.attempts, attempt));
                if is_backend_failure(err) {
                    let key = err.key().unwrap_or_default();
                    self.span
                        .in_scope(|| backend_error(all.kind, operation, key, err));
                }
                "error"
            }
        };
        self.span.record("waited_ms", millis(waited_secs));
        self.span.record("outcome", outcome);
        tracing::debug!(parent: &self.span, outcome, "lockwright: acquire done");
        result
    }
}

/// One release: its span, and the hold time of a guard's hold.
pub(crate) struct ReleaseObserver {
    keys: &'static Keys,
    subject: Subject,
    span: Span,
}

impl ReleaseObserver {
    /// Opens the span of a release of `key` (of the hold with `fence`, when it is a guard's).
    pub(crate) fn start(keys: KindKeys, key: &str, fence: Option<Fence>) -> Self {
        let kind = keys.0.kind;
        let span = tracing::debug_span!(
            RELEASE_SPAN,
            key,
            backend = kind,
            fence = fence.map(|fence| fence.0),
            outcome = Empty
        );
        ReleaseObserver {
            keys: keys.0,
            subject: Subject::Lock,
            span,
        }
    }

    /// Opens the span of the release of a pool's slot `slot`.
    pub(crate) fn start_pool(keys: KindKeys, key: &str, slot: Fence) -> Self {
        let kind = keys.0.kind;
        let span = tracing::debug_span!(
            POOL_RELEASE_SPAN,
            key,
            backend = kind,
            fence = slot.0,
            outcome = Empty
        );
        ReleaseObserver {
            keys: keys.0,
            subject: Subject::Pool,
            span,
        }
    }

    /// The release's span, to enter while it runs.
    pub(crate) fn span(&self) -> &Span {
        &self.span
    }

    /// Records the outcome, and the hold time of a guard's hold timed since `held_since`.
    pub(crate) fn finish(self, outcome: ReleaseOutcome, held_since: Option<Instant>) {
        if let Some(since) = held_since {
            let hold = &self.keys.of(self.subject).hold;
            metrics::with_recorder(|recorder| {
                histogram(recorder, hold).record(SecondsSince(since));
            });
        }
        self.span.record("outcome", outcome.as_str());
        tracing::debug!(parent: &self.span, outcome = outcome.as_str(), "lockwright: release done");
    }
}

/// Who found a hold gone.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FoundBy {
    /// The lease watchdog: a renewal said the hold is gone, or renewals failed until its lease
    /// could have ended.
    Watchdog,
    /// The guard's own release or extend.
    Guard,
}

/// A hold found gone while its guard lived: counted, and logged at `WARN` (whoever works under
/// the lock must stop). Called once per hold.
pub(crate) fn lease_lost(kind: &'static str, key: &str, fence: Fence, found_by: FoundBy) {
    let keys = keys(kind);
    metrics::with_recorder(|recorder| count(recorder, &keys.lease_lost, 1));
    tracing::warn!(
        key,
        fence = fence.0,
        backend = kind,
        found_by = match found_by {
            FoundBy::Watchdog => "watchdog",
            FoundBy::Guard => "guard",
        },
        "lockwright: lease lost: the hold expired or was force-unlocked; stop working on what the \
         lock protects"
    );
}

/// The answers of one renewal batch: `renewed` holds renewed, `failed` without an answer.
pub(crate) fn renewals(kind: &'static str, renewed: u64, failed: u64) {
    let keys = keys(kind);
    metrics::with_recorder(|recorder| {
        count(recorder, &keys.renewals, renewed);
        count(recorder, &keys.renewal_failures, failed);
    });
}

/// A renewal batch of `holds` holds that failed as a whole (the watchdog logs it).
pub(crate) fn renewal_batch_failed(kind: &'static str, holds: usize) {
    let keys = keys(kind);
    metrics::with_recorder(|recorder| {
        count(recorder, &keys.renewal_failures, holds as u64);
        count(recorder, keys.backend_error(Operation::Renew), 1);
    });
}
