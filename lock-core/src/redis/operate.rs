//! What operating tools (the `lockwright` command-line tool) need from a Redis backend beyond
//! the `Backend` trait: every master behind it (to `SCAN` and question each), the lock and pool
//! names read back into keys, a hold's stored value and a pool's slots read back, and
//! force-unlocks that say what they freed. The layout itself lives in `RedisBackend::redis_name` and the scripts; this file only
//! reads it back, so the tools never restate it.
//!
//! Hidden from the documentation (`lock_core::__operate`): it hands out redis-rs types and may
//! change with any release.

use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use deadpool_redis::redis;
use deadpool_redis::redis::Script;

use super::connection::TimeoutError;
use super::{remaining_from_pttl, scripts, RedisBackend};
use crate::backend::{Fence, RemainingLease};
use crate::error::{LockError, Result};

/// One master server behind a backend: the one server, the master the Sentinels name, or one
/// master of a cluster. Its client carries the URL's credentials and TLS settings; `Debug`
/// shows only the address.
#[derive(Clone)]
pub struct MasterServer {
    /// `host:port` (or the socket path): for messages, never holds a password.
    pub address: String,
    /// A client of this server alone (plain connections and pub/sub).
    pub client: redis::Client,
}

impl fmt::Debug for MasterServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterServer")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// A hold as Redis stores it: the lock key's string `owner:fence:hold count`, with `:w` appended
/// once an acquire found it held (see `acquire.lua`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredHold {
    /// The owner (`<process nonce>-task-<id>` or `<process nonce>-thread-<n>`, see
    /// [`Owner`](crate::Owner)'s `Display`).
    pub owner: String,
    /// The hold's fencing token.
    pub fence: Fence,
    /// How many times its owner holds it (re-entries).
    pub hold_count: u32,
    /// An acquire found it held since it was taken: its release wakes waiters (publishes).
    pub waited_on: bool,
}

impl StoredHold {
    /// Reads a lock key's value as the scripts do (`^(.-):(%d+):(%d+)(.*)$`: the owner is
    /// everything before the first `:<digits>:<digits>`); `None` for a value of another form.
    ///
    /// ```
    /// use lock_core::__operate::StoredHold;
    ///
    /// let hold = StoredHold::parse("00ab-task-7:1733100000000000:2:w").unwrap();
    /// assert_eq!((hold.owner.as_str(), hold.fence.0, hold.hold_count), ("00ab-task-7", 1733100000000000, 2));
    /// assert!(hold.waited_on);
    /// assert_eq!(StoredHold::parse("not a lock"), None);
    /// ```
    pub fn parse(value: &str) -> Option<StoredHold> {
        let digits = |text: &str| text.bytes().take_while(u8::is_ascii_digit).count();
        for (colon, _) in value.match_indices(':') {
            let rest = &value[colon + 1..];
            let fence_len = digits(rest);
            if fence_len == 0 || rest.as_bytes().get(fence_len) != Some(&b':') {
                continue;
            }
            let after = &rest[fence_len + 1..];
            let count_len = digits(after);
            if count_len == 0 {
                continue;
            }
            return Some(StoredHold {
                owner: value[..colon].to_owned(),
                fence: Fence(rest[..fence_len].parse().ok()?),
                hold_count: after[..count_len].parse().unwrap_or(u32::MAX),
                waited_on: !after[count_len..].is_empty(),
            });
        }
        None
    }
}

/// A lock as read from Redis: its hold, what is left of its lease, and how long it has been
/// held at least.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLock {
    /// The hold.
    pub hold: StoredHold,
    /// `Unlimited` for a hold without a lease.
    pub remaining: RemainingLease,
    /// A lower bound of how long the hold has lasted: the server clock now minus the fence. A
    /// new fence is never below the server clock in microseconds when it is handed out (see
    /// `acquire.lua`), so this never overstates it (it understates it when the fence counter ran
    /// ahead of the clock). `None` when the fence is not a clock reading (below 10^15 µs, i.e.
    /// before September 2001: fences of an earlier lockwright) or is ahead of the clock now.
    pub held_at_least: Option<Duration>,
}

/// Fences of this lockwright are server clock readings in microseconds, so at least this.
const CLOCK_FENCE_FLOOR: u64 = 1_000_000_000_000_000;

impl StoredLock {
    /// From a lock key's value, its `PTTL` reply and the server clock (`TIME`, in µs) read with
    /// them; `None` when the value is not a hold or the key is gone (`PTTL` -2).
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::{RemainingLease, __operate::StoredLock};
    ///
    /// let lock = StoredLock::from_reply("00ab-task-7:1733100000000000:1", 1500, 1733100002000000).unwrap();
    /// assert_eq!(lock.remaining, RemainingLease::Remaining(Duration::from_millis(1500)));
    /// assert_eq!(lock.held_at_least, Some(Duration::from_secs(2)));
    /// ```
    pub fn from_reply(value: &str, pttl: i64, server_now_micros: u64) -> Option<StoredLock> {
        if pttl == -2 {
            return None;
        }
        let hold = StoredHold::parse(value)?;
        let held_at_least = (hold.fence.0 >= CLOCK_FENCE_FLOOR)
            .then(|| server_now_micros.checked_sub(hold.fence.0))
            .flatten()
            .map(Duration::from_micros);
        Some(StoredLock {
            hold,
            remaining: remaining_from_pttl(pttl),
            held_at_least,
        })
    }
}

/// One live slot of a pool as Redis stores it: a member `<token>:<owner>` of the pool's sorted
/// set, scored by the slot's end (see `pool.lua`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSlot {
    /// The slot's token ([`PoolGuard::slot`](crate::PoolGuard::slot)).
    pub token: Fence,
    /// Its owner (as [`StoredHold::owner`]).
    pub owner: String,
    /// What is left of its lease; `Unlimited` for a slot that lasts until given back.
    pub remaining: RemainingLease,
}

/// A pool as read from Redis: its live slots and its meta (`<max size>:<last token>:<w>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPool {
    /// The live slots (never an expired one), soonest end first, those without an end last.
    pub slots: Vec<StoredSlot>,
    /// The `max_size` its slots were taken with; `None` when the meta is gone or unreadable
    /// (deleted by hand while slots lived).
    pub max_size: Option<u32>,
    /// An acquire found the pool full since a slot was last freed with waiters: someone waits
    /// (or waited), and the next slot freed wakes them.
    pub waited_on: bool,
}

impl StoredPool {
    /// From the pool's members and scores (`ZRANGE ... WITHSCORES`, flat: member, score, ...),
    /// its meta's value and the server clock (`TIME`, in µs) read with them. Slots that ended by
    /// that clock are left out. `None` when no slot is live, or a member or score is not a
    /// slot's.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lock_core::{RemainingLease, __operate::StoredPool};
    ///
    /// let now_us = 1_733_100_000_000_000;
    /// let reply = ["1733099999000000:00ab-task-7", "1733100001500", "1733099999000001:00ab-task-8", "inf"];
    /// let pool = StoredPool::from_reply(&reply, Some("3:1733099999000001:1"), now_us).unwrap();
    /// assert_eq!((pool.slots.len(), pool.max_size, pool.waited_on), (2, Some(3), true));
    /// assert_eq!(pool.slots[0].owner, "00ab-task-7");
    /// assert_eq!(pool.slots[0].remaining, RemainingLease::Remaining(Duration::from_millis(1500)));
    /// assert_eq!(pool.slots[1].remaining, RemainingLease::Unlimited);
    /// // A slot that has ended is not live.
    /// assert_eq!(StoredPool::from_reply(&reply[..2], None, now_us + 2_000_000), None);
    /// ```
    pub fn from_reply(
        members_and_scores: &[impl AsRef<str>],
        meta: Option<&str>,
        server_now_micros: u64,
    ) -> Option<StoredPool> {
        let now_ms = server_now_micros / 1000;
        let mut slots = Vec::new();
        for pair in members_and_scores.chunks(2) {
            let [member, score] = pair else { return None };
            let (token, owner) = member.as_ref().split_once(':')?;
            let remaining = match score.as_ref() {
                "inf" => RemainingLease::Unlimited,
                score => {
                    // Integral milliseconds, though a sorted set's scores are doubles.
                    let ends = score.parse::<f64>().ok().filter(|ends| ends.is_finite())? as u64;
                    match ends.checked_sub(now_ms).filter(|left| *left > 0) {
                        Some(left) => RemainingLease::Remaining(Duration::from_millis(left)),
                        None => continue, // ended
                    }
                }
            };
            slots.push(StoredSlot {
                token: Fence(token.parse().ok()?),
                owner: owner.to_owned(),
                remaining,
            });
        }
        if slots.is_empty() {
            return None;
        }
        let mut fields = meta.unwrap_or_default().split(':');
        let max_size = fields
            .next()
            .and_then(|max| max.parse::<u32>().ok())
            .filter(|max| *max > 0);
        let waited_on = fields.nth(1) == Some("1");
        Some(StoredPool {
            slots,
            max_size,
            waited_on,
        })
    }

    /// What is left of the lease of the slot that ends first (`Unlimited`: none ends).
    pub fn soonest_end(&self) -> RemainingLease {
        self.slots
            .first()
            .map_or(RemainingLease::NotLocked, |slot| slot.remaining)
    }
}

/// KEYS: pool, meta. nil when no slot is live, else {server clock in µs, meta value or nil,
/// flat members and scores of the live slots}: one atomic read for [`RedisBackend::read_pool`].
/// Loaded on first use: no pool operation uses it.
static READ_POOL: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("read_pool.lua")));

/// Escapes `*`, `?`, `[`, `]` and `\` for a Redis glob (`SCAN MATCH`, `PSUBSCRIBE`).
fn glob_literal(text: &str, out: &mut String) {
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
}

impl RedisBackend {
    /// Every master behind this backend (see [`MasterServer`]), looked up now, within the
    /// connect timeout.
    ///
    /// # Errors
    /// [`LockError::Connection`] when a lookup fails (the Sentinels or the cluster).
    pub async fn masters(&self) -> Result<Vec<MasterServer>> {
        let connector = Arc::clone(&self.inner.connector);
        let timeout = self.inner.config.connect_timeout;
        let looked_up = self
            .inner
            .runtime
            .handle()
            .spawn(async move { tokio::time::timeout(timeout, connector.masters()).await })
            .await
            .map_err(|err| self.connection_error(err))?;
        let clients = match looked_up {
            Ok(Ok(clients)) => clients,
            Ok(Err(err)) => {
                return Err(LockError::Connection {
                    target: self.inner.config.redacted_url(),
                    source: err,
                })
            }
            Err(_) => return Err(self.connection_error(TimeoutError(timeout))),
        };
        Ok(clients
            .into_iter()
            .map(|client| MasterServer {
                address: server_address(&client),
                client,
            })
            .collect())
    }

    /// The command timeout of the backend's settings, for the tools' own commands.
    pub fn command_timeout(&self) -> Duration {
        self.inner.config.command_timeout
    }

    /// The connect timeout of the backend's settings, for the tools' own connections.
    pub fn connect_timeout(&self) -> Duration {
        self.inner.config.connect_timeout
    }

    /// Whether the backend is on a Redis Cluster (wake-ups are sharded there: `SPUBLISH`).
    pub fn is_cluster(&self) -> bool {
        self.inner.connector.is_cluster()
    }

    /// The key prefix (see [`RedisConfig::prefix`](super::RedisConfig::prefix)).
    pub fn prefix(&self) -> &str {
        &self.inner.config.prefix
    }

    /// A Redis glob (for `SCAN MATCH`) of the lock names of the keys that `key_glob` matches
    /// (a Redis glob over keys: `*`, `?`, `[...]`, `\` escapes). Literal `}` and `\` in it are
    /// written as the lock names write them (`\)`, `\\`); inside `[...]` they are left as given.
    /// It never matches a fence counter (those end in `:fence`, not `}`).
    pub fn lock_name_glob(&self, key_glob: &str) -> String {
        self.name_glob(key_glob, "")
    }

    /// The glob of the wake-up channels of the keys `key_glob` matches (for `PSUBSCRIBE`).
    pub fn channel_glob(&self, key_glob: &str) -> String {
        self.name_glob(key_glob, ":free")
    }

    fn name_glob(&self, key_glob: &str, suffix: &str) -> String {
        let mut glob = String::new();
        glob_literal(&self.inner.config.prefix, &mut glob);
        glob.push('{');
        let mut chars = key_glob.chars();
        let mut in_class = false;
        while let Some(c) = chars.next() {
            // A literal character of the key, as it is written in the lock name, glob-escaped.
            let literal = |c: char, glob: &mut String| match c {
                '\\' => glob.push_str(r"\\\\"),
                '}' => glob.push_str(r"\\)"),
                c => glob_literal(&c.to_string(), glob),
            };
            match c {
                _ if in_class => {
                    in_class = c != ']';
                    glob.push(c);
                }
                '[' => {
                    in_class = true;
                    glob.push(c);
                }
                '*' | '?' => glob.push(c),
                '\\' => match chars.next() {
                    Some(escaped) => literal(escaped, &mut glob),
                    None => literal('\\', &mut glob),
                },
                c => literal(c, &mut glob),
            }
        }
        glob.push('}');
        glob_literal(suffix, &mut glob);
        glob
    }

    /// A Redis glob of the pool names (sorted sets, see `pool.lua`) of the keys `key_glob`
    /// matches, written as [`RedisBackend::lock_name_glob`] writes the lock names'. It matches
    /// neither lock names nor a pool's meta.
    pub fn pool_name_glob(&self, key_glob: &str) -> String {
        self.name_glob(key_glob, ":pool")
    }

    /// The glob of the wake-up channels of the pools whose keys `key_glob` matches (for
    /// `PSUBSCRIBE`; it matches no lock's channel).
    pub fn pool_channel_glob(&self, key_glob: &str) -> String {
        self.name_glob(key_glob, ":pool:free")
    }

    /// The Redis name of the pool `key`'s sorted set of slots (lockwright's layout in every
    /// mode).
    pub fn pool_name(&self, key: &str) -> String {
        self.pool_key(key)
    }

    /// The key whose pool name this is (the inverse of [`RedisBackend::pool_name`]); `None` for
    /// another name.
    pub fn key_of_pool_name(&self, name: &str) -> Option<String> {
        self.key_of_name(name, ":pool")
    }

    /// The key whose lock name this is (the inverse of [`RedisBackend::lock_key`]); `None` for
    /// a name of another prefix or form (a fence counter, a foreign key).
    pub fn key_of_lock_name(&self, name: &str) -> Option<String> {
        self.key_of_name(name, "")
    }

    /// The key whose pool's wake-up channel this is; `None` for another channel.
    pub fn key_of_pool_channel(&self, channel: &str) -> Option<String> {
        self.key_of_name(channel, ":pool:free")
    }

    /// The key whose wake-up channel this is; `None` for another channel.
    pub fn key_of_channel(&self, channel: &str) -> Option<String> {
        self.key_of_name(channel, ":free")
    }

    fn key_of_name(&self, name: &str, suffix: &str) -> Option<String> {
        let tagged = name
            .strip_prefix(self.inner.config.prefix.as_str())?
            .strip_suffix(suffix)?
            .strip_prefix('{')?
            .strip_suffix('}')?;
        let mut key = String::with_capacity(tagged.len());
        let mut chars = tagged.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    '\\' => key.push('\\'),
                    ')' => key.push('}'),
                    _ => return None,
                },
                // The tag ends at the first `}`: a name with one inside is not a lock's.
                '}' => return None,
                c => key.push(c),
            }
        }
        Some(key)
    }

    /// `key`'s lock as Redis holds it now (one atomic read: value and `PTTL`), `None` when it
    /// is free.
    ///
    /// # Errors
    /// [`LockError::Backend`] when Redis fails or does not answer in time, or the key holds
    /// something that is not a hold.
    pub async fn read_lock(&self, key: &str) -> Result<Option<StoredLock>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            let reply: Option<(String, i64, u64)> = backend
                .eval(
                    &key_owned,
                    &scripts::READ_HOLD,
                    &[&backend.lock_key(&key_owned)],
                    &[],
                )
                .await?;
            match reply {
                None => Ok(None),
                Some((value, pttl, now)) => match StoredLock::from_reply(&value, pttl, now) {
                    Some(lock) => Ok(Some(lock)),
                    None if pttl == -2 => Ok(None),
                    None => Err(not_a_hold(&key_owned)),
                },
            }
        })
        .await
    }

    /// [`Backend::force_unlock`](crate::Backend::force_unlock), telling what it freed (`None`:
    /// nothing was held). Frees the key whoever holds it and wakes its waiters exactly as a
    /// release does (`PUBLISH`, `SPUBLISH` on a cluster), in one script.
    ///
    /// # Errors
    /// [`LockError::Backend`] when Redis fails or does not answer in time.
    pub async fn force_unlock_reporting(&self, key: &str) -> Result<Option<StoredHold>> {
        let freed = self.force_unlock_value(key).await?;
        match freed {
            None => Ok(None),
            Some(value) => std::str::from_utf8(&value)
                .ok()
                .and_then(StoredHold::parse)
                .map(Some)
                .ok_or_else(|| not_a_hold(key)),
        }
    }

    /// Runs the force-unlock script: the value it deleted, if any (bytes: in py-cachify mode
    /// the value is a pickle).
    pub(super) fn force_unlock_value(
        &self,
        key: &str,
    ) -> crate::backend::BoxFuture<'static, Result<Option<Vec<u8>>>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            backend
                .eval(
                    &key_owned,
                    &scripts::FORCE_UNLOCK,
                    &[&backend.lock_key(&key_owned)],
                    &[&backend.channel(&key_owned), backend.publish_command()],
                )
                .await
        })
    }

    /// The pool `key` as Redis holds it now (one atomic read of its slots, its meta and the
    /// server clock: expired slots are not counted), `None` when no slot is live.
    ///
    /// # Errors
    /// [`LockError::Backend`] when Redis fails or does not answer in time, or the pool's key
    /// holds something that is not a lockwright pool.
    pub async fn read_pool(&self, key: &str) -> Result<Option<StoredPool>> {
        let backend = self.clone();
        let key_owned: Arc<str> = key.into();
        self.run(key, async move {
            let reply: Option<(u64, Option<String>, Vec<String>)> = backend
                .eval(
                    &key_owned,
                    &READ_POOL,
                    &[
                        &backend.pool_key(&key_owned),
                        &backend.pool_meta_key(&key_owned),
                    ],
                    &[],
                )
                .await?;
            match reply {
                None => Ok(None),
                Some((now, meta, slots)) => StoredPool::from_reply(&slots, meta.as_deref(), now)
                    .map(Some)
                    .ok_or_else(|| LockError::Backend {
                        key: Arc::clone(&key_owned),
                        source: "its pool's Redis key holds members that are not lockwright \
                                 slots"
                            .into(),
                    }),
            }
        })
        .await
    }

    /// [`Backend::pool_force_release`](crate::Backend::pool_force_release): frees the slot
    /// `slot` whoever holds it (`None`: every slot), through the pool script's force operation,
    /// which wakes the pool's waiters when it freed a live slot (`PUBLISH`, `SPUBLISH` on a
    /// cluster, on the pool's channel). Returns how many live slots it freed.
    ///
    /// # Errors
    /// [`LockError::Backend`] when Redis fails or does not answer in time.
    pub async fn force_release_pool(&self, key: &str, slot: Option<Fence>) -> Result<u32> {
        self.pool_force_release_op(key, slot).await
    }
}

fn not_a_hold(key: &str) -> LockError {
    LockError::Backend {
        key: key.into(),
        source: "its Redis key holds a value that is not a lockwright hold".into(),
    }
}

/// `host:port`, or the socket path, of a client's server.
fn server_address(client: &redis::Client) -> String {
    match &client.get_connection_info().addr {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            format!("{host}:{port}")
        }
        redis::ConnectionAddr::Unix(path) => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::{RedisBackend, RedisConfig};

    /// Built, not connected: naming needs no server.
    fn backend(prefix: &str) -> RedisBackend {
        RedisBackend::build(RedisConfig::new("redis://127.0.0.1:1").prefix(prefix))
            .expect("a valid configuration")
            .0
    }

    #[test]
    fn lock_names_and_channels_read_back_into_their_keys() {
        let backend = backend("app:locks:");
        for key in ["job-42", "a}b", r"a\c", r"\)", "{x}", "*?[", ""] {
            let name = backend.lock_key(key);
            assert_eq!(
                backend.key_of_lock_name(&name).as_deref(),
                Some(key),
                "{name}"
            );
            let channel = backend.channel(key);
            assert_eq!(
                backend.key_of_channel(&channel).as_deref(),
                Some(key),
                "{channel}"
            );
            assert_eq!(backend.key_of_lock_name(&channel), None, "{channel}");
            assert_eq!(backend.key_of_lock_name(&backend.fence_key(key)), None);
            let pool = backend.pool_name(key);
            assert_eq!(
                backend.key_of_pool_name(&pool).as_deref(),
                Some(key),
                "{pool}"
            );
            assert_eq!(backend.key_of_lock_name(&pool), None, "{pool}");
            assert_eq!(backend.key_of_pool_name(&name), None, "{name}");
            assert_eq!(backend.key_of_pool_name(&backend.pool_meta_key(key)), None);
            let pool_channel = backend.pool_channel(key);
            assert_eq!(
                backend.key_of_pool_channel(&pool_channel).as_deref(),
                Some(key),
                "{pool_channel}"
            );
            assert_eq!(
                backend.key_of_channel(&pool_channel),
                None,
                "{pool_channel}"
            );
            assert_eq!(backend.key_of_pool_channel(&channel), None, "{channel}");
        }
        for foreign in [
            "other:{job}",
            "app:locks:job",
            "app:locks:{a}b}",
            r"app:locks:{a\x}",
        ] {
            assert_eq!(backend.key_of_lock_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn key_globs_become_globs_of_the_names_as_they_are_written() {
        let backend = backend("p*:");
        assert_eq!(backend.lock_name_glob("*"), r"p\*:{*}");
        assert_eq!(backend.lock_name_glob("a}*"), r"p\*:{a\\)*}");
        assert_eq!(backend.lock_name_glob(r"a\\?"), r"p\*:{a\\\\?}");
        assert_eq!(backend.lock_name_glob(r"\*x"), r"p\*:{\*x}");
        assert_eq!(backend.lock_name_glob("[ab]}"), r"p\*:{[ab]\\)}");
        assert_eq!(backend.channel_glob("job-*"), r"p\*:{job-*}:free");
        assert_eq!(backend.pool_name_glob("a}*"), r"p\*:{a\\)*}:pool");
        assert_eq!(backend.pool_channel_glob("job-*"), r"p\*:{job-*}:pool:free");
    }
}
