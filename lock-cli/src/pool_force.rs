//! `lockwright force-unlock --pool KEY [--slot TOKEN]`: frees one slot of a pool, or every slot,
//! whoever holds them, through the library's pool script (its force operation), which wakes the
//! pool's waiters as a release does (`PUBLISH`, or `SPUBLISH` on a cluster), and says what it
//! freed.

use std::io::{BufRead, IsTerminal, Write};

use lock_core::__operate::StoredSlot;
use lock_core::{Fence, RedisBackend};

use crate::args::ForceUnlockArgs;
use crate::failure::{Failure, OK};
use crate::pool_inspect::read;
use crate::pool_show::{slot_table, FreedSlotsRecord, SlotRecord};
use crate::show::{emit, emit_json};

/// Frees the slot(s) (after a confirmation on a terminal, unless `--yes`); exit 1 when none of
/// them was live.
pub async fn run(backend: &RedisBackend, args: &ForceUnlockArgs) -> Result<u8, Failure> {
    let slot = args.slot.map(Fence);
    let what = match slot {
        Some(token) => format!("slot {token} of pool {:?}", args.key),
        None => format!("every slot of pool {:?}", args.key),
    };
    let nothing = || Failure::not_found(format!("{what} is not live: nothing to free"));
    // Read first, to show what is freed: the force operation only counts.
    let found = read(backend, &args.key).await?;
    let chosen: Vec<StoredSlot> = found
        .pool
        .slots
        .into_iter()
        .filter(|live| slot.map_or(true, |token| live.token == token))
        .collect();
    if chosen.is_empty() {
        return Err(nothing());
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(Failure::usage(
                "force-unlock asks for confirmation, and standard input is not a terminal: \
                 add --yes",
            ));
        }
        eprint!(
            "Free {what}?\n{}Their holders lose them (each learns so on its next renewal or \
             release). [y/N] ",
            slot_table(&chosen, "  ")
        );
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            return Err(Failure::not_found("not freed"));
        }
    }
    let freed = backend.force_release_pool(&args.key, slot).await?;
    if freed == 0 {
        return Err(nothing());
    }
    if args.json {
        emit_json(&FreedSlotsRecord {
            key: &args.key,
            freed,
            slots: chosen.iter().map(SlotRecord::of).collect(),
        });
    } else {
        emit(&format!(
            "freed {freed} slot(s) of pool {:?} (its waiters, if any, were woken):\n{}",
            args.key,
            slot_table(&chosen, "  ")
        ));
    }
    if usize::try_from(freed).ok() != Some(chosen.len()) {
        eprintln!(
            "note: the pool changed after it was read: {freed} slot(s) freed, not the {} shown",
            chosen.len()
        );
    }
    Ok(OK)
}
