//! `lockwright pools`: the pools with a live slot as a table, or JSON.

use lock_core::RedisBackend;

use crate::args::PoolsArgs;
use crate::connect::masters;
use crate::failure::{Failure, NOT_FOUND, OK};
use crate::pool_scan::find_pools;
use crate::pool_show::{pool_table, PoolRecord};
use crate::show::{emit, emit_json};

/// Lists the pools; exit 1 when none has a live slot (the JSON is then `[]`).
pub async fn run(backend: &RedisBackend, args: &PoolsArgs) -> Result<u8, Failure> {
    let masters = masters(backend).await?;
    let pools = find_pools(backend, &masters, &args.pattern).await?;
    if args.json {
        emit_json(&pools.iter().map(PoolRecord::of).collect::<Vec<_>>());
    } else if pools.is_empty() {
        eprintln!(
            "no pool with a live slot matching {:?} (prefix {:?}, {} master(s) scanned)",
            args.pattern,
            backend.prefix(),
            masters.len()
        );
    } else {
        emit(&pool_table(&pools));
    }
    Ok(if pools.is_empty() { NOT_FOUND } else { OK })
}
