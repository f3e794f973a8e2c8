//! Finding the held locks: `SCAN` (never `KEYS`, which blocks the server) on every master for
//! the lock names of the keys a glob matches, then each batch's values and leases in one
//! pipeline. The names and values are read back by the library (`lock_core::__operate`), so the
//! layout is stated in one place.

use lock_core::__operate::{MasterServer, StoredLock};
use lock_core::RedisBackend;
use redis::aio::MultiplexedConnection;

use crate::connect::{command_failed, open};
use crate::failure::Failure;

/// How many names one `SCAN` call looks at (a hint to the server; it bounds each call's work).
const SCAN_COUNT: usize = 1000;

/// A held lock, and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundLock {
    /// The key, as given to the library.
    pub key: String,
    /// Its Redis name (prefix and hash tag).
    pub redis_key: String,
    /// The master that holds it (`host:port`).
    pub server: String,
    /// What Redis stores, read back.
    pub lock: StoredLock,
}

/// Every lock held on any of `masters` whose key matches `key_glob`, sorted by key.
pub async fn find_locks(
    backend: &RedisBackend,
    masters: &[MasterServer],
    key_glob: &str,
) -> Result<Vec<FoundLock>, Failure> {
    let mut found = Vec::new();
    for master in masters {
        let mut conn = open(backend, master).await?;
        found.extend(scan_master(backend, master, &mut conn, key_glob).await?);
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// The locks on one master.
pub async fn scan_master(
    backend: &RedisBackend,
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
    key_glob: &str,
) -> Result<Vec<FoundLock>, Failure> {
    let pattern = backend.lock_name_glob(key_glob);
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, names) = scan_page(conn, master, &pattern, cursor).await?;
        found.extend(read_batch(backend, master, conn, names).await?);
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// One `SCAN` call (locks and pools alike): the next cursor (0 once done) and the names it
/// found that match `pattern`.
pub(crate) async fn scan_page(
    conn: &mut MultiplexedConnection,
    master: &MasterServer,
    pattern: &str,
    cursor: u64,
) -> Result<(u64, Vec<String>), Failure> {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(SCAN_COUNT)
        .query_async(conn)
        .await
        .map_err(|err| command_failed(master, "SCAN", err))
}

/// Values and leases of one batch of names, with the server clock, in one pipeline. Not atomic
/// across names (a lock may change between two of them); a name gone meanwhile is left out.
async fn read_batch(
    backend: &RedisBackend,
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
    names: Vec<String>,
) -> Result<Vec<FoundLock>, Failure> {
    let names: Vec<(String, String)> = names
        .into_iter()
        .filter_map(|name| Some((backend.key_of_lock_name(&name)?, name)))
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    pipe.cmd("TIME");
    for (_, name) in &names {
        pipe.cmd("GET").arg(name).cmd("PTTL").arg(name);
    }
    let replies: Vec<redis::Value> = pipe
        .query_async(conn)
        .await
        .map_err(|err| command_failed(master, "reading the locks", err))?;
    let mut replies = replies.into_iter();
    let (seconds, micros): (u64, u64) = replies
        .next()
        .map(|time| redis::from_redis_value(&time))
        .transpose()
        .map_err(|err| command_failed(master, "TIME", err))?
        .unwrap_or_default();
    let now = seconds * 1_000_000 + micros;
    let mut found = Vec::new();
    for (key, name) in names {
        let (Some(value), Some(pttl)) = (replies.next(), replies.next()) else {
            break;
        };
        let value: Option<String> = redis::from_redis_value(&value).unwrap_or(None);
        let pttl: i64 = redis::from_redis_value(&pttl).unwrap_or(-2);
        let Some(lock) = value.and_then(|value| StoredLock::from_reply(&value, pttl, now)) else {
            continue; // released or expired meanwhile, or not a hold
        };
        found.push(FoundLock {
            key,
            redis_key: name,
            server: master.address.clone(),
            lock,
        });
    }
    Ok(found)
}
