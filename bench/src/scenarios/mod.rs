//! One module per scenario; each binary in `src/bin` runs one, and the tiny-mode test
//! runs them all briefly so they cannot rot.

pub mod billing_run;
pub mod event_pipeline;
pub mod flood_isolation;
pub mod live_latency;
pub mod live_subscribers;
pub mod rent_loop;
