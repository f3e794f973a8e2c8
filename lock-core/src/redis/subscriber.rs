//! The wake-up subscriber, kept alive by PINGs, wakes the waiters of a key when a release
//! publishes on its channel: on one server (or Sentinel's master) one pattern subscription per
//! backend, which with Sentinel moves to the new master when the switch watch
//! (`Connector::watch_switches`) hears of one; on a cluster, sharded subscriptions (`SSUBSCRIBE`)
//! to the channels of the keys being waited on, each on the node serving its slot.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, PushInfo, PushKind, RedisError};
use event_listener::Event;
use futures_util::StreamExt;

use super::connection::TimeoutError;
use super::RedisBackend;
use crate::wakeups::KeyedWakeups;

/// How often the subscriber PINGs its connection. Waiters on a holder without a lease end
/// (`never_expires`) are woken by pub/sub alone, and a connection that silently stops delivering
/// (half-open TCP, a frozen NAT entry) reports no error: only the missing PONG shows it. One
/// PING a second per backend costs the server next to nothing, and bounds how long a waiter
/// sleeps past a release whatever the holder's lease: this interval + the command timeout (the
/// unanswered PING) + one reconnect (100 ms pause + at most the connect timeout), after which
/// everyone re-checks.
pub(super) const SUBSCRIBER_KEEPALIVE: Duration = Duration::from_secs(1);

/// How long a cluster backend stays subscribed to a channel nobody waits on any more.
const SHARDED_IDLE: Duration = Duration::from_secs(60);

pub(super) struct Wakeups {
    /// The waiters of each channel (a lock's or a pool's).
    pub(super) channels: KeyedWakeups,
    pub(super) closed: AtomicBool,
    /// A cluster backend's sharded subscriptions (unused elsewhere).
    pub(super) sharded: Sharded,
}

/// The channels a cluster backend's waiters listen on, and whether the subscription to each is
/// confirmed. A waiter registers its channel when it starts listening, and its next acquire
/// attempt waits for the confirmation: a release after that attempt always reaches it.
#[derive(Default)]
pub(super) struct Sharded {
    channels: Mutex<HashMap<Arc<str>, Channel>>,
    /// Notified when a channel needs (re)subscribing.
    wanted: Event,
    /// Notified when subscriptions were confirmed (or the subscriber gave up a round).
    confirmed: Event,
}

struct Channel {
    confirmed: bool,
    wanted_at: Instant,
    /// Bumped whenever the subscription is found gone: a confirmation of an `SSUBSCRIBE` sent
    /// before that does not count (the server may have dropped it since).
    generation: u64,
}

impl Sharded {
    fn channels(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Channel>> {
        self.channels.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A waiter listens on `channel`.
    pub(super) fn want(&self, channel: &str) {
        let now = Instant::now();
        let mut channels = self.channels();
        match channels.get_mut(channel) {
            Some(known) => known.wanted_at = now,
            None => {
                channels.insert(
                    channel.into(),
                    Channel {
                        confirmed: false,
                        wanted_at: now,
                        generation: 0,
                    },
                );
                drop(channels);
                self.wanted.notify(usize::MAX);
            }
        }
    }

    /// Waits until the subscription to `channel`, if one is wanted, is confirmed, or `patience`
    /// (a timer on the backend's runtime) runs out.
    pub(super) async fn ready(
        &self,
        channel: &str,
        patience: impl std::future::Future<Output = ()>,
    ) {
        let mut patience = std::pin::pin!(patience);
        loop {
            let confirmed = self.confirmed.listen();
            match self.channels().get(channel) {
                Some(known) if !known.confirmed => {}
                _ => return,
            }
            tokio::select! {
                () = confirmed => {}
                // The subscriber is struggling: the wait's other bounds still hold.
                () = &mut patience => return,
            }
        }
    }

    pub(super) fn awaits_confirmation(&self, channel: &str) -> bool {
        self.channels()
            .get(channel)
            .is_some_and(|known| !known.confirmed)
    }

    /// The channels to subscribe, each with its generation.
    fn unconfirmed(&self) -> Vec<(Arc<str>, u64)> {
        let channels = self.channels();
        channels
            .iter()
            .filter(|(_, known)| !known.confirmed)
            .map(|(channel, known)| (Arc::clone(channel), known.generation))
            .collect()
    }

    /// The `SSUBSCRIBE` sent at `generation` was answered; it counts unless the subscription
    /// was found gone meanwhile.
    fn confirm(&self, channel: &str, generation: u64) {
        if let Some(known) = self.channels().get_mut(channel) {
            if known.generation == generation {
                known.confirmed = true;
            }
        }
    }

    fn unconfirm(&self, channel: Option<&str>) {
        let mut channels = self.channels();
        match channel {
            Some(channel) => {
                if let Some(known) = channels.get_mut(channel) {
                    known.confirmed = false;
                    known.generation += 1;
                }
            }
            None => channels.values_mut().for_each(|known| {
                known.confirmed = false;
                known.generation += 1;
            }),
        }
        drop(channels);
        self.wanted.notify(usize::MAX);
    }

    /// Forgets the channels nobody listened on for a while, to unsubscribe them.
    fn take_idle(&self) -> Vec<Arc<str>> {
        let mut idle = Vec::new();
        self.channels().retain(|channel, known| {
            let keep = known.wanted_at.elapsed() < SHARDED_IDLE;
            if !keep {
                idle.push(Arc::clone(channel));
            }
            keep
        });
        idle
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
        if self.inner.connector.is_cluster() {
            return self.start_sharded_subscriber();
        }
        // Not the backend itself: the subscriber must not keep it alive.
        let connector = Arc::clone(&self.inner.connector);
        // Locks' channels (`{key}:free`) and pools' (`{key}:pool:free`).
        let pattern = format!("{}{{*}}*:free", escape_glob(&self.inner.config.prefix));
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
                        wakeups.channels.wake_everyone();
                        let (mut sink, mut messages) = pubsub.split();
                        let listening = async {
                            while let Some(message) = messages.next().await {
                                wakeups.channels.wake(message.get_channel_name());
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
                wakeups.channels.wake_everyone();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        self.spawn_until_closed(closing, subscriber);
    }

    /// Runs a subscriber on the backend's runtime until the backend is dropped, even while it
    /// awaits messages (which may be forever): dropping it closes its connection. On a given
    /// runtime that keeps running it would otherwise stay there for good.
    fn spawn_until_closed(
        &self,
        closing: event_listener::EventListener,
        subscriber: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
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

impl RedisBackend {
    /// The cluster's subscriber: one RESP3 cluster connection whose pushes wake the waiters,
    /// subscribing to each wanted channel on the node serving its slot (redis-rs follows slot
    /// moves and reconnects; a server-side unsubscribe or a lost connection makes it subscribe
    /// again, and wakes everyone to re-check).
    fn start_sharded_subscriber(&self) {
        let connector = Arc::clone(&self.inner.connector);
        let wakeups = Arc::clone(&self.inner.wakeups);
        let connect_timeout = self.inner.config.connect_timeout;
        let command_timeout = self.inner.config.command_timeout;
        let url = self.inner.config.redacted_url();
        let closing = self.inner.closing.listen();
        let subscriber = async move {
            while !wakeups.closed.load(Ordering::Relaxed) {
                let push = {
                    let wakeups = Arc::clone(&wakeups);
                    move |info: PushInfo| {
                        on_push(&wakeups, info);
                        Ok::<(), redis::aio::SendError>(())
                    }
                };
                let connecting = async {
                    match connector.cluster_subscriber(push) {
                        Some(client) => client.get_async_connection().await,
                        None => Err(RedisError::from((
                            redis::ErrorKind::ClientError,
                            "not a cluster",
                        ))),
                    }
                };
                match tokio::time::timeout(connect_timeout, connecting).await {
                    Ok(Ok(mut conn)) => {
                        wakeups.sharded.unconfirm(None);
                        wakeups.channels.wake_everyone();
                        let failure = serve_sharded(&mut conn, &wakeups, command_timeout).await;
                        tracing::warn!(
                            %url,
                            error = %failure,
                            "lockwright: Redis cluster subscriber failed; reconnecting"
                        );
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(%url, error = %err, "lockwright: Redis subscriber failed")
                    }
                    Err(_) => tracing::warn!(%url, "lockwright: Redis subscriber timed out"),
                }
                // Whoever waits for a confirmation stops waiting for this round.
                wakeups.sharded.confirmed.notify(usize::MAX);
                wakeups.channels.wake_everyone();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        self.spawn_until_closed(closing, subscriber);
    }

    /// On a cluster, lets an acquire attempt of a waiter go only once its channel's
    /// subscription is confirmed (at most the command timeout): so no release after the attempt
    /// goes unheard.
    pub(super) async fn sharded_subscription_ready(&self, key: &str) {
        if self.inner.connector.is_cluster() {
            self.sharded_channel_ready(&self.channel(key)).await;
        }
    }

    /// [`Self::sharded_subscription_ready`] for any channel (a pool's).
    pub(super) async fn sharded_channel_ready(&self, channel: &str) {
        // A given runtime that has shut down can make no timer: `eval` then says so, typed.
        if !self.inner.connector.is_cluster() || self.inner.runtime.is_gone() {
            return;
        }
        if !self.inner.wakeups.sharded.awaits_confirmation(channel) {
            return; // no waiter's channel, or already subscribed: no timer needed
        }
        // Run on the backend's runtime, so the caller's executor needs no timer; a given
        // runtime that shuts down meanwhile ends the patience (a timer of its own, polled after
        // that, would panic), and the attempt's `eval` then says so, typed.
        let (runtime, timeout) = (
            self.inner.runtime.handle().clone(),
            self.inner.config.command_timeout,
        );
        let patience = async move {
            let _ = runtime
                .spawn(async move { tokio::time::sleep(timeout).await })
                .await;
        };
        let ready = self.inner.wakeups.sharded.ready(channel, patience);
        ready.await;
    }
}

/// What the cluster's push messages mean for the waiters.
fn on_push(wakeups: &Wakeups, info: PushInfo) {
    let channel = info.data.first().and_then(|value| match value {
        redis::Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    });
    match (info.kind, channel) {
        (PushKind::SMessage, Some(channel)) => {
            wakeups.channels.wake(channel);
        }
        // The server dropped the subscription (its slot moved): subscribe again where it went,
        // and let the channel's waiters re-check meanwhile.
        (PushKind::SUnsubscribe, Some(channel)) => {
            wakeups.sharded.unconfirm(Some(channel));
            wakeups.channels.wake(channel);
        }
        (PushKind::Disconnection, _) => {
            wakeups.sharded.unconfirm(None);
            wakeups.channels.wake_everyone();
        }
        _ => {}
    }
}

/// Keeps the subscriptions in line with the wanted channels, and PINGs; returns why it stopped.
async fn serve_sharded(
    conn: &mut redis::cluster_async::ClusterConnection,
    wakeups: &Wakeups,
    command_timeout: Duration,
) -> Box<dyn std::error::Error + Send + Sync> {
    let sharded = &wakeups.sharded;
    loop {
        let wanted = sharded.wanted.listen();
        for (channel, generation) in sharded.unconfirmed() {
            match tokio::time::timeout(command_timeout, conn.ssubscribe(&*channel)).await {
                Ok(Ok(())) => {
                    sharded.confirm(&channel, generation);
                    // A waiter that stopped waiting for this confirmation (its patience ran
                    // out) tried unsubscribed: a release since then went unheard. Re-check.
                    wakeups.channels.wake(&channel);
                }
                Ok(Err(err)) => return err.into(),
                Err(_) => return TimeoutError(command_timeout).into(),
            }
        }
        sharded.confirmed.notify(usize::MAX);
        for channel in sharded.take_idle() {
            // Best effort: a channel left subscribed costs the server a little memory.
            let _ = tokio::time::timeout(command_timeout, conn.sunsubscribe(&*channel)).await;
        }
        tokio::select! {
            () = wanted => {}
            () = tokio::time::sleep(SUBSCRIBER_KEEPALIVE) => {
                let ping = redis::cmd("PING");
                match tokio::time::timeout(command_timeout, ping.query_async::<redis::Value>(conn)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return err.into(),
                    Err(_) => return TimeoutError(command_timeout).into(),
                }
            }
        }
    }
}
