//! P3, live subscribers: many customers each tracking their own rental's delivery over
//! WebSocket through the router while operators change statuses at a fixed rate.
//!
//! The subscribers live in a process of their own (`subscriber-swarm`), so the memory
//! they take is not counted as the router's or the services'. Each change is timed from
//! the start of the operator's mutation to its arrival at its subscriber, on the wall
//! clock both processes share. Every change must arrive exactly once.
//!
//! Each subscriber holds two sockets in the router: its own, and the router's socket to
//! the delivery subgraph (hive-router shares a subgraph socket only between clients with
//! the same Authorization, and every customer has their own). Where the open-file limit
//! cannot be raised far enough (a process without CAP_SYS_RESOURCE cannot go past its
//! hard limit), the subscribers are spread over as many router processes as needed,
//! as replicas behind a load balancer would be, and the result says how many.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_async::RunQueryDsl;
use serde_json::{Value, json};
use subgraph_kit::Identity;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use uuid::Uuid;

use crate::{BenchStack, cpu_seconds, machine, percentile, rss_mib, unix_micros};

/// Rentals created at once while setting up.
const RENTING_AT_ONCE: usize = 16;

/// One status change the operator makes: which rental, by which mutation, to which status.
struct Change {
    rental_id: Uuid,
    delivery_id: Uuid,
    mutation: &'static str,
    status: &'static str,
}

/// `subscribers` customers each subscribe to their own rental; then `rate` changes per
/// second for `seconds` (at most two per rental: shipped, then delivered).
pub async fn run(subscribers: usize, rate: usize, seconds: u64) -> anyhow::Result<Value> {
    // Each subscriber is a socket in the swarm and two in the router (client and
    // subgraph side) and one in the delivery service; the router inherits this limit.
    let file_limit = raise_file_limit(subscribers as u64 * 4 + 10_000)?;
    let stack = BenchStack::start().await?;
    let product_id = stack.rentable_product("Live model", 19_900, (subscribers + 100) as i32).await?;

    let setup_started = Instant::now();
    let rentals = rent_many(&stack, product_id, subscribers).await?;
    let deliveries = wait_for_deliveries(&stack, subscribers).await?;
    let setup_seconds = setup_started.elapsed().as_secs_f64();

    // Room for two sockets per subscriber in each router, and some for everything else.
    let per_router = ((file_limit.saturating_sub(1_000)) / 2).max(1) as usize;
    let mut extra_routers = Vec::new();
    while (extra_routers.len() + 1) * per_router < subscribers {
        extra_routers.push(stack.another_router().await?);
    }
    let routers: Vec<&stack::RouterProcess> = std::iter::once(&stack.router).chain(&extra_routers).collect();
    let router_pids: Vec<u32> = routers.iter().filter_map(|router| router.pid()).collect();
    let router_urls: Vec<String> = routers.iter().map(|router| router.websocket_url()).collect();
    let routers_rss = |pids: &[u32]| pids.iter().filter_map(|pid| rss_mib(*pid)).sum::<f64>();
    let routers_cpu = |pids: &[u32]| pids.iter().filter_map(|pid| cpu_seconds(*pid)).sum::<f64>();
    let services_pid = std::process::id();
    let router_before = routers_rss(&router_pids);
    let services_before = rss_mib(services_pid).unwrap_or(0.0);

    // The swarm subscribes everyone and reports what arrives.
    let subscribing = Instant::now();
    let mut swarm = tokio::process::Command::new(stack::binaries::binary("subscriber-swarm")?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let swarm_pid = swarm.id().unwrap_or(0);
    let mut stdin = swarm.stdin.take().expect("piped stdin");
    let mut listing = format!("{}\n", router_urls.join(" "));
    for (token, rental_id) in &rentals {
        listing.push_str(&format!("{token} {rental_id}\n"));
    }
    listing.push('\n');
    stdin.write_all(listing.as_bytes()).await?;
    stdin.flush().await?;

    let arrivals: Arc<Mutex<Vec<(Uuid, String, u128)>>> = Arc::default();
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let (ready_sender, ready) = tokio::sync::oneshot::channel::<(usize, usize)>();
    let reader = {
        let (arrivals, failures) = (arrivals.clone(), failures.clone());
        let mut lines = BufReader::new(swarm.stdout.take().expect("piped stdout")).lines();
        tokio::spawn(async move {
            let mut ready_sender = Some(ready_sender);
            while let Ok(Some(line)) = lines.next_line().await {
                let words: Vec<&str> = line.splitn(4, ' ').collect();
                match words.as_slice() {
                    ["ready", subscribed, failed] => {
                        let counts = (subscribed.parse().unwrap_or(0), failed.parse().unwrap_or(0));
                        if let Some(sender) = ready_sender.take() {
                            let _ = sender.send(counts);
                        }
                    }
                    ["event", rental, status, at] => {
                        if let (Ok(rental), Ok(at)) = (rental.parse(), at.parse()) {
                            arrivals.lock().expect("arrivals lock").push((rental, status.to_string(), at));
                        }
                    }
                    _ => failures.lock().expect("failures lock").push(line),
                }
            }
        })
    };
    let (subscribed, failed) = tokio::time::timeout(Duration::from_secs(900), ready)
        .await
        .map_err(|_| anyhow::anyhow!("subscribers not ready after 15 minutes"))??;
    let subscribe_seconds = subscribing.elapsed().as_secs_f64();
    anyhow::ensure!(failed == 0, "{failed} subscriptions failed: {:?}", failures.lock().expect("lock").iter().next());
    // Let the connections settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let router_after = routers_rss(&router_pids);
    let services_after = rss_mib(services_pid).unwrap_or(0.0);
    let swarm_rss = rss_mib(swarm_pid).unwrap_or(0.0);

    // The changes: ship every delivery in turn, then complete them, at `rate` per second.
    let total = (rate * seconds as usize).min(2 * subscribers);
    let changes: Vec<Change> = (0..total)
        .map(|index| {
            let rental_id = rentals[index % subscribers].1;
            let delivery_id = deliveries[&rental_id];
            if index < subscribers {
                Change { rental_id, delivery_id, mutation: "startDelivery", status: "SHIPPING" }
            } else {
                Change { rental_id, delivery_id, mutation: "completeDelivery", status: "DELIVERED" }
            }
        })
        .collect();
    let operator = Arc::new(stack.token(&Identity::Operator { subject: "bench".into() }));
    let stack = Arc::new(stack);
    let sent_at: Arc<Mutex<HashMap<(Uuid, &'static str), u128>>> = Arc::default();
    let mutation_errors = Arc::new(AtomicU64::new(0));
    // How long each operator mutation took, to tell the write path from the way back.
    let mutation_times: Arc<Mutex<Vec<f64>>> = Arc::default();
    let router_cpu_before = routers_cpu(&router_pids);
    let changing = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut in_flight = Vec::with_capacity(total);
    for change in changes {
        ticker.tick().await;
        let (stack, operator, sent_at, errors, times) =
            (stack.clone(), operator.clone(), sent_at.clone(), mutation_errors.clone(), mutation_times.clone());
        in_flight.push(tokio::spawn(async move {
            sent_at.lock().expect("sent lock").insert((change.rental_id, change.status), unix_micros());
            let query = format!("mutation($id: ID!) {{ {}(id: $id) {{ status }} }}", change.mutation);
            let started = Instant::now();
            let response = stack.graphql(&operator, &query, json!({ "id": change.delivery_id })).await;
            times.lock().expect("times lock").push(started.elapsed().as_secs_f64() * 1000.0);
            match response {
                Ok(body) if body["data"][change.mutation]["status"] == change.status => {}
                _ => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    futures::future::join_all(in_flight).await;
    let changing_seconds = changing.elapsed().as_secs_f64();
    let router_cpu = routers_cpu(&router_pids) - router_cpu_before;

    // Wait for the stragglers, then a little longer so duplicates would show.
    let waiting = Instant::now();
    while arrivals.lock().expect("lock").len() < total && waiting.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(30), swarm.wait()).await;
    reader.abort();

    let sent_at = sent_at.lock().expect("lock").clone();
    let arrivals = arrivals.lock().expect("lock").clone();
    let mut received: HashMap<(Uuid, &'static str), Vec<u128>> = HashMap::new();
    let mut unexpected = 0usize;
    for (rental_id, status, at) in &arrivals {
        let status = match status.as_str() {
            "SHIPPING" => "SHIPPING",
            "DELIVERED" => "DELIVERED",
            _ => "",
        };
        if sent_at.contains_key(&(*rental_id, status)) {
            received.entry((*rental_id, status)).or_default().push(*at);
        } else {
            unexpected += 1;
        }
    }
    let lost = sent_at.keys().filter(|key| !received.contains_key(key)).count();
    let duplicated = received.values().map(|times| times.len() - 1).sum::<usize>() + unexpected;
    let mut latencies: Vec<f64> =
        received.iter().map(|(key, times)| times[0].saturating_sub(sent_at[key]) as f64 / 1000.0).collect();
    latencies.sort_by(f64::total_cmp);

    let mut mutation_times = mutation_times.lock().expect("lock").clone();
    mutation_times.sort_by(f64::total_cmp);
    let per_subscriber_kib = |before: f64, after: f64| (after - before) * 1024.0 / subscribers as f64;
    let result = json!({
        "scenario": "live-subscribers",
        "machine": machine(),
        "subscribers": subscribed,
        "fileLimit": file_limit,
        "setupSeconds": setup_seconds,
        "subscribeSeconds": subscribe_seconds,
        "offeredChangesPerSecond": rate,
        "changes": total,
        "changesPerSecond": total as f64 / changing_seconds,
        "mutationErrors": AtomicU64::load(&mutation_errors, Ordering::Relaxed),
        "delivered": latencies.len(),
        "lost": lost,
        "duplicated": duplicated,
        "socketErrors": failures.lock().expect("lock").len(),
        "latencyMs": {
            "p50": percentile(&latencies, 0.5),
            "p99": percentile(&latencies, 0.99),
            "max": latencies.last(),
        },
        "mutationMs": { "p50": percentile(&mutation_times, 0.5), "p99": percentile(&mutation_times, 0.99) },
        "router": {
            "processes": router_pids.len(),
            "rssMiBBefore": router_before,
            "rssMiBAfter": router_after,
            "rssKiBPerSubscriber": per_subscriber_kib(router_before, router_after),
            "cpuShareWhileChanging": router_cpu / changing_seconds,
        },
        "services": {
            "note": "the four subgraphs share one process; only delivery holds subscriptions",
            "rssMiBBefore": services_before,
            "rssMiBAfter": services_after,
            "rssKiBPerSubscriber": per_subscriber_kib(services_before, services_after),
        },
        "swarmRssMiB": swarm_rss,
    });
    for router in extra_routers {
        router.stop().await?;
    }
    match Arc::try_unwrap(stack) {
        Ok(stack) => stack.stop().await?,
        Err(_) => anyhow::bail!("tasks still hold the stack"),
    }
    Ok(result)
}

/// Rents `count` rentals, each for a customer of its own; returns each customer's token
/// with the rental's id.
async fn rent_many(stack: &BenchStack, product_id: Uuid, count: usize) -> anyhow::Result<Vec<(String, Uuid)>> {
    let next = AtomicUsize::new(0);
    let workers = (0..RENTING_AT_ONCE).map(|_| async {
        let mut rented = Vec::new();
        while next.fetch_add(1, Ordering::Relaxed) < count {
            let token = stack.token(&Identity::Customer { customer_id: Uuid::now_v7() });
            let rental_id = stack.rent(&token, product_id).await?;
            rented.push((token, rental_id));
        }
        anyhow::Ok(rented)
    });
    let mut all = Vec::with_capacity(count);
    for rented in futures::future::join_all(workers).await {
        all.extend(rented?);
    }
    Ok(all)
}

/// Waits until every rental has its delivery; returns the delivery of each rental.
async fn wait_for_deliveries(stack: &BenchStack, count: usize) -> anyhow::Result<HashMap<Uuid, Uuid>> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let started = Instant::now();
    loop {
        let mut connection =
            stack.subgraphs.delivery.database.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
        let rows: Vec<Row> = diesel::sql_query("SELECT rental_id, id FROM deliveries").load(&mut connection).await?;
        if rows.len() >= count {
            return Ok(rows.into_iter().map(|row| (row.rental_id, row.id)).collect());
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "only {} of {count} deliveries", rows.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Raises this process's open-file limit (inherited by the router and the swarm) to at
/// least `wanted`, as far as the system allows; returns the limit now in force.
fn raise_file_limit(wanted: u64) -> anyhow::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        anyhow::ensure!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0, "getrlimit failed");
        if limit.rlim_cur >= wanted {
            return Ok(limit.rlim_cur);
        }
        let raised = libc::rlimit { rlim_cur: wanted, rlim_max: limit.rlim_max.max(wanted) };
        // Raising the hard limit needs privileges; without them, go as far as the hard limit.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            let soft = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            anyhow::ensure!(libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0, "setrlimit failed");
            return Ok(limit.rlim_max);
        }
    }
    Ok(wanted)
}
