//! Waiting out an outage: exponential, capped backoff, and one log line when it starts
//! and one when it ends, never one per attempt.
//!
//! Every reconnect and retry loop (the event bus, the relay, consumers holding a
//! message, the live listener, the reconciler) goes through these two types, so a
//! 30-second database or broker outage costs a handful of attempts and two log lines.

use std::fmt;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Delays that double from `first` up to `max`, with jitter so replicas do not retry
/// in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max, next: first }
    }

    /// 100 ms doubling to 5 s: the default for reconnecting to a dependency.
    pub fn reconnect() -> Self {
        Self::new(Duration::from_millis(100), Duration::from_secs(5))
    }

    /// The delay before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        // ±20 %, from the clock's low bits: enough to spread replicas, no RNG needed.
        let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let nanos = clock.subsec_nanos() ^ std::process::id();
        let spread = base.as_millis() as u64 / 5;
        let jitter = if spread == 0 { 0 } else { u64::from(nanos) % (2 * spread) };
        Duration::from_millis((base.as_millis() as u64).saturating_sub(spread) + jitter)
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.first;
    }

    /// Sleeps for the next delay; false if `shutdown` came first.
    pub async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = shutdown.cancelled() => false,
        }
    }
}

/// Tracks whether a dependency is down, so the outage is logged when it starts and
/// when it ends, with its length and how many attempts it took.
#[derive(Debug)]
pub struct Outage {
    what: String,
    since: Option<(Instant, u32)>,
}

impl Outage {
    /// `what` names the dependency and who depends on it: "rental: the database".
    pub fn new(what: impl Into<String>) -> Self {
        Self { what: what.into(), since: None }
    }

    /// Records a failed attempt; logs a warning only for the first of an outage.
    pub fn failed(&mut self, error: &dyn fmt::Display) {
        match &mut self.since {
            None => {
                tracing::warn!(what = %self.what, %error, "unavailable; retrying with backoff (logged once per outage)");
                self.since = Some((Instant::now(), 1));
            }
            Some((_, attempts)) => {
                *attempts += 1;
                tracing::debug!(what = %self.what, %error, attempts = *attempts, "still unavailable");
            }
        }
    }

    /// Records a success; logs the end of the outage if there was one.
    pub fn recovered(&mut self) {
        if let Some((since, attempts)) = self.since.take() {
            tracing::info!(what = %self.what, down_for = ?since.elapsed(), attempts, "available again");
        }
    }

    pub fn is_down(&self) -> bool {
        self.since.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let delays: Vec<u128> = (0..6).map(|_| backoff.next_delay().as_millis()).collect();
        for (delay, base) in delays.iter().zip([100u128, 200, 400, 800, 800, 800]) {
            assert!((base * 8 / 10..=base * 12 / 10).contains(delay), "{delay} ms is within 20 % of {base} ms");
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn an_outage_is_down_until_it_recovers() {
        let mut outage = Outage::new("test: a dependency");
        assert!(!outage.is_down());
        outage.failed(&"refused");
        outage.failed(&"refused again");
        assert!(outage.is_down());
        outage.recovered();
        assert!(!outage.is_down());
    }
}
