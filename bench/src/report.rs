//! Results files: every benchmark writes `bench/results/NAME.json` (machine, versions,
//! parameters, every run, and per figure the median and range) and `NAME.md` (the same
//! as a table), and prints the table.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::{machine, median};

/// One figure of a scenario's result, found in each run's JSON at `pointer`.
pub struct Figure {
    pub label: &'static str,
    pub pointer: &'static str,
    pub decimals: usize,
}

/// Runs per benchmark: `BENCH_RUNS`, at least 3 unless asked for fewer.
pub fn runs() -> usize {
    std::env::var("BENCH_RUNS").ok().and_then(|runs| runs.parse().ok()).unwrap_or(3)
}

/// The folder results go to: `BENCH_RESULTS`, or `bench/results` in this checkout.
pub fn results_dir() -> PathBuf {
    std::env::var_os("BENCH_RESULTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/results")))
}

/// Median, minimum and maximum of each figure over the runs.
pub fn summarize(runs: &[Value], figures: &[Figure]) -> Vec<Value> {
    figures
        .iter()
        .map(|figure| {
            let mut values: Vec<f64> = runs.iter().filter_map(|run| run.pointer(figure.pointer)?.as_f64()).collect();
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            json!({
                "figure": figure.label,
                "values": values.clone(),
                "median": median(&mut values),
                "min": min,
                "max": max,
                "decimals": figure.decimals,
            })
        })
        .collect()
}

/// The summary as a Markdown table.
pub fn summary_table(summary: &[Value]) -> String {
    let mut table = String::from("| figure | median | range | runs |\n|---|---|---|---|\n");
    for row in summary {
        let decimals = row["decimals"].as_u64().unwrap_or(0) as usize;
        let number = |value: &Value| format_number(value.as_f64().unwrap_or(f64::NAN), decimals);
        let values: Vec<String> = row["values"].as_array().into_iter().flatten().map(number).collect();
        table.push_str(&format!(
            "| {} | {} | {}–{} | {} |\n",
            row["figure"].as_str().unwrap_or(""),
            number(&row["median"]),
            number(&row["min"]),
            number(&row["max"]),
            values.join(", "),
        ));
    }
    table
}

/// `value` with thousands separators and `decimals` decimals.
pub fn format_number(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    let text = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = text.split_once('.').map_or((text.as_str(), None), |(w, f)| (w, Some(f)));
    let mut grouped = String::new();
    for (index, digit) in whole.chars().enumerate() {
        if index > 0 && (whole.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    let sign = if value < 0.0 { "-" } else { "" };
    match fraction {
        Some(fraction) => format!("{sign}{grouped}.{fraction}"),
        None => format!("{sign}{grouped}"),
    }
}

/// Versions of what was measured.
pub async fn versions() -> Value {
    let output = |program: &'static str, args: &'static [&'static str]| async move {
        let output = tokio::process::Command::new(program).args(args).output().await.ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (!text.is_empty()).then_some(text)
    };
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap_or_default();
    let hive_router = lock
        .split("[[package]]")
        .find(|package| package.contains("name = \"hive-router\"\n"))
        .and_then(|package| package.lines().find_map(|line| line.strip_prefix("version = ")))
        .map(|version| version.trim_matches('"').to_owned());
    json!({
        "hiveRouter": hive_router,
        "postgresql": output("psql", &["-h", "127.0.0.1", "-U", "postgres", "-tAc", "SHOW server_version", "postgres"]).await,
        "rabbitmq": output("rabbitmqctl", &["version"]).await,
        "rustc": output("rustc", &["--version"]).await,
        "node": output("node", &["--version"]).await,
    })
}

/// Writes `NAME.json` and `NAME.md` into the results folder and prints the Markdown.
/// `table` is the body of the results (the summary table, or the scenario's own).
pub async fn write(
    name: &str,
    title: &str,
    command: &str,
    parameters: Value,
    mut results: Value,
    table: &str,
) -> anyhow::Result<()> {
    let date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    let machine = machine();
    let versions = versions().await;
    results["date"] = json!(date);
    results["machine"] = json!(machine);
    results["versions"] = versions.clone();
    results["command"] = json!(command);
    results["parameters"] = parameters.clone();
    let version_line = versions
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, version)| {
            let version = version.as_str()?;
            // `rustc --version` already names itself.
            Some(if version.starts_with(name.as_str()) { version.to_owned() } else { format!("{name} {version}") })
        })
        .collect::<Vec<_>>()
        .join("; ");
    let markdown = format!(
        "# {title}\n\nMeasured {date} on {machine}.\nVersions: {version_line}.\nCommand: `{command}`\nParameters: `{parameters}`\n\n{table}"
    );
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("{name}.json")), serde_json::to_string_pretty(&results)? + "\n")?;
    std::fs::write(dir.join(format!("{name}.md")), &markdown)?;
    println!("{markdown}");
    println!("written to {}", dir.join(format!("{name}.{{md,json}}")).display());
    Ok(())
}

/// Runs a scenario `runs` times, then writes its runs and their summary.
pub async fn repeat_and_write<F, Fut>(
    name: &str,
    title: &str,
    command: &str,
    parameters: Value,
    figures: &[Figure],
    mut run: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    let count = runs();
    let mut runs = Vec::with_capacity(count);
    for index in 0..count {
        eprintln!("{name}: run {} of {count}", index + 1);
        let result = run().await?;
        eprintln!("{}", serde_json::to_string(&result)?);
        runs.push(result);
    }
    let summary = summarize(&runs, figures);
    let table = summary_table(&summary);
    write(name, title, command, parameters, json!({ "scenario": name, "summary": summary, "runs": runs }), &table).await
}
