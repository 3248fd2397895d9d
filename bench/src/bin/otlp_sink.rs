//! An OTLP/HTTP trace receiver that accepts and drops everything, standing in for a
//! collector when the benchmarks measure what exporting traces costs the services:
//!
//!     otlp-sink [PORT=4318]
//!
//! Answers every `POST /v1/traces` with 200 (as a collector that keeps up does) and
//! prints, every 10 s and on Ctrl-C, how many export requests and bytes it received, so
//! a run can show that spans really left the services.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Bytes;

#[derive(Default)]
struct Received {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl Received {
    fn print(&self) {
        println!(
            "otlp-sink: {} export requests, {} bytes",
            self.requests.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed)
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let port: u16 = std::env::args().nth(1).map(|port| port.parse()).transpose()?.unwrap_or(4318);
    let received = Arc::new(Received::default());
    let counted = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let received = counted.clone();
            async move {
                received.requests.fetch_add(1, Ordering::Relaxed);
                received.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("otlp-sink: listening on http://{}", listener.local_addr()?);
    let reporter = received.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(10)).await;
            reporter.print();
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    received.print();
    Ok(())
}
