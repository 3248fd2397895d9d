//! The router's offline GraphiQL page in a real browser: headless Chromium, driven by
//! router/tests-browser/graphiql.mjs (playwright-core) with every request to another
//! host blocked, signs in, finds `Rental` in the docs, runs the Catalog tab and follows a
//! delivery live in the FollowLive tab while this test ships and delivers it through the
//! router as an operator.
//!
//! Needs Chromium (`/usr/bin/chromium`, or `CHROMIUM`; Debian's `chromium`, which
//! `.ci/run` installs) and router/tests-browser/node_modules (`make test` runs its
//! `npm ci`). Without them the test fails and says how to install them, unless
//! `SKIP_BROWSER_TESTS=1`. `GRAPHIQL_SCREENSHOT=<path>` (absolute, or relative to the
//! repository root) keeps a screenshot of the page with the live events on it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::support::TestStack;
use crate::support::fixtures::{operator_step, rent, rentable_product};

/// The whole browser run, from spawning the script to its exit. graphiql.mjs caps itself
/// at 180 s; this is the cap should it hang before its own watchdog can act.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(240);

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("stack/ is inside the repository").to_path_buf()
}

/// What is missing to run the browser, each with how to install it.
fn missing_tools(root: &Path, chromium: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium.is_file() {
        missing.push(format!(
            "Chromium is not at {} (install Debian's package: `apt-get install chromium`, as .ci/run does; \
             or set CHROMIUM to another Chromium executable)",
            chromium.display()
        ));
    }
    if !root.join("router/tests-browser/node_modules/playwright-core").is_dir() {
        missing.push(
            "router/tests-browser/node_modules is not installed (`make router/tests-browser/node_modules`, \
             that is `npm ci --prefix router/tests-browser --no-audit --no-fund`; `make test` does it)"
                .to_string(),
        );
    }
    missing
}

/// node and the Chromium it starts, in a process group of their own: a test that fails
/// or times out kills the whole group, not only node.
struct Browser {
    child: Child,
    /// The group's id (node's pid), kept past node's exit: Chromium's helpers may outlive it.
    group: Option<u32>,
}

impl Browser {
    fn kill(&mut self) {
        if let Some(group) = self.group.take() {
            // SAFETY: a plain syscall on the process group this test created; a group
            // already gone yields ESRCH, which is ignored.
            unsafe { libc::kill(-(group as libc::pid_t), libc::SIGKILL) };
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls the rental's delivery through the router until it has `status`.
async fn wait_for_delivery_status(stack: &TestStack, rental_id: &str, status: &str) {
    let query = "query($id: ID!) { rental(id: $id) { delivery { id status } } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, response) = stack.graphql(Some(&stack.operator_token()), query, json!({ "id": rental_id })).await;
        if response["data"]["rental"]["delivery"]["status"] == status {
            return;
        }
        assert!(Instant::now() < deadline, "the delivery of {rental_id} never became {status}: {response}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_offline_graphiql_page_follows_a_delivery_live_in_chromium() {
    let root = repository_root();
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string()));
    let missing = missing_tools(&root, &chromium);
    if !missing.is_empty() {
        if std::env::var("SKIP_BROWSER_TESTS").as_deref() == Ok("1") {
            eprintln!("SKIPPED (SKIP_BROWSER_TESTS=1): the GraphiQL browser test: {}", missing.join("; "));
            return;
        }
        panic!(
            "the GraphiQL browser test cannot run:\n- {}\n(SKIP_BROWSER_TESTS=1 skips it, which checks nothing.)",
            missing.join("\n- ")
        );
    }

    let stack = TestStack::start().await;
    let url = stack.router_url();
    // The page must ask for a token: graphiql.mjs signs in through its panel.
    let page = stack
        .client
        .get(&url)
        .header("accept", "text/html")
        .send()
        .await
        .expect("page request")
        .text()
        .await
        .expect("page body");
    assert!(
        page.contains(r#""token":null"#),
        "the router injects a dev token into the page (is GRAPHIQL_DEV_TOKEN set in this environment? \
         the router inherits it); its config: {}",
        page.lines().find(|line| line.contains(r#""endpoint""#)).unwrap_or("<not found>")
    );

    let product_id = rentable_product(&stack, "Aqua Slim water dispenser", 19_900, 5).await;
    let customer = stack.customer_token(Uuid::now_v7());
    let rental_id = rent(&stack, &customer, product_id, "graphiql").await;

    let mut command = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".to_string()));
    command
        .arg(root.join("router/tests-browser/graphiql.mjs"))
        .current_dir(root.join("router/tests-browser"))
        .env("GRAPHIQL_URL", &url)
        .env("TOKEN", stack.operator_token())
        .env("RENTAL_ID", &rental_id)
        .env("CHROMIUM", &chromium)
        .env_remove("SCREENSHOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("GRAPHIQL_SCREENSHOT") {
        command.env("SCREENSHOT", root.join(path));
    }
    let child = command.spawn().unwrap_or_else(|error| {
        panic!(
            "could not start `node router/tests-browser/graphiql.mjs` ({error}); is Node.js (18 or later) installed?"
        )
    });
    let group = child.id();
    let mut browser = Browser { child, group };
    let stdout = browser.child.stdout.take().expect("stdout piped");
    let mut stderr = browser.child.stderr.take().expect("stderr piped");
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });

    let started = Instant::now();
    let mut steps: Vec<Value> = Vec::new();
    let drive = async {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(line) = lines.next_line().await.expect("reading graphiql.mjs's output") {
            eprintln!("graphiql.mjs [{:>5.1} s] {line}", started.elapsed().as_secs_f64());
            let step: Value = serde_json::from_str(&line).unwrap_or_else(|_| json!({ "step": "text", "text": line }));
            match (step["step"].as_str(), step["status"].as_str()) {
                (Some("subscribed"), _) => {
                    // The first event is on screen: ship it (once delivery has it).
                    wait_for_delivery_status(&stack, &rental_id, "REQUESTED").await;
                    operator_step(&stack, "startDelivery", &rental_id).await;
                }
                (Some("saw"), Some("SHIPPING")) => operator_step(&stack, "completeDelivery", &rental_id).await,
                _ => {}
            }
            steps.push(step);
        }
        browser.child.wait().await.expect("waiting for graphiql.mjs")
    };
    let exit = tokio::time::timeout(OVERALL_TIMEOUT, drive).await;
    browser.kill();
    // Chromium's helpers may hold the pipe a moment longer; do not wait on them forever.
    let stderr = tokio::time::timeout(Duration::from_secs(10), stderr)
        .await
        .map(|joined| joined.unwrap_or_default())
        .unwrap_or_else(|_| "<stderr still open after the browser was killed>".to_string());

    let has = |name: &str, status: Option<&str>| {
        steps.iter().any(|step| step["step"] == name && status.is_none_or(|status| step["status"] == status))
    };
    let failed = steps
        .iter()
        .find(|step| step["step"] == "failed")
        .map(|step| step["error"].as_str().map_or_else(|| step["error"].to_string(), str::to_owned));
    let report = || {
        format!(
            "\nthe script's error: {}\nits steps: {}\nits stderr:\n{}",
            failed.as_deref().unwrap_or("<none>"),
            steps.iter().map(Value::to_string).collect::<Vec<_>>().join("\n  "),
            stderr.trim_end()
        )
    };
    let exit = match exit {
        Ok(exit) => exit,
        Err(_) => panic!("graphiql.mjs did not finish within {OVERALL_TIMEOUT:?}{}", report()),
    };
    assert!(exit.success(), "graphiql.mjs failed ({exit}){}", report());
    for (name, status) in
        [("loaded", None), ("signed-in", None), ("docs", None), ("catalog", None), ("subscribed", None)]
            .into_iter()
            .chain([("saw", Some("SHIPPING")), ("saw", Some("DELIVERED")), ("done", None)])
    {
        assert!(has(name, status), "graphiql.mjs exited 0 without the step {name} {status:?}{}", report());
    }
    stack.stop().await;
}
