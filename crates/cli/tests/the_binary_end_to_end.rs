//! The built `keel` binary as a person runs it: the demo on its embedded
//! defaults serves its probes and metrics while it runs and exits 0 with a
//! summary; bad input gets one clear line and a non-zero exit, no panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn keel() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keel"));
    // The tests choose their database; the machine's DATABASE_URL must not.
    cmd.env_remove("DATABASE_URL");
    cmd
}

/// GET `path` from `address` over a plain HTTP/1.1 connection.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[test]
fn the_demo_serves_while_it_runs_and_exits_0_with_a_summary() {
    let mut child = keel()
        .args([
            "demo",
            "--duration",
            "4s",
            "--clients",
            "4",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if let Some(rest) = line.strip_prefix("serving http://") {
            address = Some(rest.split('/').next().unwrap().to_owned());
            break;
        }
    }
    let address = address.unwrap_or_else(|| panic!("no address in {seen:?}"));
    let (code, detailed) = get(&address, "/health/detailed");
    assert!(code == 200 || code == 503, "{code}");
    let report: serde_json::Value = serde_json::from_str(&detailed).unwrap();
    assert!(
        report["checks"].as_array().is_some_and(|c| c.len() == 2),
        "{report}"
    );
    let (code, metrics) = get(&address, "/metrics");
    assert_eq!(code, 200);
    assert!(metrics.contains("db_client_connection_count"), "{metrics}");
    let (code, page) = get(&address, "/");
    assert_eq!(code, 200);
    assert!(page.contains("<canvas"), "the status page");

    // keel monitor reads the running demo.
    let url = format!("http://{address}");
    let monitor = keel().args(["monitor", &url]).output().unwrap();
    let report = String::from_utf8(monitor.stdout.clone()).unwrap();
    assert!(
        matches!(monitor.status.code(), Some(0 | 1)),
        "{:?} {report}",
        monitor.status
    );
    assert!(report.contains("pool active"), "{report}");
    assert!(report.contains("breaker"), "{report}");
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("samples.json");
    let monitor = keel()
        .args([
            "monitor",
            &url,
            "--continuous",
            "--interval",
            "1",
            "--count",
            "2",
            "--json",
            "--export",
        ])
        .arg(&export)
        .output()
        .unwrap();
    let json_lines = String::from_utf8(monitor.stdout).unwrap();
    assert_eq!(json_lines.lines().count(), 2, "{json_lines}");
    let samples: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(&export).unwrap()).unwrap();
    assert_eq!(samples.len(), 2);
    assert!(
        samples[0]["report"]["uptime_seconds"].is_number(),
        "{:?}",
        samples[0]
    );

    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    let out = rest.join("\n");
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("| all |"), "{out}");
    let all = out.lines().find(|l| l.starts_with("| all |")).unwrap();
    let ok: u64 = all.split('|').nth(2).unwrap().trim().parse().unwrap();
    assert!(ok > 0, "{all}");
    assert!(out.contains("t=  1s"), "a line a second: {out}");

    // The demo has stopped: unreachable, exit 3.
    let monitor = keel()
        .args(["monitor", &format!("http://{address}")])
        .output()
        .unwrap();
    assert_eq!(monitor.status.code(), Some(3), "{monitor:?}");
    assert!(
        String::from_utf8(monitor.stdout)
            .unwrap()
            .contains("unreachable")
    );
}

fn fails(args: &[&str]) -> (i32, String) {
    let output = keel().args(args).output().unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "{stderr}"
    );
    (output.status.code().unwrap(), stderr)
}

#[test]
fn bad_input_gets_one_clear_line_and_a_non_zero_exit() {
    let (code, err) = fails(&["demo", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");

    let (code, err) = fails(&[
        "demo",
        "--database-url",
        "postgres://app:s3cret@db:54x2/orders",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("port") && !err.contains("s3cret"), "{err}");

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/orders");
    let (code, err) = fails(&["demo", "--database-url", &url, "--listen", "127.0.0.1:0"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("connecting") && err.contains("hint:"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let (code, err) = fails(&["demo", "--listen", &address, "--duration", "1s"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot listen on") && err.contains("--listen"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("keel.toml");
    std::fs::write(&corrupt, "[pool\nmax_size = 4").unwrap();
    let (code, err) = fails(&["demo", "--config", corrupt.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.starts_with("keel: invalid database config"), "{err}");

    let (code, err) = fails(&["monitor", "ftp://x"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected http://host:port"), "{err}");

    let (code, err) = fails(&["demo", "--sessions", "redis"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("sled:DIR"), "{err}");
}

#[test]
fn config_check_names_the_field_and_show_redacts_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "url = \"postgres://app:s3cret@db:5432/orders\"\n[pool]\nmax_size = 4\n",
    )
    .unwrap();
    let output = keel()
        .args(["config", "check", good.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "url = \"postgres://app@db/orders\"\n[pool]\nmax_size = 2\nmin_idle = 5\n",
    )
    .unwrap();
    let (code, err) = fails(&["config", "check", bad.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("`pool.min_idle`"), "{err}");

    let output = keel()
        .args(["config", "show", "--config", good.to_str().unwrap()])
        .output()
        .unwrap();
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success());
    assert!(
        shown.contains("postgres://app:***@db:5432/orders"),
        "{shown}"
    );
    assert!(!shown.contains("s3cret"), "{shown}");
}

/// The dashboard in a real terminal: `keel demo` under tmux, the pane
/// captured twice, the fields there and changing.
#[test]
fn the_dashboard_draws_in_a_terminal_and_updates() {
    let socket = format!("keel-test-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .args(["-L", &socket])
            .args(args)
            .output()
            .expect("tmux is installed (.ci/run installs it)")
    };
    let command = format!(
        "{} demo --duration 6s --clients 2 --listen 127.0.0.1:0; sleep 30",
        env!("CARGO_BIN_EXE_keel")
    );
    let started = tmux(&["new-session", "-d", "-x", "150", "-y", "40", &command]);
    assert!(started.status.success(), "{started:?}");
    let capture = || String::from_utf8(tmux(&["capture-pane", "-p"]).stdout).unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let first = capture();
    std::thread::sleep(Duration::from_millis(2000));
    let second = capture();
    let _ = tmux(&["kill-server"]);
    for field in [
        "throughput",
        "latency p50",
        "pool in use",
        "breaker closed",
        "retries",
        "sessions",
    ] {
        assert!(first.contains(field), "{field:?} missing from:\n{first}");
        assert!(second.contains(field), "{field:?} missing from:\n{second}");
    }
    let clock = |pane: &str| {
        pane.split("t=")
            .nth(1)
            .and_then(|r| r.split('s').next())
            .map(str::to_owned)
    };
    assert_ne!(
        clock(&first),
        clock(&second),
        "the clock moves:\n{first}\n{second}"
    );
    assert_ne!(first, second);
}

/// Starts the demo for `duration` on a free port; the child and its
/// address.
fn demo_in_background(duration: &str) -> (std::process::Child, String) {
    let mut child = keel()
        .args([
            "demo",
            "--duration",
            duration,
            "--clients",
            "2",
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let address = lines
        .by_ref()
        .map(Result::unwrap)
        .find_map(|l| {
            l.strip_prefix("serving http://")
                .map(|r| r.split('/').next().unwrap().to_owned())
        })
        .expect("the demo says where it serves");
    // Keep reading, so the demo never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (child, address)
}

/// The status page in a real browser: headless Chromium loads `/`, the
/// charts draw and keep drawing; a screenshot is kept as an artifact.
#[test]
fn the_status_page_draws_its_charts_in_a_browser() {
    // Long enough to outlast three Chromium runs on a loaded machine (each
    // can take seconds); it is killed once they are done.
    let (mut demo, address) = demo_in_background("120s");
    let chromium = |extra: &[&str]| {
        // A profile per run: a newer Chromium hands a run whose profile
        // is still held by the last one to that process, and exits
        // without doing the work.
        let profile = tempfile::tempdir().unwrap();
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=3000",
                "--window-size=1200,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("http://{address}/"))
            .output()
            .expect("chromium is installed (.ci/run installs it)")
    };
    let points = |dom: &str| -> Vec<u64> {
        dom.split("data-points=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap().parse().unwrap())
            .collect()
    };
    // The demo keeps a sample a second: let it take a few.
    std::thread::sleep(Duration::from_secs(2));
    let first = String::from_utf8(chromium(&["--dump-dom"]).stdout).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let second = String::from_utf8(chromium(&["--dump-dom"]).stdout).unwrap();
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let screenshot = chromium(&[&format!("--screenshot={}", shot.display())]);
    let _ = demo.kill();
    let _ = demo.wait();

    assert!(first.contains("class=\"healthy\""), "{first}");
    let (before, after) = (points(&first), points(&second));
    assert_eq!(before.len(), 4, "four charts: {first}");
    assert!(
        before.iter().all(|n| *n > 0),
        "every chart drew: {before:?}"
    );
    assert!(
        after.iter().zip(&before).all(|(a, b)| a > b),
        "the charts grow: {before:?} then {after:?}"
    );
    assert!(screenshot.status.success(), "{screenshot:?}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot at {}",
        shot.display()
    );
}
