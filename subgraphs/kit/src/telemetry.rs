//! Tracing setup: human-readable lines by default, JSON with `LOG_FORMAT=json`; the level
//! comes from `RUST_LOG` (default `info`).

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber once; later calls (tests, the launcher) are no-ops.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,lapin=warn"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format == "json");
    let result =
        if json { fmt().with_env_filter(filter).json().try_init() } else { fmt().with_env_filter(filter).try_init() };
    // An error only means a subscriber is already installed, which is fine.
    let _ = result;
}

/// For tests: warnings and errors only (unless `RUST_LOG` says otherwise), written
/// through the test harness so a passing test prints nothing.
pub fn init_for_tests() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = fmt().with_env_filter(filter).with_test_writer().try_init();
}
