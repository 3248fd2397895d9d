//! The system in containers, for real: `compose.yaml` brought up on a container engine
//! with the image the project's Dockerfile builds, a customer's journey through the
//! router in the containers, a crash and the restart policy, `down` and `up` again with
//! the data kept in the volumes, the dev tokens read from the `tokens` service (signed
//! by the development issuer's container, verified by every other one against its
//! JWKS), the production image checked to hold no development issuer, each service
//! connected to PostgreSQL and RabbitMQ as its own role and user (and holding no other
//! service's passwords), and everything removed at the end.
//!
//! `deploy/containers/prepare` gets the engine and the images ready first (it starts
//! dockerd when none answers; without a registry it builds PostgreSQL and RabbitMQ from
//! Debian's packages; the application image is the Dockerfile's `prebuilt` target with
//! the binaries `cargo build --workspace --bins` left next to this test). When the
//! engine cannot start or an image cannot be built, this test fails: it never skips.
//!
//! Self-contained on purpose (its own small HTTP and graphql-transport-ws client), so it
//! depends on nothing but the containers. Run alone:
//!
//!     cargo build --workspace --bins && cargo test -p harness --test containers -- --nocapture
//!
//! WATER_IMAGES=registry uses the official images instead (docs/deployment.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use harness::workload::APPROVED as APPROVED_CARD;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Every long-running service of compose.yaml's default profile.
const LONG_RUNNING: [&str; 8] =
    ["postgres", "rabbitmq", "dev-issuer", "inventory", "payment", "rental", "delivery", "router"];
/// The one-shot services: each must exit 0.
const ONE_SHOT: [&str; 3] = ["rabbitmq-definitions", "keys", "tokens"];
/// The subgraphs: each has its own PostgreSQL role and RabbitMQ user, `water_<service>`.
const SUBGRAPHS: [&str; 4] = ["inventory", "rental", "payment", "delivery"];
const TRACK: &str =
    "subscription($id: ID!) { deliveryStatusChanged(rentalId: $id) { status rental { id product { name } } } }";

/// One compose project of this run, removed with everything it made when dropped.
struct Project {
    repo: PathBuf,
    docker: String,
    compose: Vec<String>,
    name: String,
    image: String,
    dev_image: String,
    env: Vec<(String, String)>,
    router_port: u16,
    rabbitmq_ui_port: u16,
}

impl Project {
    fn compose(&self, args: &[&str]) -> Output {
        let (program, base) = self.compose.split_first().expect("a compose command");
        Command::new(program)
            .args(base)
            .args(["-p", &self.name, "-f"])
            .arg(self.repo.join("compose.yaml"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap_or_else(|error| panic!("{program}: {error}"))
    }

    /// Runs compose; fails the test with its output when it fails.
    fn compose_ok(&self, args: &[&str]) -> String {
        let output = self.compose(args);
        assert!(output.status.success(), "compose {args:?} failed: {}{}", text(&output.stdout), text(&output.stderr));
        text(&output.stdout)
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new(&self.docker).args(args).output().unwrap_or_else(|error| panic!("{}: {error}", self.docker))
    }

    /// service -> container id of every running container, in two commands (each
    /// `compose ps` costs its own start of compose).
    fn containers(&self) -> HashMap<String, String> {
        let ids = self.compose_ok(&["ps", "-q"]);
        let mut args = vec!["inspect", "--format", r#"{{index .Config.Labels "com.docker.compose.service"}} {{.Id}}"#];
        args.extend(ids.split_whitespace());
        let output = self.docker(&args);
        text(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once(' ').map(|(service, id)| (service.to_owned(), id.to_owned())))
            .collect()
    }

    /// Runs a command in a container.
    fn exec(&self, container: &str, command: &[&str]) -> Output {
        let mut args = vec!["exec", container];
        args.extend(command);
        self.docker(&args)
    }

    /// Runs a command in a container; fails the test with its output when it fails.
    fn exec_ok(&self, container: &str, command: &[&str]) -> String {
        let output = self.exec(container, command);
        assert!(output.status.success(), "{command:?} failed: {}{}", text(&output.stdout), text(&output.stderr));
        text(&output.stdout)
    }

    /// The container id of a service (empty when it has none).
    fn container(&self, service: &str) -> String {
        self.compose_ok(&["ps", "-q", service]).trim().to_owned()
    }

    /// service -> (state, health, exit code, restart count) for every container.
    fn states(&self) -> Vec<(String, String, String, i64, i64)> {
        let ids = self.compose_ok(&["ps", "-a", "-q"]);
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Vec::new();
        }
        let format = r#"{{index .Config.Labels "com.docker.compose.service"}}|{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.State.ExitCode}}|{{.RestartCount}}"#;
        let mut args = vec!["inspect", "--format", format];
        args.extend(&ids);
        let output = self.docker(&args);
        // A container removed between `ps` and `inspect` (a restart) is seen next time.
        text(&output.stdout)
            .lines()
            .filter_map(|line| {
                let parts: Vec<&str> = line.split('|').collect();
                (parts.len() == 5).then(|| {
                    (
                        parts[0].to_owned(),
                        parts[1].to_owned(),
                        parts[2].to_owned(),
                        parts[3].parse().unwrap_or(-1),
                        parts[4].parse().unwrap_or(-1),
                    )
                })
            })
            .collect()
    }

    /// Waits until every long-running service is running and healthy and each one-shot
    /// (`keys`, `tokens`) has exited 0; fails at once when one exits with an error.
    fn wait_healthy(&self, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let states = self.states();
            let mut waiting = Vec::new();
            for service in LONG_RUNNING {
                match states.iter().find(|s| s.0 == service) {
                    Some((_, state, health, _, _)) if state == "running" && health == "healthy" => {}
                    Some((_, state, health, _, _)) => waiting.push(format!("{service}: {state} {health}")),
                    None => waiting.push(format!("{service}: no container")),
                }
            }
            for service in ONE_SHOT {
                match states.iter().find(|s| s.0 == service) {
                    Some((_, state, _, 0, _)) if state == "exited" => {}
                    Some((_, state, _, code, _)) if state == "exited" => {
                        panic!("{service} exited with {code}:\n{}", self.logs(service))
                    }
                    Some((_, state, _, _, _)) => waiting.push(format!("{service}: {state}")),
                    None => waiting.push(format!("{service}: no container")),
                }
            }
            if waiting.is_empty() {
                return started.elapsed();
            }
            if started.elapsed() > limit {
                let logs: String = LONG_RUNNING.iter().map(|s| format!("--- {s}\n{}\n", self.logs(s))).collect();
                panic!("not healthy after {limit:?}: {waiting:?}\n{logs}");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    fn logs(&self, service: &str) -> String {
        let output = self.compose(&["logs", "--no-color", "--tail", "40", service]);
        format!("{}{}", text(&output.stdout), text(&output.stderr))
    }

    /// The customer and operator tokens the `tokens` service printed, as the README says
    /// to read them (`docker compose logs tokens`).
    fn tokens(&self) -> (String, String) {
        let logs = self.compose_ok(&["logs", "--no-color", "tokens"]);
        let lines: Vec<&str> =
            logs.lines().map(|line| line.split_once("| ").map_or(line, |(_, rest)| rest).trim()).collect();
        let after = |label: &str| {
            let at = lines
                .iter()
                .position(|line| line.starts_with(label))
                .unwrap_or_else(|| panic!("no {label:?} in:\n{logs}"));
            let token = lines[at + 1].to_owned();
            assert!(token.starts_with("eyJ"), "not a token after {label:?}: {token}");
            token
        };
        (after("customer "), after("operator:"))
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/graphql", self.router_port)
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let down = self.compose(&["down", "-v", "--remove-orphans", "--timeout", "20"]);
        if !down.status.success() {
            eprintln!("compose down -v failed: {}", text(&down.stderr));
        }
        let _ = self.docker(&["image", "rm", "-f", &self.image, &self.dev_image]);
    }
}

/// Each service's connections are its own, as compose.yaml sets them up: every
/// PostgreSQL session of ours is `water_<s>` on `water_<s>` (none as the superuser), a
/// service's role may not open another's database, every RabbitMQ connection is
/// `water_<s>` (found by its name, `water <s>...`) and the broker has no `guest`, each
/// container holds its own two password files and no other, its URLs no password, and
/// the operator tool `dead-letters` works as RabbitMQ's administrator.
async fn check_own_credentials(project: &Project, client: &reqwest::Client) {
    fn water(service: &str) -> String {
        format!("water_{service}")
    }
    // Who is connected where (this psql session aside).
    const SESSIONS: &str = "SELECT DISTINCT usename, datname FROM pg_stat_activity \
        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() ORDER BY 1, 2";
    const PRIVILEGED: &str = "SELECT rolname FROM pg_roles \
        WHERE rolname LIKE 'water\\_%' AND (rolsuper OR rolcreatedb OR rolcreaterole)";
    // Rental's role with its password, over TCP, on database $1.
    const AS_RENTAL: &str = r#"PGPASSWORD="$(cat /var/run/secrets/water/db/rental/password)" \
        psql -h 127.0.0.1 -U water_rental -d "$1" -Atc 'SELECT current_user'"#;
    let containers = project.containers();
    let container = |service: &str| {
        containers.get(service).map(String::as_str).unwrap_or_else(|| panic!("no container of {service}"))
    };
    let postgres = container("postgres");
    let psql = |sql: &str| project.exec_ok(postgres, &["psql", "-U", "postgres", "-d", "postgres", "-At", "-c", sql]);

    // PostgreSQL: a service that just (re)started may briefly be on `postgres`, checking
    // its database exists.
    let mut expected: Vec<String> = SUBGRAPHS.iter().map(|s| format!("{}|{}", water(s), water(s))).collect();
    expected.sort();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<String> = psql(SESSIONS).lines().map(str::to_owned).collect();
        if rows == expected {
            break;
        }
        assert!(Instant::now() < deadline, "PostgreSQL sessions (user|database): {rows:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(psql(PRIVILEGED).trim(), "", "services' roles with more than LOGIN");
    // Rental's role: its own database, and not payment's.
    let as_rental = |database: &str| project.exec(postgres, &["sh", "-c", AS_RENTAL, "sh", database]);
    let own = as_rental("water_rental");
    assert_eq!(text(&own.stdout).trim(), "water_rental", "rental's role on its database: {}", text(&own.stderr));
    let other = as_rental("water_payment");
    assert!(
        !other.status.success() && text(&other.stderr).contains("permission denied for database"),
        "rental's role on payment's database: {}{}",
        text(&other.stdout),
        text(&other.stderr)
    );

    // RabbitMQ, through the management API on its published port, as the administrator
    // compose.yaml names (the password from the file compose hands out): its users (no
    // guest), and who each connection is.
    let admin_password = std::fs::read_to_string(project.repo.join("deploy/compose/secrets/mq/water-mq-default-user"))
        .expect("the administrator's password file");
    let api = |path: &str, user: &str, password: &str| {
        let url = format!("http://127.0.0.1:{}/api/{path}", project.rabbitmq_ui_port);
        client.get(url).basic_auth(user, Some(password)).send()
    };
    let guest = api("whoami", "guest", "guest").await.expect("the management API answers");
    assert_eq!(guest.status(), reqwest::StatusCode::UNAUTHORIZED, "guest logs into RabbitMQ");
    let admin_get = |path: &'static str| {
        let request = api(path, "water", admin_password.trim_end());
        async move {
            let response = request.await.map_err(|error| error.to_string())?;
            let status = response.status();
            let body = response.text().await.map_err(|error| error.to_string())?;
            if !status.is_success() {
                return Err(format!("{path}: {status}: {body}"));
            }
            serde_json::from_str::<Value>(&body).map_err(|error| format!("{path}: {error}: {body}"))
        }
    };
    let users = until(Duration::from_secs(30), "RabbitMQ's users", || admin_get("users")).await;
    let mut users: Vec<&str> = users.as_array().expect("users").iter().filter_map(|u| u["name"].as_str()).collect();
    users.sort_unstable();
    let mut expected_users: Vec<String> = SUBGRAPHS.iter().copied().map(water).chain(["water".to_owned()]).collect();
    expected_users.sort();
    assert_eq!(users, expected_users, "RabbitMQ's users: the administrator and one per service");
    // The API lists a connection once its first statistics are in (within seconds).
    until(Duration::from_secs(30), "every service's RabbitMQ connection", || async {
        let connections = admin_get("connections").await?;
        let mut seen = Vec::new();
        for connection in connections.as_array().expect("connections") {
            let user = connection["user"].as_str().unwrap_or_default();
            let name = connection["client_properties"]["connection_name"].as_str().unwrap_or_default();
            // "water <service>" or "water <service>-<part>" (EVENTS_NAMESPACE is water).
            let service = name.strip_prefix("water ").and_then(|rest| rest.split('-').next()).unwrap_or_default();
            assert!(SUBGRAPHS.contains(&service), "a connection of no service: {connection}");
            assert_eq!(user, water(service), "connection {name:?} logs in as its service's own user");
            seen.push(service);
        }
        let missing: Vec<&str> = SUBGRAPHS.into_iter().filter(|s| !seen.contains(s)).collect();
        if missing.is_empty() { Ok(()) } else { Err(format!("no connection of {missing:?}: {connections}")) }
    })
    .await;

    // Each container: its own two password files, no other; URLs without a password.
    for service in SUBGRAPHS {
        let files = project.exec_ok(container(service), &["ls", "/run/secrets"]);
        let files: Vec<&str> = files.split_whitespace().collect();
        assert_eq!(files, [format!("{service}-db-password"), format!("{service}-mq-password")], "{service}'s secrets");
        let env =
            project.docker(&["inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", container(service)]);
        let env = text(&env.stdout);
        for (key, value) in [
            ("POSTGRES_URL", format!("postgres://water_{service}@postgres:5432")),
            ("AMQP_URL", format!("amqp://water_{service}@rabbitmq:5672/%2f")),
        ] {
            assert!(env.lines().any(|line| line == format!("{key}={value}")), "{service}: {key}={value} in\n{env}");
        }
    }
    let router_secrets = project.exec(container("router"), &["ls", "-A", "/run/secrets"]);
    let router_secrets = text(&router_secrets.stdout);
    assert!(router_secrets.trim().is_empty(), "the router holds passwords: {router_secrets}");

    // The operator tool, as the administrator (the tools profile, run on demand).
    let listed = project.compose_ok(&["run", "--rm", "-T", "dead-letters", "rental", "list"]);
    assert!(listed.contains("dead letter(s) in water.rental.dead"), "dead-letters rental list: {listed}");
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_port() -> u16 {
    stack::router_process::free_port(std::net::Ipv4Addr::LOCALHOST).expect("a free port")
}

/// `target/debug` (or wherever cargo put this test): the binaries the image takes.
fn binaries_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WATER_BIN_DIR") {
        return dir.into();
    }
    let exe = std::env::current_exe().expect("test path");
    exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").to_owned()
}

async fn graphql(client: &reqwest::Client, url: &str, token: &str, query: &str, variables: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap_or_else(|error| panic!("POST {url}: {error}"));
    let status = response.status();
    let body = response.text().await.expect("body");
    serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON ({status}): {body}"))
}

fn codes(response: &Value) -> Vec<String> {
    response["errors"]
        .as_array()
        .map(|errors| errors.iter().map(|e| e["extensions"]["code"].as_str().unwrap_or("<none>").to_owned()).collect())
        .unwrap_or_default()
}

/// Repeats `attempt` until it returns Some, for at most `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(last) if Instant::now() > deadline => panic!("{what}: not within {limit:?}; last: {last}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws subscription through the router, the token in `connection_init`.
async fn subscribe(url: &str, token: &str, id: &str, query: &str, variables: Value) -> Socket {
    let mut request = url.replace("http://", "ws://").into_client_request().expect("ws url");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the WebSocket connects");
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    socket.send(Message::Text(init.to_string().into())).await.expect("connection_init sent");
    let ack = next_message(&mut socket).await.expect("an answer to connection_init");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let message = json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } });
    socket.send(Message::Text(message.to_string().into())).await.expect("subscribe sent");
    socket
}

/// The next graphql-transport-ws message (pings answered), or None when the socket closed
/// or nothing came within 60 s.
async fn next_message(socket: &mut Socket) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next()).await.ok()??.ok()?;
        match frame {
            Message::Text(text) => {
                let message: Value = serde_json::from_str(&text).expect("JSON message");
                if message["type"] == "ping" {
                    let _ = socket.send(Message::Text(json!({ "type": "pong" }).to_string().into())).await;
                    continue;
                }
                return Some(message);
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
}

fn streamed_status(message: &Value) -> &str {
    message["payload"]["data"]["deliveryStatusChanged"]["status"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_compose_stack_runs_a_journey_survives_a_crash_and_keeps_its_data() {
    let run_started = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned();
    let run = format!(
        "{}{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() % 100_000
    );
    let image = format!("water-rental:ct-{run}");

    // 1. Engine and images. A failure here fails the test.
    let bin_dir = binaries_dir();
    let prepared = Command::new(repo.join("deploy/containers/prepare"))
        .arg("--app")
        .arg(&bin_dir)
        .arg(&image)
        .output()
        .expect("deploy/containers/prepare runs");
    eprint!("{}", text(&prepared.stderr));
    assert!(
        prepared.status.success(),
        "the container engine or the images could not be made ready (deploy/containers/prepare exited {}): this test needs a container engine; .ci/setup installs one",
        prepared.status
    );
    let vars: Vec<(String, String)> = text(&prepared.stdout)
        .lines()
        .filter_map(|line| line.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
        .collect();
    let var = |key: &str| {
        vars.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("prepare gave no {key}"))
    };
    let router_port = free_port();
    let rabbitmq_ui_port = free_port();
    let project = Project {
        repo: repo.clone(),
        docker: var("DOCKER"),
        compose: var("COMPOSE").split_whitespace().map(str::to_owned).collect(),
        name: format!("waterct{run}"),
        image: image.clone(),
        dev_image: var("WATER_DEV_IMAGE"),
        env: vec![
            ("WATER_IMAGE".into(), var("WATER_IMAGE")),
            ("WATER_DEV_IMAGE".into(), var("WATER_DEV_IMAGE")),
            ("POSTGRES_IMAGE".into(), var("POSTGRES_IMAGE")),
            ("RABBITMQ_IMAGE".into(), var("RABBITMQ_IMAGE")),
            ("WATER_ROUTER_PORT".into(), format!("127.0.0.1:{router_port}")),
            ("WATER_RABBITMQ_UI_PORT".into(), rabbitmq_ui_port.to_string()),
        ],
        router_port,
        rabbitmq_ui_port,
    };
    let prepare_time = run_started.elapsed();
    println!("engine and images ready in {prepare_time:.1?} ({} via {})", var("COMPOSE"), var("DOCKER"));

    // 2. The whole file up; every healthcheck passes.
    let started = Instant::now();
    project.compose_ok(&["up", "-d", "--no-build"]);
    project.wait_healthy(Duration::from_secs(300));
    let first_up = started.elapsed();
    println!("compose up, every service healthy, tokens printed: {first_up:.1?}");

    // 3. The tokens, as the README says to read them.
    let (customer, operator) = project.tokens();
    // The image the services run (the production one) holds no development issuer:
    // nothing in it can sign a user token.
    let listing = project.docker(&["run", "--rm", &image, "ls", "/app/bin"]);
    let listing = text(&listing.stdout);
    assert!(listing.contains("router") && listing.contains("rental"), "the binaries are there: {listing}");
    assert!(!listing.contains("dev-issuer") && !listing.contains("dev-token"), "no development issuer: {listing}");
    // No pooled connections: containers are killed and recreated under this client.
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(30)).pool_max_idle_per_host(0).build().expect("client");
    let url = project.url();

    // 4. A customer's journey through the router.
    let journey_started = Instant::now();
    let product = graphql(
        &client,
        &url,
        &operator,
        "mutation($input: CreateProductInput!) { createProduct(input: $input) { id name stock } }",
        json!({ "input": { "name": "Compose model", "monthlyFee": 19_900, "initialStock": 3 } }),
    )
    .await;
    let product_id = product["data"]["createProduct"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("createProduct: {product}"))
        .to_owned();

    let rent = |key: &'static str| {
        let (client, url, customer, product_id) = (&client, &url, &customer, &product_id);
        async move {
            // rental learns of a new product from inventory's event: NOT_FOUND until then.
            until(Duration::from_secs(60), "rent", || async {
                let response = graphql(
                    client,
                    url,
                    customer,
                    "mutation($input: RentInput!) { rent(input: $input) { id status payment { status cardLast4 } } }",
                    json!({ "input": {
                        "productId": product_id, "months": 12, "deliveryAddress": "12 Teheran-ro, Gangnam-gu, Seoul",
                        "cardNumber": APPROVED_CARD, "idempotencyKey": format!("compose-{key}"),
                    }}),
                )
                .await;
                if codes(&response) == ["NOT_FOUND"] {
                    return Err(response.to_string());
                }
                assert_eq!(response["data"]["rent"]["status"], "ACCEPTED", "{response}");
                assert_eq!(response["data"]["rent"]["payment"]["status"], "PAID", "{response}");
                assert_eq!(response["data"]["rent"]["payment"]["cardLast4"], "4242", "{response}");
                Ok(response["data"]["rent"]["id"].as_str().expect("rental id").to_owned())
            })
            .await
        }
    };
    let delivered_rental = rent("delivered").await;

    // The router's metrics are on 9464 inside the compose network, not on the published port.
    let router_container = project.container("router");
    let metrics = project.docker(&["exec", &router_container, "curl", "-fsS", "http://127.0.0.1:9464/metrics"]);
    assert!(
        text(&metrics.stdout).contains("http_server_request_duration"),
        "the router's /metrics on 9464: {}{}",
        text(&metrics.stdout),
        text(&metrics.stderr)
    );
    let public = client.get(format!("http://127.0.0.1:{}/metrics", project.router_port)).send().await;
    let public = public.expect("the published port answers").text().await.expect("text");
    assert!(!public.contains("# TYPE"), "the router's published port serves metrics: {public}");
    // So are each subgraph's, on 9464 of its container, and not on its service port.
    for (service, port) in [("inventory", 4001), ("rental", 4002), ("payment", 4003), ("delivery", 4004)] {
        let container = project.container(service);
        let metrics = project.docker(&["exec", &container, "curl", "-fsS", "http://127.0.0.1:9464/metrics"]);
        assert!(
            text(&metrics.stdout).contains("water_db_pool_connections"),
            "{service}'s /metrics on 9464: {}{}",
            text(&metrics.stdout),
            text(&metrics.stderr)
        );
        let url = format!("http://127.0.0.1:{port}/metrics");
        let service_port = project.docker(&["exec", &container, "curl", "-sS", &url]);
        assert!(!text(&service_port.stdout).contains("# TYPE"), "{service} serves metrics on {port}");
    }

    let mut live = subscribe(&url, &customer, "track", TRACK, json!({ "id": delivered_rental })).await;
    let first = next_message(&mut live).await.expect("the current status over WebSocket");
    assert_eq!(streamed_status(&first), "REQUESTED", "{first}");
    assert_eq!(
        first["payload"]["data"]["deliveryStatusChanged"]["rental"]["product"]["name"], "Compose model",
        "{first}"
    );

    let delivery_of = |rental: String| {
        let (client, url, operator) = (&client, &url, &operator);
        async move {
            until(Duration::from_secs(60), "the delivery request", || async {
                let response = graphql(
                    client,
                    url,
                    operator,
                    "query($id: ID!) { rental(id: $id) { delivery { id } } }",
                    json!({ "id": rental }),
                )
                .await;
                let id = &response["data"]["rental"]["delivery"]["id"];
                if id.is_null() { Err(response.to_string()) } else { Ok(id.clone()) }
            })
            .await
        }
    };
    let operator_step = |step: &'static str, delivery: Value| {
        let (client, url, operator) = (&client, &url, &operator);
        async move {
            until(Duration::from_secs(60), step, || async {
                let query = format!("mutation($id: ID!) {{ {step}(id: $id) {{ id status }} }}");
                let response = graphql(client, url, operator, &query, json!({ "id": delivery })).await;
                // Completing waits until inventory has taken a unit for the delivery.
                if codes(&response) == ["WAITING_FOR_STOCK"] {
                    return Err(response.to_string());
                }
                assert_eq!(response.get("errors"), None, "{step}: {response}");
                Ok(response["data"][step]["status"].as_str().expect("status").to_owned())
            })
            .await
        }
    };
    let delivery = delivery_of(delivered_rental.clone()).await;
    assert_eq!(operator_step("startDelivery", delivery.clone()).await, "SHIPPING");
    let shipping = next_message(&mut live).await.expect("SHIPPING over WebSocket");
    assert_eq!(streamed_status(&shipping), "SHIPPING", "{shipping}");
    assert_eq!(operator_step("completeDelivery", delivery).await, "DELIVERED");
    let delivered = next_message(&mut live).await.expect("DELIVERED over WebSocket");
    assert_eq!(streamed_status(&delivered), "DELIVERED", "{delivered}");
    let complete = next_message(&mut live).await.expect("complete");
    assert_eq!(complete, json!({ "id": "track", "type": "complete" }));
    let _ = live.close(None).await;

    let cancelled_rental = rent("cancelled").await;
    let cancelled = graphql(
        &client,
        &url,
        &customer,
        "mutation($id: ID!) { cancelRental(id: $id) { id status } }",
        json!({ "id": cancelled_rental }),
    )
    .await;
    assert_eq!(cancelled["data"]["cancelRental"]["status"], "CANCELLED", "{cancelled}");
    until(Duration::from_secs(60), "the refund and the cancelled delivery", || async {
        let response = graphql(
            &client,
            &url,
            &customer,
            "query($id: ID!) { rental(id: $id) { status payment { status } delivery { status } } }",
            json!({ "id": cancelled_rental }),
        )
        .await;
        let rental = &response["data"]["rental"];
        let done = rental["payment"]["status"] == "REFUNDED" && rental["delivery"]["status"] == "CANCELLED";
        if done { Ok(()) } else { Err(response.to_string()) }
    })
    .await;
    let journey = journey_started.elapsed();
    println!("journey (rent, live SHIPPING and DELIVERED over WebSocket, cancel and refund): {journey:.1?}");

    let my_rentals = |token: String| {
        let (client, url) = (&client, &url);
        async move {
            until(Duration::from_secs(60), "myRentals", || async {
                let response = graphql(
                    client,
                    url,
                    &token,
                    "{ myRentals(first: 10) { edges { node { id status } } } }",
                    json!({}),
                )
                .await;
                match response["data"]["myRentals"]["edges"].as_array() {
                    Some(edges) if response.get("errors").is_none() => Ok(edges
                        .iter()
                        .map(|edge| {
                            (
                                edge["node"]["id"].as_str().unwrap_or_default().to_owned(),
                                edge["node"]["status"].as_str().unwrap_or_default().to_owned(),
                            )
                        })
                        .collect::<Vec<_>>()),
                    _ => Err(response.to_string()),
                }
            })
            .await
        }
    };
    let expected = {
        let mut rentals =
            vec![(delivered_rental.clone(), "ACTIVE".to_owned()), (cancelled_rental.clone(), "CANCELLED".to_owned())];
        rentals.sort();
        rentals
    };
    let history = until(Duration::from_secs(60), "the history read model", || async {
        let mut rentals = my_rentals(customer.clone()).await;
        rentals.sort();
        if rentals == expected { Ok(rentals) } else { Err(format!("{rentals:?}")) }
    })
    .await;
    assert_eq!(history, expected);

    // 5. Each service connected as its own role and user, and holding only its own
    // passwords.
    let credentials_started = Instant::now();
    check_own_credentials(&project, &client).await;
    let credentials = credentials_started.elapsed();
    println!(
        "credentials: sessions and connections each service's own, no guest, rental's role kept out of payment's database, own secrets only, dead-letters as the administrator: {credentials:.1?}"
    );

    // 6. A crash: rental's process is killed inside its container; the restart policy
    // brings it back, and it answers through the router.
    let crash_started = Instant::now();
    let rental_container = project.container("rental");
    let restarts = || project.states().into_iter().find(|s| s.0 == "rental").map_or(-1, |s| s.4);
    let before = restarts();
    // kill -1: every process of the container's user but PID 1 (the init), which then
    // exits with its child, as a crash would end it; `docker kill` would count as a
    // deliberate stop and not be restarted.
    let _ = project.docker(&["exec", &rental_container, "sh", "-c", "kill -KILL -1"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while restarts() <= before {
        assert!(Instant::now() < deadline, "rental was not restarted:\n{}", project.logs("rental"));
        std::thread::sleep(Duration::from_millis(500));
    }
    project.wait_healthy(Duration::from_secs(120));
    let after_crash = my_rentals(customer.clone()).await;
    assert_eq!(after_crash.len(), 2, "{after_crash:?}");
    let crash = crash_started.elapsed();
    println!(
        "rental killed, restarted by its restart policy ({before} -> {} restarts), answering again: {crash:.1?}",
        restarts()
    );

    // 7. down (the volumes stay) and up again: the rentals are still there.
    let again_started = Instant::now();
    project.compose_ok(&["down", "--timeout", "20"]);
    assert!(project.compose_ok(&["ps", "-a", "-q"]).trim().is_empty(), "containers left after down");
    project.compose_ok(&["up", "-d", "--no-build"]);
    project.wait_healthy(Duration::from_secs(300));
    let (customer_again, _) = project.tokens();
    let mut kept = my_rentals(customer_again).await;
    kept.sort();
    assert_eq!(kept, expected, "the rentals survive down and up (named volumes)");
    let again = again_started.elapsed();
    println!("down, up again, rentals kept: {again:.1?}");

    // 8. Everything removed: containers, network, volumes, the image of this run.
    let teardown_started = Instant::now();
    let name = project.name.clone();
    let docker = project.docker.clone();
    drop(project);
    let label = format!("label=com.docker.compose.project={name}");
    for what in [
        &["ps", "-a", "-q", "--filter"][..],
        &["volume", "ls", "-q", "--filter"][..],
        &["network", "ls", "-q", "--filter"][..],
    ] {
        let mut args = what.to_vec();
        args.push(&label);
        let left = Command::new(&docker).args(&args).output().expect("docker");
        assert!(text(&left.stdout).trim().is_empty(), "left behind ({what:?}): {}", text(&left.stdout));
    }
    let image_left = Command::new(&docker).args(["image", "inspect", &image]).output().expect("docker");
    assert!(!image_left.status.success(), "image {image} left behind");
    println!(
        "teardown: {:.1?}; whole test {:.1?} (images {prepare_time:.1?}, first up {first_up:.1?}, journey {journey:.1?}, credentials {credentials:.1?}, crash {crash:.1?}, down/up {again:.1?})",
        teardown_started.elapsed(),
        run_started.elapsed()
    );
}
