//! How locks are shown: a table for people, JSON records for scripts, and durations in words.

use std::time::Duration;

use lock_core::__operate::StoredHold;
use lock_core::RemainingLease;
use serde::Serialize;

use crate::scan::FoundLock;

/// One lock as JSON (`list --json`, `inspect --json`).
#[derive(Debug, Serialize)]
pub struct LockRecord<'a> {
    /// The key, as given to the library.
    pub key: &'a str,
    /// Its Redis name.
    pub redis_key: &'a str,
    /// Where it was found: the master's `host:port` (`list`), or the deployment (`inspect`:
    /// its URL with the password hidden).
    pub server: &'a str,
    /// Who holds it.
    pub owner: &'a str,
    /// Its fencing token.
    pub fence: u64,
    /// How many times its owner holds it.
    pub hold_count: u32,
    /// Milliseconds left of its lease; `null` for a hold without one.
    pub remaining_lease_ms: Option<u64>,
    /// A lower bound of how long it has been held (from its fence), when known.
    pub held_at_least_ms: Option<u64>,
    /// An acquire found it held: someone waits (or waited); its release wakes them.
    pub waited_on: bool,
}

impl<'a> LockRecord<'a> {
    /// The record of a found lock.
    pub fn of(found: &'a FoundLock) -> Self {
        let lock = &found.lock;
        LockRecord {
            key: &found.key,
            redis_key: &found.redis_key,
            server: &found.server,
            owner: &lock.hold.owner,
            fence: lock.hold.fence.0,
            hold_count: lock.hold.hold_count,
            remaining_lease_ms: lease_ms(lock.remaining),
            held_at_least_ms: lock.held_at_least.map(millis),
            waited_on: lock.hold.waited_on,
        }
    }
}

/// A freed hold as JSON (`force-unlock --json`).
#[derive(Debug, Serialize)]
pub struct FreedRecord<'a> {
    /// The key.
    pub key: &'a str,
    /// Who held it.
    pub owner: &'a str,
    /// The fence of the freed hold.
    pub fence: u64,
    /// How many times its owner held it.
    pub hold_count: u32,
    /// Whether an acquire had found it held (its waiters were woken).
    pub waited_on: bool,
}

impl<'a> FreedRecord<'a> {
    /// The record of a freed hold.
    pub fn of(key: &'a str, hold: &'a StoredHold) -> Self {
        FreedRecord {
            key,
            owner: &hold.owner,
            fence: hold.fence.0,
            hold_count: hold.hold_count,
            waited_on: hold.waited_on,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds left of a lease; `None` for one without an end (or nothing held).
pub fn lease_ms(remaining: RemainingLease) -> Option<u64> {
    match remaining {
        RemainingLease::Remaining(left) => Some(millis(left)),
        RemainingLease::Unlimited | RemainingLease::NotLocked => None,
    }
}

/// `850ms`, `12.3s`, `4m05s`, `2h07m`, `3d04h`.
pub fn duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    let s = duration.as_secs();
    match s {
        _ if ms < 1000 => format!("{ms}ms"),
        0..=59 => format!("{:.1}s", duration.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// What is left of a lease, in words.
pub fn remaining(remaining: RemainingLease) -> String {
    match remaining {
        RemainingLease::Remaining(left) => duration(left),
        RemainingLease::Unlimited => "no lease".to_owned(),
        RemainingLease::NotLocked => "not locked".to_owned(),
    }
}

/// How long a lock has been held at least, in words.
pub fn held_for(found: &FoundLock) -> String {
    found
        .lock
        .held_at_least
        .map_or_else(|| "?".to_owned(), |held| format!(">= {}", duration(held)))
}

/// The locks as a table with a header, columns aligned.
pub fn table(locks: &[FoundLock]) -> String {
    let mut rows = vec![[
        "KEY",
        "OWNER",
        "FENCE",
        "HOLDS",
        "LEASE LEFT",
        "HELD FOR",
        "WAITED ON",
    ]
    .map(str::to_owned)
    .to_vec()];
    for found in locks {
        let hold = &found.lock.hold;
        rows.push(vec![
            found.key.clone(),
            hold.owner.clone(),
            hold.fence.to_string(),
            hold.hold_count.to_string(),
            remaining(found.lock.remaining),
            held_for(found),
            if hold.waited_on { "yes" } else { "no" }.to_owned(),
        ]);
    }
    aligned(&rows)
}

/// Rows as lines, each column as wide as its widest cell (two spaces between columns).
pub fn aligned(rows: &[Vec<String>]) -> String {
    let mut widths = Vec::<usize>::new();
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Writes `text` to standard output. A reader that went away (`| head`) is not an error.
pub fn emit(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// `value` as pretty JSON on standard output.
pub fn emit_json(value: &impl Serialize) {
    // Serializing these plain records cannot fail.
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    emit(&format!("{text}\n"));
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_read_in_the_largest_fitting_units() {
        let cases = [
            (Duration::from_millis(850), "850ms"),
            (Duration::from_millis(12_340), "12.3s"),
            (Duration::from_secs(245), "4m05s"),
            (Duration::from_secs(2 * 3600 + 7 * 60), "2h07m"),
            (Duration::from_secs(3 * 86_400 + 4 * 3600), "3d04h"),
        ];
        for (given, shown) in cases {
            assert_eq!(duration(given), shown);
        }
    }
}
