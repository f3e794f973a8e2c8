//! `lockwright force-unlock KEY`: frees a lock whoever holds it, through the library's own
//! force-unlock script, so its waiters are woken exactly as by a release (`PUBLISH`, or
//! `SPUBLISH` on a cluster), and says what it freed.

use std::io::{BufRead, IsTerminal, Write};

use lock_core::RedisBackend;

use crate::args::ForceUnlockArgs;
use crate::failure::{Failure, OK};
use crate::show::{emit, emit_json, remaining, FreedRecord};

/// Frees the lock (after a confirmation on a terminal, unless `--yes`); exit 1 when it was not
/// held.
pub async fn run(backend: &RedisBackend, args: &ForceUnlockArgs) -> Result<u8, Failure> {
    let not_held = || {
        Failure::not_found(format!(
            "{:?} is not locked (prefix {:?}): nothing to free",
            args.key,
            backend.prefix()
        ))
    };
    let confirmed = if args.yes {
        None
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "force-unlock asks for confirmation, and standard input is not a terminal: \
                 add --yes",
            ));
        }
        let lock = backend.read_lock(&args.key).await?.ok_or_else(not_held)?;
        let hold = &lock.hold;
        eprint!(
            "Free {:?}, held by {} (fence {}, {} hold(s), lease left {})? Its holder loses it \
             (it learns so on its next renewal or release). [y/N] ",
            args.key,
            hold.owner,
            hold.fence,
            hold.hold_count,
            remaining(lock.remaining)
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Failure::not_found("not freed"));
        }
        Some(lock.hold)
    };
    let freed = backend
        .force_unlock_reporting(&args.key)
        .await?
        .ok_or_else(not_held)?;
    if args.json {
        emit_json(&FreedRecord::of(&args.key, &freed));
    } else {
        emit(&format!(
            "freed {:?}: owner {}, fence {}, {} hold(s){}\n",
            args.key,
            freed.owner,
            freed.fence,
            freed.hold_count,
            if freed.waited_on {
                "; its waiters were woken"
            } else {
                ""
            }
        ));
    }
    if confirmed.is_some_and(|confirmed| confirmed.fence != freed.fence) {
        eprintln!(
            "note: the lock changed hands after it was shown: the hold freed is the one above, \
             not the one confirmed"
        );
    }
    Ok(OK)
}
