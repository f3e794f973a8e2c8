//! The command line: global options (where the servers are) and one subcommand each.

use clap::{Args, Parser, Subcommand};
use lock_core::RedisConfig;

/// Which locks and pools are held on a Redis deployment, by whom, who waits; free one; watch
/// them live; check a server against what the locks' guarantees need.
///
/// Exit codes: 0 ok, 1 not found / nothing to do (or, for `doctor`, a problem found),
/// 2 usage or connection error.
#[derive(Debug, Parser)]
#[command(name = "lockwright", version, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the locks are: accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct Target {
    /// The deployment, in any form the library takes: redis://[user:password@]host[:port][/db],
    /// rediss://... (TLS), redis+unix:///path/to/socket, redis+cluster://host1:port1,host2:port2,
    /// redis+sentinel://host1:port1,host2:port2/master_name.
    #[arg(
        long,
        global = true,
        env = "REDIS_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: Option<String>,

    /// Key prefix of the locks and pools (the library's `RedisConfig::prefix`).
    #[arg(long, global = true, value_name = "PREFIX", default_value = RedisConfig::DEFAULT_PREFIX)]
    pub prefix: String,

    /// Ask for the password on the terminal (not echoed) instead of putting it in the URL.
    /// `REDISCLI_AUTH`, as for redis-cli, gives it from the environment.
    #[arg(long, global = true)]
    pub ask_password: bool,

    /// Trust the CAs in this PEM file for rediss:// (instead of the system's roots).
    #[arg(long, global = true, value_name = "FILE")]
    pub tls_ca_file: Option<std::path::PathBuf>,

    /// Seconds to wait for a connection, and for each command's answer.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 5.0)]
    pub timeout: f64,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List held locks (found with SCAN on every master, never KEYS).
    List(ListArgs),
    /// List pools with a live slot (keyed semaphores, `Pool`): slots taken of the max size,
    /// whether an acquire found it full, the soonest slot end (SCAN on every master).
    Pools(PoolsArgs),
    /// Show one lock in full, or with --pool every live slot of a pool.
    Inspect(InspectArgs),
    /// Free a lock whoever holds it, or with --pool a pool's slots, and wake the waiters.
    ForceUnlock(ForceUnlockArgs),
    /// A live view of the locks and pools, redrawn as they are taken and released (Ctrl-C ends
    /// it).
    Watch(WatchArgs),
    /// Check the server(s) against what the locks' guarantees need; each finding with its fix.
    Doctor(DoctorArgs),
}

/// `lockwright list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only keys matching this Redis glob (`*`, `?`, `[abc]`, `\` escapes).
    #[arg(long = "match", value_name = "GLOB", default_value = "*")]
    pub pattern: String,
    /// Print JSON (an array of locks) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `lockwright pools`.
#[derive(Debug, Args)]
pub struct PoolsArgs {
    /// Only pools whose keys match this Redis glob (`*`, `?`, `[abc]`, `\` escapes).
    #[arg(long = "match", value_name = "GLOB", default_value = "*")]
    pub pattern: String,
    /// Print JSON (an array of pools, each with its slots) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `lockwright inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The lock's key (as given to the library, without the prefix); with --pool, the pool's.
    pub key: String,
    /// KEY names a pool (`Pool::new(KEY, ..)`): show each live slot's token, owner and lease.
    #[arg(long)]
    pub pool: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `lockwright force-unlock`.
#[derive(Debug, Args)]
pub struct ForceUnlockArgs {
    /// The lock's key (as given to the library, without the prefix); with --pool, the pool's.
    pub key: String,
    /// KEY names a pool: free every live slot of it (or only --slot's); its holders lose them.
    #[arg(long)]
    pub pool: bool,
    /// With --pool: free only the slot of this token (`inspect --pool KEY` shows them).
    #[arg(long, value_name = "TOKEN", requires = "pool")]
    pub slot: Option<u64>,
    /// Do not ask for confirmation (needed when standard input is not a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print what was freed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `lockwright watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only keys matching this Redis glob.
    #[arg(long = "match", value_name = "GLOB", default_value = "*")]
    pub pattern: String,
    /// One line per event (held, take, contended, release; pool, slot-take, pool-full,
    /// slot-free) instead of a redrawn screen; the default when standard output is not a
    /// terminal.
    #[arg(long)]
    pub plain: bool,
    /// Seconds between two full refreshes (a release that wakes waiters refreshes at once).
    #[arg(long, value_name = "SECONDS", default_value_t = 0.5)]
    pub interval: f64,
}

/// `lockwright doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The `wait_replicas` count the applications set (checks that many replicas are connected).
    #[arg(long, value_name = "N")]
    pub wait_replicas: Option<usize>,
    /// How many PINGs measure the round trip.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub pings: u32,
}
