//! `lockwright list`: the held locks as a table, or JSON.

use lock_core::RedisBackend;

use crate::args::ListArgs;
use crate::connect::masters;
use crate::failure::{Failure, NOT_FOUND, OK};
use crate::scan::find_locks;
use crate::show::{emit, emit_json, table, LockRecord};

/// Lists the locks; exit 1 when none is held (the JSON is then `[]`).
pub async fn run(backend: &RedisBackend, args: &ListArgs) -> Result<u8, Failure> {
    let masters = masters(backend).await?;
    let locks = find_locks(backend, &masters, &args.pattern).await?;
    if args.json {
        emit_json(&locks.iter().map(LockRecord::of).collect::<Vec<_>>());
    } else if locks.is_empty() {
        eprintln!(
            "no lock held matching {:?} (prefix {:?}, {} master(s) scanned)",
            args.pattern,
            backend.prefix(),
            masters.len()
        );
    } else {
        emit(&table(&locks));
    }
    Ok(if locks.is_empty() { NOT_FOUND } else { OK })
}
