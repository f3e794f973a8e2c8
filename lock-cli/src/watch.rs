//! `lockwright watch`: the locks and pools live. Each master is scanned every `--interval`, and
//! at once (and once more shortly after, to see the woken waiter's hold or slot) when a release
//! publishes a wake-up (the lock and pool channels of the watched keys, pattern-subscribed on
//! each master; on a cluster the wake-ups are sharded per channel and cannot be subscribed by
//! pattern, so there only the periodic scan runs). Between two snapshots the changes are events
//! (`watch_state.rs` for locks, `pool_watch_state.rs` for pools): on a terminal the screen is
//! redrawn in place with ANSI escapes, otherwise (or with `--plain`) each event is one line.
//! Ctrl-C (or SIGTERM) ends it, with the counts.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lock_core::__operate::MasterServer;
use lock_core::RedisBackend;
use redis::aio::MultiplexedConnection;
use tokio::sync::mpsc;

use crate::args::WatchArgs;
use crate::connect::{masters, open};
use crate::failure::{Failure, OK};
use crate::pool_scan::{self, FoundPool};
use crate::pool_show::{occupancy, pool_table, soonest_end};
use crate::pool_watch_state::{PoolEvent, PoolWatchState};
use crate::scan::{scan_master, FoundLock};
use crate::show::{remaining, table};
use crate::watch_state::{Event, WatchState};

/// How many recent events the redrawn screen shows.
const RECENT_EVENTS: usize = 10;
/// After a wake-up, a second scan this much later: the first, at once, sees the hold end; the
/// woken waiter takes the lock a round trip or so later, which this one shows.
const FOLLOW_UP: Duration = Duration::from_millis(100);
/// How long a subscriber waits before subscribing again after its connection broke.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// A wake-up heard: a lock's release, or a pool's slot freed, with someone waiting.
enum Wakeup {
    /// On the lock of this key.
    Lock(String),
    /// On the pool of this key.
    Pool(String),
}

/// What the watch has seen so far: the locks and the pools.
struct Watched {
    locks: WatchState,
    pools: PoolWatchState,
}

impl Watched {
    fn heard(&mut self, wakeup: Wakeup) {
        match wakeup {
            Wakeup::Lock(key) => self.locks.heard_wakeup(&key),
            Wakeup::Pool(key) => self.pools.heard_wakeup(&key),
        }
    }

    /// The events from the last snapshot to this one, one line each.
    fn advance(&mut self, (locks, pools): (Vec<FoundLock>, Vec<FoundPool>)) -> Vec<String> {
        let mut lines: Vec<String> = self.locks.advance(locks).iter().map(event_line).collect();
        lines.extend(self.pools.advance(pools).iter().map(pool_event_line));
        lines
    }
}

/// Watches until Ctrl-C (exit 0), or until standard output goes away.
pub async fn run(backend: &RedisBackend, args: &WatchArgs) -> Result<u8, Failure> {
    let interval = Duration::try_from_secs_f64(args.interval)
        .ok()
        .filter(|interval| !interval.is_zero())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--interval {} is not a positive number of seconds",
                args.interval
            ))
        })?;
    let masters = masters(backend).await?;
    let mut conns = Vec::new();
    for master in &masters {
        conns.push(Some(open(backend, master).await?));
    }
    let (wakeups, mut woken) = mpsc::unbounded_channel();
    let subscribed = !backend.is_cluster();
    if subscribed {
        for master in &masters {
            subscribe(backend, master, &args.pattern, wakeups.clone()).await?;
        }
    }
    let (locks, pools) = scan_all(backend, &masters, &mut conns, &args.pattern).await?;
    let mut screen = Screen {
        plain: args.plain || !std::io::stdout().is_terminal(),
        recent: VecDeque::new(),
        started: Instant::now(),
        header: format!(
            "lockwright watch  {}  prefix {:?}  match {:?}  ({} master(s), {}refresh every {})",
            backend.config().redacted_url(),
            backend.prefix(),
            args.pattern,
            masters.len(),
            if subscribed {
                "wake-ups by pub/sub, "
            } else {
                ""
            },
            crate::show::duration(interval)
        ),
        error: None,
    };
    // Before anything is shown: a Ctrl-C right after the first line must end it cleanly too.
    let stop = stop_signal()
        .map_err(|err| Failure::connection(format!("cannot listen for Ctrl-C: {err}")))?;
    tokio::pin!(stop);
    let mut watched = Watched {
        locks: WatchState::starting_with(locks),
        pools: PoolWatchState::starting_with(pools),
    };
    let mut alive = screen.start(&watched);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is now: the scan above was it
    let mut follow_up: Option<tokio::time::Instant> = None;
    while alive {
        let followed_up = async {
            match follow_up {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stop => break,
            Some(wakeup) = woken.recv() => {
                watched.heard(wakeup);
                while let Ok(wakeup) = woken.try_recv() {
                    watched.heard(wakeup);
                }
                follow_up = Some(tokio::time::Instant::now() + FOLLOW_UP);
            }
            _ = followed_up => follow_up = None,
            _ = ticker.tick() => {}
        }
        match scan_all(backend, &masters, &mut conns, &args.pattern).await {
            Ok(snapshot) => {
                screen.error = None;
                let lines = watched.advance(snapshot);
                alive = screen.show(&watched, lines);
            }
            Err(failure) => {
                screen.error = Some(failure.to_string());
                alive = screen.show(&watched, Vec::new());
            }
        }
    }
    screen.stop(&watched);
    Ok(OK)
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed by this call, not on the
/// first poll (as `tokio::signal::ctrl_c` does), so no signal between the two kills the process.
#[cfg(unix)]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Scans every master for the locks and the pools, reconnecting where the last connection
/// failed.
async fn scan_all(
    backend: &RedisBackend,
    masters: &[MasterServer],
    conns: &mut [Option<MultiplexedConnection>],
    pattern: &str,
) -> Result<(Vec<FoundLock>, Vec<FoundPool>), Failure> {
    let (mut locks, mut pools) = (Vec::new(), Vec::new());
    for (master, conn) in masters.iter().zip(conns.iter_mut()) {
        let mut current = match conn.take() {
            Some(current) => current,
            None => open(backend, master).await?,
        };
        locks.extend(scan_master(backend, master, &mut current, pattern).await?);
        pools.extend(pool_scan::scan_master(backend, master, &mut current, pattern).await?);
        *conn = Some(current);
    }
    locks.sort_by(|a, b| a.key.cmp(&b.key));
    pools.sort_by(|a, b| a.key.cmp(&b.key));
    Ok((locks, pools))
}

/// Pattern-subscribes to the wake-up channels of the watched keys' locks and pools on `master`
/// (confirmed before it returns), and sends each wake-up heard to `wakeups`, subscribing again
/// when the connection breaks.
async fn subscribe(
    backend: &RedisBackend,
    master: &MasterServer,
    pattern: &str,
    wakeups: mpsc::UnboundedSender<Wakeup>,
) -> Result<(), Failure> {
    let channels = vec![
        backend.channel_glob(pattern),
        backend.pool_channel_glob(pattern),
    ];
    let connect = {
        let (client, channels, timeout) = (
            master.client.clone(),
            channels.clone(),
            backend.connect_timeout(),
        );
        move || {
            let (client, channels) = (client.clone(), channels.clone());
            async move {
                let subscribing = async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.psubscribe(&channels).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                match tokio::time::timeout(timeout, subscribing).await {
                    Ok(subscribed) => subscribed.map_err(|err| err.to_string()),
                    Err(_) => Err(format!("no answer within {timeout:?}")),
                }
            }
        }
    };
    let first = connect().await.map_err(|err| {
        Failure::connection(format!("cannot subscribe on {}: {err}", master.address))
    })?;
    let backend = backend.clone();
    tokio::spawn(async move {
        let mut pubsub = Some(first);
        loop {
            if let Some(subscribed) = pubsub.take() {
                let mut messages = subscribed.into_on_message();
                while let Some(message) = messages.next().await {
                    let channel = message.get_channel_name();
                    let wakeup = backend
                        .key_of_channel(channel)
                        .map(Wakeup::Lock)
                        .or_else(|| backend.key_of_pool_channel(channel).map(Wakeup::Pool));
                    if let Some(wakeup) = wakeup {
                        if wakeups.send(wakeup).is_err() {
                            return; // the watch ended
                        }
                    }
                }
            }
            tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            pubsub = connect().await.ok();
        }
    });
    Ok(())
}

/// Where the watch shows what it sees.
struct Screen {
    plain: bool,
    recent: VecDeque<String>,
    started: Instant,
    header: String,
    /// The last refresh's failure, until one succeeds.
    error: Option<String>,
}

impl Screen {
    /// Shows the locks held and the pools taken at the start. False once standard output is
    /// gone.
    fn start(&mut self, watched: &Watched) -> bool {
        if self.plain {
            let mut text = String::new();
            for found in watched.locks.held() {
                text.push_str(&line("held", found, ""));
            }
            for found in watched.pools.pools() {
                text.push_str(&format!(
                    "pool key={:?} slots={} waited_on={} soonest_end={}\n",
                    found.key,
                    occupancy(&found.pool),
                    if found.pool.waited_on { "yes" } else { "no" },
                    soonest_end(&found.pool).replace(' ', "-"),
                ));
            }
            text.push_str(&format!("watching: {}\n", self.header));
            write_out(&text)
        } else {
            // Hide the cursor while redrawing (`stop` shows it again); clear the screen once.
            write_out("\x1b[?25l\x1b[2J") && self.show(watched, Vec::new())
        }
    }

    /// Shows the events of a refresh, one line each. False once standard output is gone.
    fn show(&mut self, watched: &Watched, lines: Vec<String>) -> bool {
        if self.plain {
            let mut text: String = lines.concat();
            if let Some(error) = &self.error {
                eprintln!("error: {error}");
                text.clear();
            }
            return text.is_empty() || write_out(&text);
        }
        for line in lines {
            self.recent.push_front(line);
        }
        self.recent.truncate(RECENT_EVENTS);
        let held: Vec<FoundLock> = watched.locks.held().cloned().collect();
        let pools: Vec<FoundPool> = watched.pools.pools().cloned().collect();
        // Home, then each line over the last screen's (its rest cleared), then below cleared:
        // redrawn in place, without the flicker of clearing the screen first.
        let mut text = String::from("\x1b[H");
        text.push_str(&self.header);
        text.push_str(&format!(
            "\n{}   up {}   (Ctrl-C to stop)\n",
            counts_line(watched),
            crate::show::duration(self.started.elapsed())
        ));
        if let Some(error) = &self.error {
            text.push_str(&format!("refresh failed: {error}\n"));
        }
        text.push('\n');
        if held.is_empty() {
            text.push_str("no lock held\n");
        } else {
            text.push_str(&table(&held));
        }
        if !pools.is_empty() {
            text.push_str("\npools:\n");
            text.push_str(&pool_table(&pools));
        }
        if !self.recent.is_empty() {
            text.push_str("\nrecent events (newest first):\n");
            for line in &self.recent {
                text.push_str("  ");
                text.push_str(line);
            }
        }
        write_out(&format!("{}\x1b[J", text.replace('\n', "\x1b[K\n")))
    }

    /// Ends the view with the counts.
    fn stop(&self, watched: &Watched) {
        let end = if self.plain { "" } else { "\x1b[?25h\n" };
        write_out(&format!("{end}stopped: {}\n", counts_line(watched)));
    }
}

fn counts_line(watched: &Watched) -> String {
    let (counts, pools) = (watched.locks.counts, watched.pools.counts);
    format!(
        "takes {}  releases {}  contended {}  hand-offs {}  slot takes {}  slot frees {}  \
         pools full {}",
        counts.takes,
        counts.releases,
        counts.contended,
        counts.handoffs,
        pools.slot_takes,
        pools.slot_frees,
        pools.full
    )
}

fn event_line(event: &Event) -> String {
    match event {
        Event::Take(found) => line("take", found, ""),
        Event::Contended(found) => line("contended", found, ""),
        Event::Release {
            last_seen,
            handed_off,
        } => line(
            "release",
            last_seen,
            if *handed_off {
                " handed_off=yes"
            } else {
                " handed_off=no"
            },
        ),
    }
}

/// `slot-take key="..." token=... owner=... lease=...`, `slot-free ... handed_off=yes|no`,
/// `pool-full key="..." slots=N/M`.
fn pool_event_line(event: &PoolEvent) -> String {
    let slot_line = |what: &str, key: &str, slot: &lock_core::__operate::StoredSlot| {
        format!(
            "{what} key={key:?} token={} owner={} lease={}",
            slot.token,
            slot.owner,
            remaining(slot.remaining).replace(' ', "-")
        )
    };
    match event {
        PoolEvent::SlotTake { key, slot } => format!("{}\n", slot_line("slot-take", key, slot)),
        PoolEvent::SlotFree {
            key,
            slot,
            waited_on,
        } => format!(
            "{} handed_off={}\n",
            slot_line("slot-free", key, slot),
            if *waited_on { "yes" } else { "no" }
        ),
        PoolEvent::Full(found) => format!(
            "pool-full key={:?} slots={}\n",
            found.key,
            occupancy(&found.pool)
        ),
    }
}

/// `<what> key="..." owner=... fence=... holds=N lease=...<extra>`.
fn line(what: &str, found: &FoundLock, extra: &str) -> String {
    let hold = &found.lock.hold;
    format!(
        "{what} key={:?} owner={} fence={} holds={} lease={}{extra}\n",
        found.key,
        hold.owner,
        hold.fence,
        hold.hold_count,
        remaining(found.lock.remaining).replace(' ', "-"),
    )
}

/// Writes to standard output; false once it is gone (a closed pipe).
fn write_out(text: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}
