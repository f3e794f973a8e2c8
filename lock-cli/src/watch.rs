//! `lockwright watch`: the locks live. Each master is scanned every `--interval`, and at once
//! (and once more shortly after, to see the woken waiter's hold) when a release publishes a
//! wake-up (the channels of the watched keys, pattern-subscribed on
//! each master; on a cluster the wake-ups are sharded per channel and cannot be subscribed by
//! pattern, so there only the periodic scan runs). Between two snapshots the changes are events
//! (`watch_state.rs`): on a terminal the screen is redrawn in place with ANSI escapes, otherwise
//! (or with `--plain`) each event is one line. Ctrl-C (or SIGTERM) ends it, with the counts.

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
use crate::scan::{scan_master, FoundLock};
use crate::show::{remaining, table};
use crate::watch_state::{Counts, Event, WatchState};

/// How many recent events the redrawn screen shows.
const RECENT_EVENTS: usize = 10;
/// After a wake-up, a second scan this much later: the first, at once, sees the hold end; the
/// woken waiter takes the lock a round trip or so later, which this one shows.
const FOLLOW_UP: Duration = Duration::from_millis(100);
/// How long a subscriber waits before subscribing again after its connection broke.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

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
    let first = scan_all(backend, &masters, &mut conns, &args.pattern).await?;
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
    let mut state = WatchState::starting_with(first);
    let mut alive = screen.start(&state);
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
            Some(key) = woken.recv() => {
                state.heard_wakeup(&key);
                while let Ok(key) = woken.try_recv() {
                    state.heard_wakeup(&key);
                }
                follow_up = Some(tokio::time::Instant::now() + FOLLOW_UP);
            }
            _ = followed_up => follow_up = None,
            _ = ticker.tick() => {}
        }
        match scan_all(backend, &masters, &mut conns, &args.pattern).await {
            Ok(locks) => {
                screen.error = None;
                let events = state.advance(locks);
                alive = screen.show(&state, events);
            }
            Err(failure) => {
                screen.error = Some(failure.to_string());
                alive = screen.show(&state, Vec::new());
            }
        }
    }
    screen.stop(state.counts);
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

/// Scans every master, reconnecting where the last connection failed.
async fn scan_all(
    backend: &RedisBackend,
    masters: &[MasterServer],
    conns: &mut [Option<MultiplexedConnection>],
    pattern: &str,
) -> Result<Vec<FoundLock>, Failure> {
    let mut found = Vec::new();
    for (master, conn) in masters.iter().zip(conns.iter_mut()) {
        let mut current = match conn.take() {
            Some(current) => current,
            None => open(backend, master).await?,
        };
        found.extend(scan_master(backend, master, &mut current, pattern).await?);
        *conn = Some(current);
    }
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Pattern-subscribes to the wake-up channels of the watched keys on `master` (confirmed before
/// it returns), and sends the key of each wake-up heard to `wakeups`, subscribing again when the
/// connection breaks.
async fn subscribe(
    backend: &RedisBackend,
    master: &MasterServer,
    pattern: &str,
    wakeups: mpsc::UnboundedSender<String>,
) -> Result<(), Failure> {
    let channels = backend.channel_glob(pattern);
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
                    if let Some(key) = backend.key_of_channel(message.get_channel_name()) {
                        if wakeups.send(key).is_err() {
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
    /// Shows the locks held at the start. False once standard output is gone.
    fn start(&mut self, state: &WatchState) -> bool {
        if self.plain {
            let mut text = String::new();
            for found in state.held() {
                text.push_str(&line("held", found, ""));
            }
            text.push_str(&format!("watching: {}\n", self.header));
            write_out(&text)
        } else {
            // Hide the cursor while redrawing (`stop` shows it again); clear the screen once.
            write_out("\x1b[?25l\x1b[2J") && self.show(state, Vec::new())
        }
    }

    /// Shows the events of a refresh. False once standard output is gone.
    fn show(&mut self, state: &WatchState, events: Vec<Event>) -> bool {
        let lines: Vec<String> = events.iter().map(event_line).collect();
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
        let held: Vec<FoundLock> = state.held().cloned().collect();
        let counts = state.counts;
        // Home, then each line over the last screen's (its rest cleared), then below cleared:
        // redrawn in place, without the flicker of clearing the screen first.
        let mut text = String::from("\x1b[H");
        text.push_str(&self.header);
        text.push_str(&format!(
            "\n{}   up {}   (Ctrl-C to stop)\n",
            counts_line(counts),
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
    fn stop(&self, counts: Counts) {
        let end = if self.plain { "" } else { "\x1b[?25h\n" };
        write_out(&format!("{end}stopped: {}\n", counts_line(counts)));
    }
}

fn counts_line(counts: Counts) -> String {
    format!(
        "takes {}  releases {}  contended {}  hand-offs {}",
        counts.takes, counts.releases, counts.contended, counts.handoffs
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
