//! A circuit breaker for calls to another service: after enough consecutive failures
//! it opens and callers fail at once, without waiting on a service that is down; after
//! a pause it lets one probe through, and closes again when the probe succeeds.
//!
//! The state machine is pure (time is passed in), so it is tested without sleeping.
//!
//! Why not `recloser` (already in the dependency tree through hive-router): renting
//! needs three things it does not offer. A look without taking a permit
//! ([`CircuitBreaker::peek`]), so `rent` fails fast before it writes anything; the time
//! left until the next probe ([`Refused::retry_after`]), which becomes the error's
//! `retryAfterSeconds`; and the state, for the `water_payment_breaker_open` metric.
//! recloser only wraps a call and keeps its state private.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// While the one probe is out, others are asked to come back this soon: the probe's
/// answer arrives within one call timeout.
const PROBE_PENDING_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long it stays open before letting a probe through.
    pub open_for: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else is refused until it reports.
    HalfOpen,
}

/// The caller may go ahead; report the outcome with [`CircuitBreaker::record`].
///
/// A permit dropped without a report (its call was cancelled: `rent`'s request future
/// is dropped when the client goes away) says nothing about the other service. If it
/// carried the probe, the next call probes instead; otherwise nothing changes.
#[derive(Debug)]
#[must_use = "report the call's outcome with CircuitBreaker::record"]
pub struct Permit<'breaker> {
    breaker: &'breaker CircuitBreaker,
    probe: bool,
    reported: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker.release_probe();
        }
    }
}

/// The breaker is open: try again after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self { config, state: Mutex::new(State::Closed { failures: 0 }) }
    }

    pub fn admit(&self) -> Result<Permit<'_>, Refused> {
        self.admit_at(Instant::now())
    }

    pub fn admit_at(&self, now: Instant) -> Result<Permit<'_>, Refused> {
        let mut state = self.state.lock().expect("breaker lock poisoned");
        match *state {
            State::Closed { .. } => Ok(Permit { breaker: self, probe: false, reported: false }),
            State::Open { until } if now < until => Err(Refused { retry_after: until - now }),
            State::Open { .. } => {
                *state = State::HalfOpen;
                Ok(Permit { breaker: self, probe: true, reported: false })
            }
            State::HalfOpen => Err(Refused { retry_after: PROBE_PENDING_RETRY }),
        }
    }

    /// Would a call be admitted now? A look only: no permit is taken.
    pub fn peek(&self) -> Result<(), Refused> {
        self.peek_at(Instant::now())
    }

    pub fn peek_at(&self, now: Instant) -> Result<(), Refused> {
        match *self.state.lock().expect("breaker lock poisoned") {
            State::Open { until } if now < until => Err(Refused { retry_after: until - now }),
            State::HalfOpen => Err(Refused { retry_after: PROBE_PENDING_RETRY }),
            _ => Ok(()),
        }
    }

    /// Reports how a permitted call went. Only failures of the other service count:
    /// a refusal it gave on purpose (a declined card) is a success here.
    pub fn record(&self, permit: Permit<'_>, succeeded: bool) {
        self.record_at(permit, succeeded, Instant::now());
    }

    pub fn record_at(&self, mut permit: Permit<'_>, succeeded: bool, now: Instant) {
        permit.reported = true;
        let mut state = self.state.lock().expect("breaker lock poisoned");
        *state = match (*state, succeeded) {
            (_, true) => State::Closed { failures: 0 },
            // A failed probe opens the breaker again for a full period.
            (State::HalfOpen, false) => State::Open { until: now + self.config.open_for },
            (State::Closed { failures }, false) if failures + 1 >= self.config.failure_threshold => {
                tracing::warn!(failures = failures + 1, open_for = ?self.config.open_for, "circuit breaker opened");
                State::Open { until: now + self.config.open_for }
            }
            (State::Closed { failures }, false) => State::Closed { failures: failures + 1 },
            // A slow call that started before the breaker opened changes nothing.
            (open @ State::Open { .. }, false) => open,
        };
        if permit.probe && succeeded {
            tracing::info!("circuit breaker closed: the probe succeeded");
        }
    }

    /// The probe's call was cancelled before it reported: the next call probes.
    fn release_probe(&self) {
        // Never panic in a drop: a poisoned lock leaves the state as it is.
        if let Ok(mut state) = self.state.lock()
            && *state == State::HalfOpen
        {
            tracing::info!("circuit breaker: the probe's call was cancelled; the next call probes");
            *state = State::Open { until: Instant::now() };
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(*self.state.lock().expect("breaker lock poisoned"), State::Closed { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(10) })
    }

    /// Three failed calls at `at`: the breaker opens.
    fn open(breaker: &CircuitBreaker, at: Instant) {
        for _ in 0..3 {
            let permit = breaker.admit_at(at).expect("closed");
            breaker.record_at(permit, false, at);
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_refuses_with_the_remaining_time() {
        let breaker = breaker();
        let start = Instant::now();
        open(&breaker, start);
        let refused = breaker.admit_at(start + Duration::from_secs(4)).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_secs(6));
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let breaker = breaker();
        let now = Instant::now();
        for succeeded in [false, false, true, false, false] {
            let permit = breaker.admit_at(now).expect("stays closed");
            breaker.record_at(permit, succeeded, now);
        }
        assert!(!breaker.is_open());
    }

    #[test]
    fn after_the_pause_one_probe_decides() {
        let breaker = breaker();
        let start = Instant::now();
        open(&breaker, start);
        let later = start + Duration::from_secs(10);
        let probe = breaker.admit_at(later).expect("the probe goes through");
        assert!(breaker.admit_at(later).is_err(), "only one probe at a time");
        breaker.record_at(probe, false, later);
        assert!(breaker.admit_at(later + Duration::from_secs(5)).is_err(), "a failed probe re-opens it");

        let probe = breaker.admit_at(later + Duration::from_secs(10)).expect("next probe");
        breaker.record_at(probe, true, later + Duration::from_secs(10));
        assert!(!breaker.is_open());
        assert!(breaker.admit_at(later + Duration::from_secs(10)).is_ok());
    }

    /// The call carrying the probe can be cancelled before it reports: `rent`'s request
    /// future is dropped when its client goes away (a timeout, a closed connection).
    /// That says nothing about payment, and must not leave the breaker waiting for a
    /// probe that never reports, refusing every call from then on.
    #[test]
    fn a_probe_dropped_without_its_outcome_lets_the_next_call_probe() {
        let breaker = breaker();
        let start = Instant::now();
        open(&breaker, start);
        let later = start + Duration::from_secs(10);
        let probe = breaker.admit_at(later).expect("the probe goes through");
        drop(probe);
        assert!(breaker.peek().is_ok(), "a call may go ahead again");
        let next = breaker.admit().expect("the next call probes");
        breaker.record(next, true);
        assert!(!breaker.is_open());
    }

    #[test]
    fn a_dropped_call_of_a_closed_breaker_changes_nothing() {
        let breaker = breaker();
        let now = Instant::now();
        let permit = breaker.admit_at(now).unwrap();
        let failed = breaker.admit_at(now).unwrap();
        breaker.record_at(failed, false, now);
        drop(permit);
        for _ in 0..2 {
            let permit = breaker.admit_at(now).unwrap();
            breaker.record_at(permit, false, now);
        }
        assert!(breaker.is_open(), "three failures open it, the dropped call counted for nothing");
    }
}
