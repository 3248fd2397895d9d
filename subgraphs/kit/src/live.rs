//! Live streams that follow one entity (a rental's delivery, a rental's activity), on
//! whichever replica the subscriber is connected to.
//!
//! Something that hears of changes (a broker listener, a database notification) nudges
//! the entity's channel in a [`LiveHub`]; each stream then reads the current state
//! itself and sends only what is new. A nudge carries no state, so nudges that are
//! duplicated, reordered or lost in a reconnection (followed by a nudge of everyone)
//! can never make a stream send something stale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use uuid::Uuid;

use crate::metrics::metrics;

/// A nudge to read an entity again, with the trace of the change behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nudge {
    pub traceparent: Option<String>,
}

/// Per-entity channels that a listener nudges.
#[derive(Default)]
pub struct LiveHub {
    channels: Mutex<HashMap<Uuid, broadcast::Sender<Nudge>>>,
}

impl LiveHub {
    /// Listens for changes of `key`; call before reading the current state, so no change
    /// can fall between the read and the listening.
    pub fn listen(self: &Arc<Self>, key: Uuid) -> Listener {
        let mut channels = self.channels.lock().expect("hub lock poisoned");
        let sender = channels.entry(key).or_insert_with(|| broadcast::channel(16).0);
        Listener { receiver: sender.subscribe(), key, hub: self.clone() }
    }

    /// Tells the streams following `key` to look again.
    pub fn nudge(&self, key: Uuid, traceparent: Option<String>) {
        if let Some(sender) = self.channels.lock().expect("hub lock poisoned").get(&key) {
            let _ = sender.send(Nudge { traceparent });
        }
    }

    /// Tells every stream to look again (after a reconnection: changes may have been
    /// missed).
    pub fn nudge_everyone(&self) {
        for sender in self.channels.lock().expect("hub lock poisoned").values() {
            let _ = sender.send(Nudge { traceparent: None });
        }
    }

    /// Entities with at least one listener.
    pub fn watched(&self) -> usize {
        self.channels.lock().expect("hub lock poisoned").len()
    }
}

/// One subscriber's end; dropping it frees the rental's channel when it was the last.
pub struct Listener {
    receiver: broadcast::Receiver<Nudge>,
    key: Uuid,
    hub: Arc<LiveHub>,
}

impl Listener {
    /// Waits for the next nudge; `None` once the hub is gone. A subscriber that fell
    /// behind (many nudges at once) just re-reads once: a nudge only says "look again".
    pub async fn changed(&mut self) -> Option<Nudge> {
        match self.receiver.recv().await {
            Ok(nudge) => Some(nudge),
            Err(broadcast::error::RecvError::Lagged(_)) => Some(Nudge { traceparent: None }),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let mut channels = self.hub.channels.lock().expect("hub lock poisoned");
        if channels.get(&self.key).is_some_and(|sender| sender.receiver_count() <= 1) {
            channels.remove(&self.key);
        }
    }
}

/// Counts an open subscription stream for as long as it lives (`open_streams` here,
/// and the `water_live_subscriptions` metric).
pub struct OpenStream {
    open_streams: Arc<AtomicUsize>,
    service: &'static str,
}

impl OpenStream {
    pub fn new(service: &'static str, open_streams: Arc<AtomicUsize>) -> Self {
        open_streams.fetch_add(1, Ordering::Relaxed);
        metrics().live_subscriptions.with_label_values(&[service]).inc();
        Self { open_streams, service }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
        metrics().live_subscriptions.with_label_values(&[self.service]).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_listener_frees_the_channel() {
        let hub = Arc::new(LiveHub::default());
        let key = Uuid::now_v7();
        let mut first = hub.listen(key);
        let second = hub.listen(key);
        assert_eq!(hub.watched(), 1);
        hub.nudge(key, None);
        assert!(first.changed().await.is_some());
        drop(second);
        assert_eq!(hub.watched(), 1);
        drop(first);
        assert_eq!(hub.watched(), 0);
    }
}
