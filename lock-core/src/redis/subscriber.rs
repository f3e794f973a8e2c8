//! The wake-up subscriber: one pattern subscription per backend, kept alive by PINGs, wakes the
//! waiters of a key when a release publishes on its channel. With Sentinel it moves to the new
//! master when the switch watch (`Connector::watch_switches`) hears of one.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use event_listener::Event;
use futures_util::StreamExt;

use super::connection::TimeoutError;
use super::RedisBackend;

pub(super) const WAKE_STRIPES: usize = 64;

/// How often the subscriber PINGs its connection. Waiters on a holder without a lease end
/// (`never_expires`) are woken by pub/sub alone, and a connection that silently stops delivering
/// (half-open TCP, a frozen NAT entry) reports no error: only the missing PONG shows it. One
/// PING a second per backend costs the server next to nothing, and bounds how long a waiter
/// sleeps past a release whatever the holder's lease: this interval + the command timeout (the
/// unanswered PING) + one reconnect (100 ms pause + at most the connect timeout), after which
/// everyone re-checks.
pub(super) const SUBSCRIBER_KEEPALIVE: Duration = Duration::from_secs(1);

pub(super) struct Wakeups {
    pub(super) stripes: Box<[Event]>,
    pub(super) hasher: foldhash::fast::RandomState,
    pub(super) closed: AtomicBool,
}

impl Wakeups {
    pub(super) fn stripe(&self, channel: &str) -> &Event {
        &self.stripes[self.hasher.hash_one(channel) as usize % WAKE_STRIPES]
    }

    pub(super) fn wake_everyone(&self) {
        for stripe in self.stripes.iter() {
            stripe.notify(usize::MAX);
        }
    }
}

pub(super) fn escape_glob(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

impl RedisBackend {
    pub(super) fn start_subscriber(&self) {
        // Not the backend itself: the subscriber must not keep it alive.
        let connector = Arc::clone(&self.inner.connector);
        let pattern = format!("{}{{*}}:free", escape_glob(&self.inner.config.prefix));
        let wakeups = Arc::clone(&self.inner.wakeups);
        let connect_timeout = self.inner.config.connect_timeout;
        let command_timeout = self.inner.config.command_timeout;
        let url = self.inner.config.redacted_url();
        let closing = self.inner.closing.listen();
        let subscriber = async move {
            while !wakeups.closed.load(Ordering::Relaxed) {
                // Read before the lookup, as a connection does (see `Generation`).
                let generation = connector.generation.current();
                let subscribed = async {
                    // Asked anew on every reconnect: after a failover, the new master.
                    let mut pubsub = connector.master().await?.get_async_pubsub().await?;
                    pubsub.psubscribe(&pattern).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(pubsub)
                };
                match tokio::time::timeout(connect_timeout, subscribed).await {
                    Ok(Ok(pubsub)) => {
                        // Anything released while we were not listening: everyone re-checks.
                        wakeups.wake_everyone();
                        let (mut sink, mut messages) = pubsub.split();
                        let listening = async {
                            while let Some(message) = messages.next().await {
                                wakeups
                                    .stripe(message.get_channel_name())
                                    .notify(usize::MAX);
                            }
                        };
                        let keepalive = async {
                            loop {
                                tokio::time::sleep(SUBSCRIBER_KEEPALIVE).await;
                                let ping = sink.ping::<redis::Value>();
                                match tokio::time::timeout(command_timeout, ping).await {
                                    Ok(Ok(_)) => {}
                                    Ok(Err(err)) => return Box::<dyn std::error::Error>::from(err),
                                    Err(_) => return TimeoutError(command_timeout).into(),
                                }
                            }
                        };
                        // Either way the connection is dropped (closed) below, and a new one made.
                        tokio::select! {
                            () = connector.generation.past(generation) => tracing::info!(
                                %url,
                                "lockwright: Redis subscriber moving to the new master"
                            ),
                            () = listening => tracing::warn!(
                                %url,
                                "lockwright: Redis subscriber disconnected; reconnecting"
                            ),
                            err = keepalive => tracing::warn!(
                                %url,
                                error = %err,
                                "lockwright: Redis subscriber did not answer PING; reconnecting"
                            ),
                        }
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(%url, error = %err, "lockwright: Redis subscriber failed")
                    }
                    Err(_) => tracing::warn!(%url, "lockwright: Redis subscriber timed out"),
                }
                wakeups.wake_everyone();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        // The subscriber ends with the backend, even while it awaits messages (which may be
        // forever): dropping it closes its connection. On a given runtime that keeps running it
        // would otherwise stay there for good.
        self.inner.runtime.handle().spawn(async move {
            tokio::select! {
                () = closing => {}
                () = subscriber => {}
            }
        });
    }

    /// With Sentinel, the watch that moves connections off a replaced master (see
    /// `Connector::watch_switches`); it ends with the backend, like the subscriber.
    pub(super) fn start_switch_watch(&self) {
        let connector = Arc::clone(&self.inner.connector);
        let url = self.inner.config.redacted_url();
        let command_timeout = self.inner.config.command_timeout;
        let closing = self.inner.closing.listen();
        self.inner.runtime.handle().spawn(async move {
            tokio::select! {
                () = closing => {}
                () = connector.watch_switches(&url, command_timeout) => {}
            }
        });
    }
}
