//! `lockwright inspect --pool KEY`: one pool in full, every live slot with its token, owner and
//! lease.

use lock_core::RedisBackend;

use crate::args::InspectArgs;
use crate::failure::{Failure, OK};
use crate::pool_scan::FoundPool;
use crate::pool_show::{slot_table, soonest_end, PoolRecord};
use crate::show::{emit, emit_json};

/// Shows the pool; exit 1 when no slot of it is live.
pub async fn run(backend: &RedisBackend, args: &InspectArgs) -> Result<u8, Failure> {
    let found = read(backend, &args.key).await?;
    if args.json {
        emit_json(&PoolRecord::of(&found));
        return Ok(OK);
    }
    let pool = &found.pool;
    emit(&format!(
        "pool:        {}\n\
         redis key:   {}\n\
         deployment:  {}\n\
         slots:       {} live, max size {}\n\
         waited on:   {}\n\
         soonest end: {}\n\
         live slots (soonest end first):\n{}",
        found.key,
        found.redis_key,
        found.server,
        pool.slots.len(),
        pool.max_size.map_or_else(
            || "unknown (the pool's meta is gone)".to_owned(),
            |max| max.to_string()
        ),
        if pool.waited_on {
            "yes: an acquire found it full; the next slot freed wakes the waiters"
        } else {
            "no"
        },
        soonest_end(pool),
        slot_table(&pool.slots, "  "),
    ));
    Ok(OK)
}

/// The pool `key` read now, as found on the deployment; exit 1 when no slot of it is live.
pub async fn read(backend: &RedisBackend, key: &str) -> Result<FoundPool, Failure> {
    let redis_key = backend.pool_name(key);
    let Some(pool) = backend.read_pool(key).await? else {
        return Err(Failure::not_found(format!(
            "pool {key:?} has no live slot (prefix {:?}, Redis key {redis_key})",
            backend.prefix(),
        )));
    };
    Ok(FoundPool {
        key: key.to_owned(),
        redis_key,
        server: backend.config().redacted_url(),
        pool,
    })
}
