//! Every benchmark in tiny mode: a few seconds each, against the debug build, checking
//! only that it runs and its answers are right (no timing assertions), so the harness
//! cannot rot between benchmark runs.

use std::time::Duration;

#[tokio::test]
async fn rent_loop_runs() {
    let result =
        bench::scenarios::rent_loop::run_with(2, 4, Duration::from_millis(200), false).await.expect("rent-loop runs");
    assert!(result["rents"].as_u64().unwrap_or(0) > 0, "{result}");
    assert_eq!(result["errors"], 0, "{result}");
}

#[tokio::test]
async fn live_latency_runs() {
    let result = bench::scenarios::live_latency::run(5).await.expect("live-latency runs");
    assert_eq!(result["changes"], 10, "{result}");
}

#[tokio::test]
async fn event_pipeline_runs() {
    let result = bench::scenarios::event_pipeline::run(200, 1).await.expect("event-pipeline runs");
    assert_eq!(result["applied"], result["produced"], "every event applied exactly once: {result}");
}

#[tokio::test]
async fn live_subscribers_runs() {
    let result = bench::scenarios::live_subscribers::run(20, 20, 1).await.expect("live-subscribers runs");
    assert_eq!(result["subscribers"], 20, "{result}");
    assert_eq!(result["changes"], 20, "{result}");
    assert_eq!(result["delivered"], 20, "every change arrives: {result}");
    assert_eq!(result["lost"], 0, "{result}");
    assert_eq!(result["duplicated"], 0, "{result}");
    assert_eq!(result["mutationErrors"], 0, "{result}");
}

#[tokio::test]
async fn billing_run_runs() {
    let result = bench::scenarios::billing_run::run(300, false).await.expect("billing-run runs");
    assert_eq!(result["errors"], 0, "every period charged once, and heard of: {result}");
    assert!(result["heardSeconds"].is_number(), "{result}");
}

#[tokio::test]
async fn flood_isolation_runs() {
    let result = bench::scenarios::flood_isolation::run(2, 4).await.expect("flood-isolation runs");
    assert_eq!(result["errors"], 0, "B's answers all right, A's each a rental or RATE_LIMITED: {result}");
    assert!(result["alone"]["queries"].as_u64().unwrap_or(0) > 0, "{result}");
    assert!(result["flooded"]["queries"].as_u64().unwrap_or(0) > 0, "{result}");
    assert!(result["flood"]["refused"].as_u64().unwrap_or(0) > 0, "the flood went past A's limit: {result}");
}
