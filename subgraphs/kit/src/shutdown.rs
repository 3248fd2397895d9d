//! Graceful shutdown in two steps, so a load balancer can take a process out of
//! rotation before it stops taking work.
//!
//! 1. **Draining** (SIGTERM, SIGINT, or a test stopping one service): `/ready` answers
//!    503, and everything else goes on as usual for the drain window.
//! 2. **Stopping** (after the window): no new connections; in-flight requests and
//!    consumer batches finish, live subscriptions complete, the relay publishes what
//!    the last requests committed, and the process exits.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The two moments of a shutdown, as tokens every part of a service watches.
#[derive(Clone, Debug)]
pub struct Lifecycle {
    draining: CancellationToken,
    stopping: CancellationToken,
}

impl Lifecycle {
    /// A lifecycle that starts draining when `shutdown` is cancelled (or when
    /// [`Lifecycle::drain`] is called), and stops `drain` later.
    pub fn new(shutdown: &CancellationToken, drain: Duration) -> Self {
        let draining = shutdown.child_token();
        let stopping = CancellationToken::new();
        let (watched, stop) = (draining.clone(), stopping.clone());
        tokio::spawn(async move {
            watched.cancelled().await;
            if !drain.is_zero() {
                tracing::info!(?drain, "draining: reporting not ready, still serving");
                tokio::time::sleep(drain).await;
            }
            stop.cancel();
        });
        Self { draining, stopping }
    }

    /// Starts the shutdown of this one service.
    pub fn drain(&self) {
        self.draining.cancel();
    }

    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.stopping
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }
}

/// Returns a token that is cancelled when the process receives SIGTERM or SIGINT.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        cancel.cancel();
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut interrupt = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
}
