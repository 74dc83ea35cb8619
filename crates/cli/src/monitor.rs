//! `keel monitor URL`: the monitoring tool of the mcp-mem0 reference,
//! against any service serving keel's `/health/detailed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::fail::Failure;

/// `keel monitor`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct MonitorArgs {
    /// The service: `http://host:port` (its `/health/detailed` is read) or
    /// the full URL of a detailed health report.
    url: String,
    /// Report again every `--interval` seconds until interrupted (or
    /// `--count` reports).
    #[arg(long)]
    continuous: bool,
    /// Seconds between reports.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    interval: u64,
    /// Stop after this many reports.
    #[arg(long)]
    count: Option<u64>,
    /// Print each sample as one JSON line instead of the report.
    #[arg(long)]
    json: bool,
    /// Write every sample collected to this file as a JSON array.
    #[arg(long)]
    export: Option<PathBuf>,
}

/// The exit codes: the service's status, or unreachable.
fn code(status: &str) -> u8 {
    match status {
        "healthy" => 0,
        "degraded" => 1,
        "unreachable" => 3,
        _ => 2,
    }
}

pub(crate) fn run(args: MonitorArgs) -> Result<ExitCode, Failure> {
    let url = detailed_url(&args.url)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::environment(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(watch(args, url))
}

fn detailed_url(given: &str) -> Result<http::Uri, Failure> {
    let hint = "e.g. keel monitor http://127.0.0.1:9464";
    let uri: http::Uri = given
        .parse()
        .map_err(|e| Failure::input(format!("`{given}` is not a URL: {e}")).hint(hint))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(Failure::input(format!("`{given}`: expected http://host:port")).hint(hint));
    }
    if uri.path() == "/" || uri.path().is_empty() {
        let base = given.trim_end_matches('/');
        return format!("{base}/health/detailed")
            .parse()
            .map_err(|e| Failure::input(format!("`{given}`: {e}")).hint(hint));
    }
    Ok(uri)
}

/// Utilisation seen so far, for the min / max the report shows.
#[derive(Debug, Default)]
struct Range {
    min: Option<f64>,
    max: Option<f64>,
}

impl Range {
    fn add(&mut self, value: f64) {
        self.min = Some(self.min.map_or(value, |m| m.min(value)));
        self.max = Some(self.max.map_or(value, |m| m.max(value)));
    }
}

async fn watch(args: MonitorArgs, url: http::Uri) -> Result<ExitCode, Failure> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut samples = Vec::new();
    let mut utilisation = Range::default();
    let mut last = "unreachable".to_owned();
    let reports = if args.continuous {
        args.count.unwrap_or(u64::MAX)
    } else {
        1
    };
    for n in 0..reports {
        if n > 0 {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(args.interval)) => {}
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        let sample = sample(&client, &url).await;
        if let Some(u) = pool(&sample).and_then(|p| p["utilisation"].as_f64()) {
            utilisation.add(u);
        }
        last = sample["status"]
            .as_str()
            .unwrap_or("unreachable")
            .to_owned();
        if args.json {
            say(&sample.to_string());
        } else {
            say(&render(&sample, &utilisation));
        }
        samples.push(sample);
    }
    if let Some(path) = &args.export {
        let text = serde_json::to_string_pretty(&samples)
            .map_err(|e| Failure::environment(format!("the samples: {e}")))?;
        std::fs::write(path, text)
            .map_err(|e| Failure::environment(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(ExitCode::from(code(&last)))
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// One reading: the service's report, or why there is none.
async fn sample(client: &HttpClient, url: &http::Uri) -> Value {
    let at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let fetched = tokio::time::timeout(Duration::from_secs(5), async {
        let response = client.get(url.clone()).await.map_err(|e| chain(&e))?;
        let code = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let report: Value = serde_json::from_slice(&body)
            .map_err(|_| format!("answered {code} with something that is not a health report"))?;
        Ok::<_, String>(report)
    })
    .await
    .unwrap_or_else(|_| Err("no answer within 5 s".to_owned()));
    match fetched {
        Ok(report) => {
            json!({ "at": at, "url": url.to_string(), "status": report["status"], "report": report })
        }
        Err(error) => {
            json!({ "at": at, "url": url.to_string(), "status": "unreachable", "error": error })
        }
    }
}

/// An error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

fn pool(sample: &Value) -> Option<&Value> {
    sample["report"]["checks"]
        .as_array()?
        .iter()
        .find_map(|c| c["details"].get("pool"))
}

fn render(sample: &Value, utilisation: &Range) -> String {
    let status = sample["status"].as_str().unwrap_or("unreachable");
    let mut out = format!(
        "{}  {}  status {status}",
        sample["at"].as_str().unwrap_or(""),
        sample["url"].as_str().unwrap_or("")
    );
    if let Some(error) = sample["error"].as_str() {
        out.push_str(&format!("\n  unreachable: {error}"));
        return out;
    }
    let report = &sample["report"];
    out.push_str(&format!(
        "  uptime {:.0}s  version {}",
        report["uptime_seconds"].as_f64().unwrap_or(0.0),
        report["version"].as_str().unwrap_or("?")
    ));
    if let Some(by) = report["decided_by"].as_str() {
        out.push_str(&format!("  (decided by {by})"));
    }
    for check in report["checks"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  {:<8} {:<24} {:<9}",
            check["source"].as_str().unwrap_or(""),
            check["name"].as_str().unwrap_or(""),
            check["status"].as_str().unwrap_or("")
        ));
        if let Some(ms) = check["latency_ms"].as_f64() {
            out.push_str(&format!(" response {ms:.2} ms"));
        }
        if let Some(message) = check["message"].as_str() {
            out.push_str(&format!("  {message}"));
        }
        if let Some(pool) = check["details"].get("pool") {
            let u = pool["utilisation"].as_f64().unwrap_or(0.0);
            out.push_str(&format!(
                "\n           pool active {}  available {}  total {}  max {}  utilisation {:.0}%",
                pool["in_use"],
                pool["idle"],
                pool["size"],
                pool["max_size"],
                u * 100.0
            ));
            if let (Some(min), Some(max)) = (utilisation.min, utilisation.max) {
                out.push_str(&format!(
                    " (min {:.0}%, max {:.0}%)",
                    min * 100.0,
                    max * 100.0
                ));
            }
        }
        if let Some(state) = check["details"]["state"]
            .as_str()
            .or_else(|| check["details"]["breaker"]["state"].as_str())
        {
            out.push_str(&format!("\n           breaker {state}"));
        }
    }
    out
}

#[expect(clippy::print_stdout, reason = "the command's output")]
fn say(text: &str) {
    println!("{text}");
}
