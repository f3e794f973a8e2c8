//! A resource protected by fencing tokens, kept in Redis: what the guarantees tell users to
//! build, used by the tests to check that fences keep data safe.

/// Writes `value` to `counter` only if `fence` is at least the highest fence seen: what a
/// resource protected by fencing tokens does. Returns 1 when accepted.
const FENCED_WRITE: &str = r"
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < highest then return 0 end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('SET', KEYS[1], ARGV[2])
return 1
";

pub fn fenced_write(conn: &mut redis::Connection, counter: &str, fence: u64, value: u64) -> bool {
    let accepted: i64 = redis::Script::new(FENCED_WRITE)
        .key(counter)
        .key(format!("{counter}:highest-fence"))
        .arg(fence)
        .arg(value)
        .invoke(conn)
        .unwrap();
    accepted == 1
}

/// Reads the counter for a holder with `fence`, raising the highest fence seen: a
/// read-modify-write must carry its fence on the read too, or a stale holder's read could
/// interleave with a newer holder's and lose an update. `None`: refused (a newer fence was seen).
const FENCED_READ: &str = r"
local highest = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) < highest then return -1 end
redis.call('SET', KEYS[2], ARGV[1])
return tonumber(redis.call('GET', KEYS[1]) or '0')
";

pub fn fenced_read(conn: &mut redis::Connection, counter: &str, fence: u64) -> Option<u64> {
    let value: i64 = redis::Script::new(FENCED_READ)
        .key(counter)
        .key(format!("{counter}:highest-fence"))
        .arg(fence)
        .invoke(conn)
        .unwrap();
    u64::try_from(value).ok()
}

pub fn read_counter(conn: &mut redis::Connection, counter: &str) -> u64 {
    redis::cmd("GET")
        .arg(counter)
        .query::<Option<u64>>(conn)
        .unwrap()
        .unwrap_or(0)
}
