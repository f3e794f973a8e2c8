//! `lockwright inspect KEY`: one lock in full.

use lock_core::RedisBackend;

use crate::args::InspectArgs;
use crate::failure::{Failure, OK};
use crate::scan::FoundLock;
use crate::show::{emit, emit_json, held_for, remaining, LockRecord};

/// Shows the lock; exit 1 when it is not held.
pub async fn run(backend: &RedisBackend, args: &InspectArgs) -> Result<u8, Failure> {
    let Some(lock) = backend.read_lock(&args.key).await? else {
        return Err(Failure::not_found(format!(
            "{:?} is not locked (prefix {:?}, Redis key {})",
            args.key,
            backend.prefix(),
            backend.lock_key(&args.key)
        )));
    };
    let found = FoundLock {
        key: args.key.clone(),
        redis_key: backend.lock_key(&args.key),
        server: backend.config().redacted_url(),
        lock,
    };
    if args.json {
        emit_json(&LockRecord::of(&found));
        return Ok(OK);
    }
    let hold = &found.lock.hold;
    let process = hold.owner.split('-').next().unwrap_or_default();
    emit(&format!(
        "key:         {}\n\
         redis key:   {}\n\
         deployment:  {}\n\
         owner:       {} (process {process})\n\
         fence:       {}\n\
         hold count:  {}\n\
         lease left:  {}\n\
         held for:    {} (from the fence: the server clock when it was taken)\n\
         waited on:   {}\n",
        found.key,
        found.redis_key,
        found.server,
        hold.owner,
        hold.fence,
        hold.hold_count,
        remaining(found.lock.remaining),
        held_for(&found),
        if hold.waited_on {
            "yes: an acquire found it held; its release wakes the waiters"
        } else {
            "no"
        },
    ));
    Ok(OK)
}
