//! The steady load of the operations tests and of the rolling-restart benchmark, through
//! the router, as a client sees the system while replicas come and go:
//!
//! - customers rent (a fresh idempotency key each time; some retry under the same key,
//!   which must return the same rental; some pay with the declined card), cancel some
//!   rentals, and read `myRentals`;
//! - operators work the delivery queue (start, then complete);
//! - live watchers follow rentals' deliveries over graphql-transport-ws and subscribe
//!   again whenever their stream completes, their socket drops, or the router ends the
//!   subscription with an error because its socket to the subgraph closed
//!   ([`ROUTER_SOCKET_FAILURE`]), all before the delivery ended: each checks that it
//!   saw every status in order, none twice, and each such retry is counted.
//!
//! Every answer is sorted into a kind (`ok`, an error code, a transport failure) and
//! judged: expected (`ok`, or a refusal the request itself earns, such as
//! PAYMENT_DECLINED for the declined card) or failed. What the customers were told
//! about their rents feeds [`crate::audit::audit`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use subgraph_kit::{Database, Identity, TokenIssuer};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::RentTold;

/// The simulated card network's test cards (`payment::domain`, the card network), one
/// home for every suite: every charge approved;
pub const APPROVED: &str = "4242424242424242";
/// every charge declined;
pub const DECLINED: &str = "4000000000000002";
/// approved at rent, declined for every later month (its contracts go past due).
pub const DECLINES_LATER: &str = "4000000000000341";

const RENT: &str = "mutation($input: RentInput!) { rent(input: $input) { id status } }";
const CANCEL: &str = "mutation($id: ID!) { cancelRental(id: $id) { id status } }";
const MY_RENTALS: &str = "query { myRentals(first: 5) { edges { node { id status } } } }";
const QUEUE: &str =
    "query($status: DeliveryStatus) { deliveries(status: $status, first: 10) { edges { node { id status } } } }";
const TRACK: &str = "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status } }";

/// How much load to offer.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadSpec {
    pub customers: usize,
    pub operators: usize,
    /// Live subscribers open at once (each follows one rental at a time).
    pub watchers: usize,
    /// Pause between one customer's rounds.
    pub customer_pause: Duration,
    /// Pause between an operator's rounds. Slower operators than customers let
    /// deliveries wait, so that many live subscriptions stay open at once.
    pub operator_pause: Duration,
}

/// One request's answer: its kind, whether that was an expected answer, and when.
#[derive(Debug, Clone)]
pub struct Sample {
    pub operation: &'static str,
    pub kind: String,
    pub expected: bool,
    pub started: Instant,
    pub took: Duration,
}

/// Everything the clients saw.
#[derive(Default)]
pub struct Tally {
    pub samples: Vec<Sample>,
    /// What each rent asked and was told, for the audit.
    pub rents: Vec<RentTold>,
    /// Broken promises the clients saw themselves.
    pub violations: Vec<String>,
    /// A few failed answers in full, to say what went wrong.
    pub failures: Vec<String>,
}

impl Tally {
    /// operation → answer kind → count.
    pub fn answers(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut answers: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        for sample in &self.samples {
            *answers.entry(sample.operation.to_owned()).or_default().entry(sample.kind.clone()).or_default() += 1;
        }
        answers
    }

    pub fn failed(&self) -> usize {
        self.samples.iter().filter(|sample| !sample.expected).count()
    }
}

/// One rental's delivery as a watcher followed it.
#[derive(Debug, Clone, Default)]
pub struct Followed {
    /// Statuses in the order they arrived, the repeat of the current status that opens
    /// every new subscription left out.
    pub seen: Vec<String>,
    /// Subscriptions opened for it (1 when nothing interrupted it).
    pub subscriptions: usize,
    /// Streams that completed before the delivery ended (a replica restarting).
    pub completed_early: usize,
    /// Sockets that dropped without `complete`.
    pub cut: usize,
    /// When this watcher was between two subscriptions (Unix seconds): from the end of
    /// one to the first event of the next.
    pub gaps: Vec<(f64, f64)>,
    /// The start of the gap this watcher is in now, if it is resubscribing.
    pub gap_started: Option<f64>,
    /// Subscriptions the router ended with an error because its pooled WebSocket to
    /// the subgraph closed under them (see [`ROUTER_SOCKET_FAILURE`]).
    pub router_socket_failures: usize,
}

/// The error the router (hive-router 0.2.19) ends a subscription with when its pooled
/// WebSocket to the subgraph replica closed under it: a subscription placed on the
/// socket just as the stopping replica closed it (a `next` carrying only this error,
/// before any event), or one the replica had started in its last moments and dropped
/// without `complete` (a graphql-transport-ws `error` after some events). Either way
/// the client subscribes again, as after `complete`; the first event of the new
/// subscription is the current status.
pub const ROUTER_SOCKET_FAILURE: &str = "SUBGRAPH_WEBSOCKET_CLIENT_FAILURE";

/// What the watchers saw, once they have finished.
#[derive(Debug, Default)]
pub struct LiveReport {
    pub rentals_followed: usize,
    pub events: usize,
    pub resubscribed: usize,
    /// Resubscriptions after a stream that ended with `complete`.
    pub completed_early: usize,
    /// Resubscriptions after a socket that dropped without `complete`.
    pub cut: usize,
    /// Resubscriptions after the router ended a subscription with
    /// [`ROUTER_SOCKET_FAILURE`].
    pub router_socket_failures: usize,
    /// Statuses stored in the delivery database that a watcher never saw: a delivery's
    /// last status, or an earlier one that was current only while the watcher held one
    /// subscription throughout.
    pub lost: usize,
    /// What was lost, for the first few: the rental, the status, what the watcher saw
    /// and what happened.
    pub lost_examples: Vec<String>,
    /// Intermediate statuses a watcher never saw that were current while it was between
    /// two subscriptions (from its learning that one ended to the first event of the
    /// next). A subscription starts with the current status, so one that came and went
    /// around a resubscription cannot be delivered; reported apart from `lost`.
    pub skipped_around_resubscription: usize,
    /// Statuses out of order or seen twice, and other broken promises.
    pub violations: Vec<String>,
}

type Watched = Arc<Mutex<HashMap<String, Followed>>>;

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    url: String,
    tally: Arc<Mutex<Tally>>,
}

/// Whether an answer is one the request earns by itself (the system worked).
fn expected(operation: &str, kind: &str, card: Option<&str>) -> bool {
    match (operation, kind) {
        (_, "ok") => true,
        ("rent" | "rent (same key)", "PAYMENT_DECLINED") => card == Some(DECLINED),
        // Another operator, or a cancellation, got there first.
        ("startDelivery", "CONFLICT") => true,
        ("completeDelivery", "CONFLICT" | "WAITING_FOR_STOCK") => true,
        // The delivery arrived before the customer cancelled.
        ("cancelRental", "CONFLICT") => true,
        _ => false,
    }
}

/// The kind of an answer: `ok` when it has no errors and the data it must have, the
/// first error's code otherwise, or how the transport failed.
fn kind_of(answer: &Result<Value, String>, data: &str) -> String {
    match answer {
        Err(transport) => transport.clone(),
        Ok(body) => match body["errors"][0]["extensions"]["code"].as_str() {
            Some(code) => code.to_owned(),
            None if body.get("errors").is_some() => "ERROR_WITHOUT_CODE".to_owned(),
            None if body["data"][data].is_object() => "ok".to_owned(),
            None => "unexpected shape".to_owned(),
        },
    }
}

impl Client {
    async fn call(
        &self,
        operation: &'static str,
        card: Option<&str>,
        token: &str,
        query: &str,
        variables: Value,
    ) -> Result<Value, String> {
        let started = Instant::now();
        let sent =
            self.http.post(&self.url).bearer_auth(token).json(&json!({ "query": query, "variables": variables }));
        let answer = match sent.send().await {
            Err(error) if error.is_timeout() => Err("timeout".to_owned()),
            Err(_) => Err("transport".to_owned()),
            Ok(response) if !response.status().is_success() => Err(format!("HTTP {}", response.status().as_u16())),
            Ok(response) => response.json::<Value>().await.map_err(|_| "unreadable answer".to_owned()),
        };
        let data = operation.split(' ').next().unwrap_or(operation);
        let kind = kind_of(&answer, data);
        let expected = expected(operation, &kind, card);
        let mut tally = self.tally.lock().expect("tally");
        if !expected && tally.failures.len() < 20 {
            tally.failures.push(format!("{operation}: {kind}: {answer:?}"));
        }
        tally.samples.push(Sample { operation, kind, expected, started, took: started.elapsed() });
        answer
    }

    fn violation(&self, text: String) {
        self.tally.lock().expect("tally").violations.push(text);
    }
}

/// The load, running until [`Workload::stop`].
pub struct Workload {
    pub tally: Arc<Mutex<Tally>>,
    stop: CancellationToken,
    stop_watching: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
    watched: Watched,
    open_subscriptions: Arc<AtomicUsize>,
}

impl Workload {
    /// Starts `spec`'s clients against the router at `router_url` (its GraphQL URL;
    /// the watchers use the same path over WebSocket), renting `products`.
    pub fn start(
        router_url: &str,
        issuer: &TokenIssuer,
        products: &[Uuid],
        spec: WorkloadSpec,
    ) -> anyhow::Result<Self> {
        let issuer = issuer.clone();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(256).build()?;
        let client = Client { http, url: router_url.to_owned(), tally: Arc::default() };
        let stop = CancellationToken::new();
        let stop_watching = CancellationToken::new();
        let to_watch: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let watched: Watched = Arc::default();
        let open_subscriptions = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..spec.customers {
            let customer = Uuid::now_v7();
            let token = issuer.issue(&Identity::Customer { customer_id: customer }, Duration::from_secs(7200));
            tasks.push(tokio::spawn(customer_loop(
                client.clone(),
                customer,
                token,
                products.to_vec(),
                to_watch.clone(),
                stop.clone(),
                spec.customer_pause,
            )));
        }
        for number in 0..spec.operators {
            let token =
                issuer.issue(&Identity::Operator { subject: format!("operator-{number}") }, Duration::from_secs(7200));
            tasks.push(tokio::spawn(operator_loop(
                client.clone(),
                token,
                number,
                spec.operators,
                stop.clone(),
                spec.operator_pause,
            )));
        }
        let socket_url = router_url.replacen("http://", "ws://", 1);
        let mut watchers = Vec::new();
        for number in 0..spec.watchers {
            let token =
                issuer.issue(&Identity::Operator { subject: format!("watcher-{number}") }, Duration::from_secs(7200));
            watchers.push(tokio::spawn(watcher_loop(
                socket_url.clone(),
                token,
                to_watch.clone(),
                watched.clone(),
                open_subscriptions.clone(),
                stop_watching.clone(),
            )));
        }
        Ok(Self { tally: client.tally, stop, stop_watching, tasks, watchers, watched, open_subscriptions })
    }

    /// Live subscriptions open right now (those that have received their first event).
    pub fn open_subscriptions(&self) -> usize {
        self.open_subscriptions.load(Ordering::Relaxed)
    }

    /// Stops the customers and operators and waits for their last requests. The
    /// watchers go on until [`Workload::finish_watching`].
    pub async fn stop(&mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    /// Once the system has settled: waits (up to `limit`) until every followed delivery's
    /// last status seen is the one stored in `delivery`'s database, stops the watchers,
    /// and compares what each saw with what the database says happened.
    pub async fn finish_watching(&mut self, delivery: &Database, limit: Duration) -> anyhow::Result<LiveReport> {
        let started = Instant::now();
        let mut stored = stored_statuses(delivery).await?;
        loop {
            let behind = {
                let watched = self.watched.lock().expect("watched");
                watched
                    .iter()
                    .filter(|(rental, followed)| {
                        stored
                            .get(*rental)
                            .is_some_and(|history| followed.seen.last() != history.last().map(|(status, _)| status))
                    })
                    .count()
            };
            if behind == 0 || started.elapsed() > limit {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            stored = stored_statuses(delivery).await?;
        }
        self.stop_watching.cancel();
        for watcher in self.watchers.drain(..) {
            let _ = watcher.await;
        }
        let watched = self.watched.lock().expect("watched");
        let mut report = LiveReport { rentals_followed: watched.len(), ..LiveReport::default() };
        for (rental, followed) in watched.iter() {
            report.events += followed.seen.len();
            report.resubscribed += followed.subscriptions.saturating_sub(1);
            report.completed_early += followed.completed_early;
            report.cut += followed.cut;
            report.router_socket_failures += followed.router_socket_failures;
            let Some(first) = followed.seen.first() else { continue };
            let Some(history) = stored.get(rental) else {
                report.violations.push(format!("rental {rental}: saw {:?} but has no delivery", followed.seen));
                continue;
            };
            // What happened from the first status this watcher saw on.
            let from = history.iter().position(|(status, _)| status == first);
            let Some(from) = from else {
                report
                    .violations
                    .push(format!("rental {rental}: saw {first} first, which its delivery never was ({history:?})"));
                continue;
            };
            let happened: Vec<&String> = history[from..].iter().map(|(status, _)| status).collect();
            for (index, (status, began)) in history.iter().enumerate().skip(from) {
                if followed.seen.contains(status) {
                    continue;
                }
                // Current from `began` until the next status began (the last one: still).
                let ended = history.get(index + 1).map(|(_, next)| *next);
                let around_a_gap = ended.is_some_and(|ended| {
                    followed.gaps.iter().any(|(gap_start, gap_end)| *began < *gap_end && ended > *gap_start)
                });
                if around_a_gap {
                    report.skipped_around_resubscription += 1;
                } else {
                    report.lost += 1;
                    if report.lost_examples.len() < 5 {
                        report.lost_examples.push(format!(
                            "rental {rental}: never saw {status} (began {began:?}); saw {:?}; its delivery went {history:?}",
                            followed.seen
                        ));
                    }
                }
            }
            // Anything but the statuses that happened, in their order, is a broken promise.
            if followed.seen.iter().any(|status| !happened.contains(&status)) {
                report
                    .violations
                    .push(format!("rental {rental}: saw {:?}, its delivery went {happened:?}", followed.seen));
            }
        }
        Ok(report)
    }
}

/// Each rental's delivery statuses in the order they happened, each with when it began
/// (Unix seconds, from the delivery's timestamps).
async fn stored_statuses(delivery: &Database) -> anyhow::Result<HashMap<String, Vec<(String, f64)>>> {
    use diesel::QueryableByName;
    use diesel::sql_types::{Double, Nullable};
    use diesel_async::RunQueryDsl;
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        rental_id: Uuid,
        #[diesel(sql_type = Double)]
        requested: f64,
        #[diesel(sql_type = Nullable<Double>)]
        shipped: Option<f64>,
        #[diesel(sql_type = Nullable<Double>)]
        delivered: Option<f64>,
        #[diesel(sql_type = Nullable<Double>)]
        cancelled: Option<f64>,
    }
    let mut connection = delivery.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT rental_id, extract(epoch FROM requested_at)::float8 AS requested, \
         extract(epoch FROM shipped_at)::float8 AS shipped, extract(epoch FROM delivered_at)::float8 AS delivered, \
         extract(epoch FROM cancelled_at)::float8 AS cancelled FROM deliveries",
    )
    .load(&mut connection)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let mut history = vec![("REQUESTED".to_owned(), row.requested)];
            for (status, began) in
                [("SHIPPING", row.shipped), ("DELIVERED", row.delivered), ("CANCELLED", row.cancelled)]
            {
                if let Some(began) = began {
                    history.push((status.to_owned(), began));
                }
            }
            (row.rental_id.to_string(), history)
        })
        .collect())
}

/// Now, in Unix seconds (the clock PostgreSQL's timestamps on this machine share).
fn unix_seconds() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64())
}

fn rent_input(product: Uuid, card: &str, key: &str) -> Value {
    json!({ "input": { "productId": product, "months": 12, "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul",
                       "cardNumber": card, "idempotencyKey": key } })
}

async fn customer_loop(
    client: Client,
    customer: Uuid,
    token: String,
    products: Vec<Uuid>,
    to_watch: Arc<Mutex<VecDeque<String>>>,
    stop: CancellationToken,
    pause: Duration,
) {
    let mut round = 0usize;
    while !stop.is_cancelled() {
        round += 1;
        let product = products[round % products.len()];
        let card = if round.is_multiple_of(7) { DECLINED } else { APPROVED };
        let key = Uuid::now_v7().to_string();
        let answer = client.call("rent", Some(card), &token, RENT, rent_input(product, card, &key)).await;
        let rental_id = answer.as_ref().ok().and_then(|body| body["data"]["rent"]["id"].as_str()).map(str::to_owned);
        client.tally.lock().expect("tally").rents.push(RentTold {
            customer,
            product,
            key: key.clone(),
            card: card.to_owned(),
            months: 12,
            answer: kind_of(&answer, "rent"),
            rental_id: rental_id.clone(),
        });
        if let Some(rental_id) = &rental_id {
            to_watch.lock().expect("queue").push_back(rental_id.clone());
            // A client that lost the answer retries under the same key.
            if round.is_multiple_of(4) {
                let again =
                    client.call("rent (same key)", Some(card), &token, RENT, rent_input(product, card, &key)).await;
                if let Some(other) = again.as_ref().ok().and_then(|body| body["data"]["rent"]["id"].as_str())
                    && other != rental_id
                {
                    client.violation(format!("the same key {key} answered rental {rental_id} and then {other}"));
                }
            }
            if round.is_multiple_of(5) {
                let answer = client.call("cancelRental", None, &token, CANCEL, json!({ "id": rental_id })).await;
                if let Ok(body) = &answer
                    && body.get("errors").is_none()
                    && body["data"]["cancelRental"]["status"] != "CANCELLED"
                {
                    client.violation(format!("cancelRental({rental_id}) answered without cancelling: {body}"));
                }
            }
        }
        let _ = client.call("myRentals", None, &token, MY_RENTALS, json!({})).await;
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => {}
        }
    }
}

async fn operator_loop(
    client: Client,
    token: String,
    number: usize,
    operators: usize,
    stop: CancellationToken,
    pause: Duration,
) {
    while !stop.is_cancelled() {
        for (status, step) in [("REQUESTED", "startDelivery"), ("SHIPPING", "completeDelivery")] {
            let Ok(page) = client.call("deliveries", None, &token, QUEUE, json!({ "status": status })).await else {
                continue;
            };
            let ids: Vec<String> = page["data"]["deliveries"]["edges"]
                .as_array()
                .map(|edges| edges.iter().filter_map(|edge| edge["node"]["id"].as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            // Operators share the queue: each takes its own share of the page.
            for id in ids.iter().enumerate().filter(|(index, _)| index % operators == number).map(|(_, id)| id) {
                let mutation = format!("mutation($id: ID!) {{ {step}(id: $id) {{ id status }} }}");
                let _ = client.call(step, None, &token, &mutation, json!({ "id": id })).await;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => {}
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a socket to the router, initialises it and subscribes to `rental`'s delivery.
async fn subscribe(url: &str, token: &str, rental: &str) -> anyhow::Result<Socket> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await?;
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed before connection_ack"))??;
        if let Message::Text(text) = frame {
            let message: Value = serde_json::from_str(&text)?;
            anyhow::ensure!(message["type"] == "connection_ack", "expected connection_ack, got {message}");
            break;
        }
    }
    let subscribe =
        json!({ "id": "track", "type": "subscribe", "payload": { "query": TRACK, "variables": { "id": rental } } });
    socket.send(Message::Text(subscribe.to_string().into())).await?;
    Ok(socket)
}

/// How one subscription ended.
enum Ended {
    /// The delivery reached DELIVERED or CANCELLED.
    Done,
    /// `complete` before the end: subscribe again.
    Completed,
    /// The socket dropped (or could not open): subscribe again.
    Cut,
    /// The router ended the subscription on a closing subgraph socket: subscribe again.
    RouterSocketFailure,
    /// The watchers were told to stop.
    Stopped,
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "DELIVERED" | "CANCELLED")
}

fn rank(status: &str) -> u8 {
    match status {
        "REQUESTED" => 1,
        "SHIPPING" => 2,
        _ => 3,
    }
}

/// Whether `errors` (a GraphQL error list) is the router's [`ROUTER_SOCKET_FAILURE`]
/// and nothing else.
fn router_socket_failure(errors: &Value) -> bool {
    errors.as_array().is_some_and(|errors| {
        !errors.is_empty() && errors.iter().all(|error| error["extensions"]["code"] == ROUTER_SOCKET_FAILURE)
    })
}

/// One subscription to `rental`, until it ends.
async fn follow_once(
    url: &str,
    token: &str,
    rental: &str,
    watched: &Watched,
    open: &AtomicUsize,
    stop: &CancellationToken,
) -> Ended {
    let socket = tokio::select! {
        socket = subscribe(url, token, rental) => socket,
        () = stop.cancelled() => return Ended::Stopped,
    };
    let Ok(mut socket) = socket else { return Ended::Cut };
    let mut counted = false;
    let mut first_of_this_subscription = true;
    let ended = loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            () = stop.cancelled() => break Ended::Stopped,
        };
        let Some(Ok(frame)) = frame else { break Ended::Cut };
        let text = match frame {
            Message::Text(text) => text,
            Message::Close(_) => break Ended::Cut,
            _ => continue,
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else { break Ended::Cut };
        match message["type"].as_str() {
            Some("ping") => {
                let _ = socket.send(Message::Text(json!({ "type": "pong" }).to_string().into())).await;
            }
            Some("error") if router_socket_failure(&message["payload"]) => break Ended::RouterSocketFailure,
            Some("complete") => {
                let done =
                    watched.lock().expect("watched")[rental].seen.last().is_some_and(|status| is_terminal(status));
                break if done { Ended::Done } else { Ended::Completed };
            }
            Some("next") => {
                if !counted {
                    counted = true;
                    open.fetch_add(1, Ordering::Relaxed);
                }
                if router_socket_failure(&message["payload"]["errors"]) {
                    break Ended::RouterSocketFailure;
                }
                let Some(status) = message["payload"]["data"]["deliveryStatusChanged"]["status"].as_str() else {
                    let mut watched = watched.lock().expect("watched");
                    watched.get_mut(rental).expect("followed").seen.push(format!("error: {}", message["payload"]));
                    break Ended::Done;
                };
                let mut watched = watched.lock().expect("watched");
                let followed = watched.get_mut(rental).expect("followed");
                if first_of_this_subscription && let Some(gap_started) = followed.gap_started.take() {
                    followed.gaps.push((gap_started, unix_seconds()));
                }
                // Every subscription opens with the current status: after a resubscribe
                // that may be the one already seen, and then it is no news.
                let repeat = first_of_this_subscription && followed.seen.last().map(String::as_str) == Some(status);
                first_of_this_subscription = false;
                if !repeat {
                    // Out of order or twice: kept as seen, so the report shows it.
                    if followed.seen.last().is_some_and(|last| rank(last) >= rank(status)) {
                        followed.seen.push(format!("{status} (again or out of order)"));
                    } else {
                        followed.seen.push(status.to_owned());
                    }
                }
                if is_terminal(status) {
                    break Ended::Done;
                }
            }
            _ => {
                let mut watched = watched.lock().expect("watched");
                watched.get_mut(rental).expect("followed").seen.push(format!("unexpected: {message}"));
                break Ended::Done;
            }
        }
    };
    if counted {
        open.fetch_sub(1, Ordering::Relaxed);
    }
    let _ = socket.close(None).await;
    ended
}

async fn watcher_loop(
    url: String,
    token: String,
    to_watch: Arc<Mutex<VecDeque<String>>>,
    watched: Watched,
    open: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let next = to_watch.lock().expect("queue").pop_front();
        let Some(rental) = next else {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
                () = stop.cancelled() => return,
            }
            continue;
        };
        watched.lock().expect("watched").insert(rental.clone(), Followed::default());
        loop {
            watched.lock().expect("watched").get_mut(&rental).expect("followed").subscriptions += 1;
            let ended = follow_once(&url, &token, &rental, &watched, &open, &stop).await;
            if matches!(ended, Ended::Completed | Ended::Cut | Ended::RouterSocketFailure) {
                let mut watched = watched.lock().expect("watched");
                let followed = watched.get_mut(&rental).expect("followed");
                // A gap already open (a resubscription that failed too) goes on.
                followed.gap_started.get_or_insert_with(unix_seconds);
            }
            match ended {
                Ended::Done => break,
                Ended::Stopped => return,
                Ended::Completed => {
                    watched.lock().expect("watched").get_mut(&rental).expect("followed").completed_early += 1
                }
                Ended::RouterSocketFailure => {
                    watched.lock().expect("watched").get_mut(&rental).expect("followed").router_socket_failures += 1;
                }
                Ended::Cut => {
                    watched.lock().expect("watched").get_mut(&rental).expect("followed").cut += 1;
                    // A router that refuses connections for a moment is not hammered.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// Creates a product with `stock` units through the router and waits until rental can
/// rent it (its copy of the catalog has heard of it).
pub async fn product(
    router_url: &str,
    issuer: &TokenIssuer,
    rental: &Database,
    name: &str,
    stock: i32,
) -> anyhow::Result<Uuid> {
    let token = issuer.issue(&Identity::Operator { subject: "setup".into() }, Duration::from_secs(600));
    let create = "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }";
    let body: Value = reqwest::Client::new()
        .post(router_url)
        .bearer_auth(token)
        .json(&json!({ "query": create, "variables": { "input": { "name": name, "monthlyFee": 19_900, "initialStock": stock } } }))
        .send()
        .await?
        .json()
        .await?;
    let id: Uuid = body["data"]["createProduct"]["id"].as_str().ok_or_else(|| anyhow::anyhow!("{body}"))?.parse()?;
    rental_knows_product(rental, id).await?;
    Ok(id)
}

/// Waits until rental's copy of the catalog has product `id` (it learns of new products
/// from inventory's events), so that a rent of it can succeed.
pub async fn rental_knows_product(rental: &Database, id: Uuid) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let mut connection = rental.connection().await.map_err(|error| anyhow::anyhow!(error.message))?;
        if rental::storage::catalog::entry(&mut connection, id).await?.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("rental never learned of product {id}")
}
