//! Finding the pools with a live slot: `SCAN` (never `KEYS`) on every master for the pool names
//! of the keys a glob matches, then each pool read through the library in one atomic script
//! (`RedisBackend::read_pool`: slots, meta and server clock together, so an expired slot is
//! never counted). The names are read back by the library, so the layout is stated once.

use futures_util::future::try_join_all;
use lock_core::__operate::{MasterServer, StoredPool};
use lock_core::RedisBackend;
use redis::aio::MultiplexedConnection;

use crate::connect::open;
use crate::failure::Failure;
use crate::scan::scan_page;

/// A pool with a live slot, and where it was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundPool {
    /// The key, as given to the library.
    pub key: String,
    /// The Redis name of its sorted set of slots.
    pub redis_key: String,
    /// The master that holds it (`host:port`), or the deployment (its URL, password hidden).
    pub server: String,
    /// What Redis stores, read back.
    pub pool: StoredPool,
}

/// Every pool with a live slot on any of `masters` whose key matches `key_glob`, sorted by key.
pub async fn find_pools(
    backend: &RedisBackend,
    masters: &[MasterServer],
    key_glob: &str,
) -> Result<Vec<FoundPool>, Failure> {
    let mut found = Vec::new();
    for master in masters {
        let mut conn = open(backend, master).await?;
        found.extend(scan_master(backend, master, &mut conn, key_glob).await?);
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// The pools on one master.
pub async fn scan_master(
    backend: &RedisBackend,
    master: &MasterServer,
    conn: &mut MultiplexedConnection,
    key_glob: &str,
) -> Result<Vec<FoundPool>, Failure> {
    let pattern = backend.pool_name_glob(key_glob);
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, names) = scan_page(conn, master, &pattern, cursor).await?;
        // Each read is one round trip on the backend's multiplexed connection: sent together.
        let reads = names.into_iter().filter_map(|name| {
            let key = backend.key_of_pool_name(&name)?;
            Some(async move {
                let pool = backend.read_pool(&key).await?;
                Ok::<_, Failure>(pool.map(|pool| FoundPool {
                    key,
                    redis_key: name,
                    server: master.address.clone(),
                    pool,
                }))
            })
        });
        // A pool whose last slot ended meanwhile is left out.
        found.extend(try_join_all(reads).await?.into_iter().flatten());
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}
