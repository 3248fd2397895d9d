//! The subscribers of the live-subscribers benchmark, in a process of their own so that
//! their memory is not counted as the router's or the delivery service's.
//!
//! Reads the routers' WebSocket URLs (separated by spaces; subscribers take them in
//! turn) from the first line of stdin, then one `TOKEN
//! RENTAL_ID` per line up to an empty line. Opens one socket per rental, waits for each
//! subscription's first (current) status, and prints `ready SUBSCRIBED FAILED`. From then
//! on it prints `event RENTAL_ID STATUS UNIX_MICROS` for every status that arrives and
//! `error RENTAL_ID MESSAGE` for a socket that fails, until stdin closes.

use std::sync::Arc;
use std::time::Duration;

use bench::unix_micros;
use bench::websocket::{next_message, subscribe};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc};

/// Sockets being opened at once: enough to be quick, few enough not to overflow the
/// router's accept backlog.
const OPENING_AT_ONCE: usize = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let first = lines.next_line().await?.ok_or_else(|| anyhow::anyhow!("no URL on stdin"))?;
    let urls: Vec<String> = first.split_whitespace().map(str::to_owned).collect();
    anyhow::ensure!(!urls.is_empty(), "no URL on stdin");
    let mut subscribers = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if line.is_empty() {
            break;
        }
        let (token, rental_id) = line.split_once(' ').ok_or_else(|| anyhow::anyhow!("bad line: {line}"))?;
        subscribers.push((token.to_owned(), rental_id.to_owned()));
    }

    let (output, mut printed) = mpsc::unbounded_channel::<String>();
    let printer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = printed.recv().await {
            let mut batch = line;
            while let Ok(more) = printed.try_recv() {
                batch.push_str(&more);
            }
            if stdout.write_all(batch.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });

    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (ready, mut readiness) = mpsc::unbounded_channel::<bool>();
    let count = subscribers.len();
    for (index, (token, rental_id)) in subscribers.into_iter().enumerate() {
        let (url, opening, ready, output) =
            (urls[index % urls.len()].clone(), opening.clone(), ready.clone(), output.clone());
        tokio::spawn(async move {
            let permit = opening.acquire_owned().await.expect("semaphore never closes");
            let opened = async {
                let mut socket = subscribe(&url, &token, &rental_id).await?;
                let first = next_message(&mut socket, Duration::from_secs(60)).await?;
                anyhow::ensure!(first["type"] == "next", "expected the current status, got {first}");
                anyhow::Ok(socket)
            }
            .await;
            drop(permit);
            let mut socket = match opened {
                Ok(socket) => {
                    let _ = ready.send(true);
                    socket
                }
                Err(error) => {
                    let _ = ready.send(false);
                    let _ = output.send(format!("error {rental_id} {}\n", one_line(&error)));
                    return;
                }
            };
            loop {
                match next_message(&mut socket, Duration::from_secs(3600)).await {
                    Ok(message) if message["type"] == "next" => {
                        let status =
                            message["payload"]["data"]["deliveryStatusChanged"]["status"].as_str().unwrap_or("NONE");
                        let _ = output.send(format!("event {rental_id} {status} {}\n", unix_micros()));
                    }
                    Ok(message) if message["type"] == "complete" => return,
                    Ok(message) => {
                        let _ = output.send(format!("error {rental_id} unexpected {}\n", message));
                    }
                    Err(error) => {
                        let _ = output.send(format!("error {rental_id} {}\n", one_line(&error)));
                        return;
                    }
                }
            }
        });
    }
    let (mut subscribed, mut failed) = (0, 0);
    for _ in 0..count {
        match readiness.recv().await {
            Some(true) => subscribed += 1,
            _ => failed += 1,
        }
    }
    let _ = output.send(format!("ready {subscribed} {failed}\n"));

    // Runs until the benchmark closes stdin.
    while lines.next_line().await?.is_some() {}
    drop(output);
    printer.abort();
    Ok(())
}

fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}
