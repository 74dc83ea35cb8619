//! `cargo xtask ci`: the checks CI runs, each reported with its time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::cmd::{cargo, output, root, status};

/// The directory cargo-deny 0.20 derives from the default advisory-db URL.
const ADVISORY_DB_DIR: &str = "advisory-db-3157b0e258782691";

type Step = fn() -> Result<(), String>;

pub(crate) fn run() -> Result<(), String> {
    let steps: [(&str, Step); 7] = [
        ("fmt", fmt),
        ("clippy", clippy),
        ("standalone", standalone),
        ("features", features),
        ("test", test),
        ("doc", doc),
        ("deny", deny),
    ];
    let started = Instant::now();
    let mut failed = Vec::new();
    for (name, step) in steps {
        let t = Instant::now();
        let result = step();
        let secs = t.elapsed().as_secs_f64();
        match result {
            Ok(()) => println!("xtask ci: {name:<10} ok     {secs:7.1}s"),
            Err(e) => {
                println!("xtask ci: {name:<10} FAILED {secs:7.1}s  {e}");
                failed.push(name);
            }
        }
    }
    let total = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        println!("xtask ci: all steps passed in {total:.1}s");
        Ok(())
    } else {
        Err(format!("failed steps: {} ({total:.1}s)", failed.join(", ")))
    }
}

fn fmt() -> Result<(), String> {
    status(cargo(&["fmt", "--all", "--", "--check"]))
}

fn clippy() -> Result<(), String> {
    status(cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ]))
}

/// keel-breaker alone: no keel crate and no tokio in its normal tree, and it
/// builds clean without default features; keel-session-store builds clean
/// with no backend and with sled alone.
fn standalone() -> Result<(), String> {
    let out = output(cargo(&[
        "tree",
        "-p",
        "keel-breaker",
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]))?;
    let tree = String::from_utf8_lossy(&out.stdout);
    let offenders: Vec<&str> = tree
        .lines()
        .filter(|line| {
            let name = line.split_whitespace().next().unwrap_or("");
            (name.starts_with("keel") && name != "keel-breaker") || name.starts_with("tokio")
        })
        .collect();
    if !offenders.is_empty() {
        return Err(format!(
            "keel-breaker without default features must not depend on: {}",
            offenders.join(", ")
        ));
    }
    status(cargo(&[
        "clippy",
        "-p",
        "keel-breaker",
        "--no-default-features",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // health and telemetry build clean with none of their integrations
    // (each one alone is a cfg of the same code the all-features run sees).
    for (package, features) in [
        ("keel-health", ""),
        ("keel-telemetry", ""),
        ("keel-telemetry", "tower"),
        ("keel", ""),
    ] {
        status(cargo(&[
            "clippy",
            "-p",
            package,
            "--no-default-features",
            "--features",
            features,
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    // The session store builds clean with no backend and with sled alone
    // (the workspace checks above see only all features at once).
    for features in ["", "sled"] {
        status(cargo(&[
            "clippy",
            "-p",
            "keel-session-store",
            "--no-default-features",
            "--features",
            features,
            "--",
            "-D",
            "warnings",
        ]))?;
    }
    Ok(())
}

/// Every feature of every crate under crates/, alone: users depend on one
/// crate with the features they need, and the workspace runs above see
/// only all of them at once (a feature that needs another it does not
/// enable breaks only here). A warning fails it too.
fn features() -> Result<(), String> {
    let out = output(cargo(&["metadata", "--no-deps", "--format-version", "1"]))?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("cargo metadata: {e}"))?;
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let mut broken = Vec::new();
    for package in packages {
        // The crates users depend on live under crates/ (not the tests,
        // benches and chores).
        let manifest = package["manifest_path"].as_str().unwrap_or_default();
        if !Path::new(manifest)
            .parent()
            .and_then(Path::parent)
            .is_some_and(|dir| dir.ends_with("crates"))
        {
            continue;
        }
        let name = package["name"].as_str().unwrap_or_default();
        let features = package["features"].as_object().cloned().unwrap_or_default();
        for feature in features.keys().filter(|f| *f != "default") {
            let run = cargo(&[
                "check",
                "-q",
                "-p",
                name,
                "--lib",
                "--no-default-features",
                "--features",
                feature,
            ])
            .output()
            .map_err(|e| format!("cargo check: {e}"))?;
            let stderr = String::from_utf8_lossy(&run.stderr);
            if !run.status.success() || stderr.contains("warning") {
                eprintln!("{name} with only `{feature}`:\n{stderr}");
                broken.push(format!("{name}/{feature}"));
            }
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(format!("does not build clean alone: {}", broken.join(", ")))
    }
}

fn test() -> Result<(), String> {
    status(cargo(&["test", "--workspace", "--all-features"]))
}

fn doc() -> Result<(), String> {
    let mut cmd = cargo(&["doc", "--workspace", "--no-deps", "--all-features"]);
    cmd.env("RUSTDOCFLAGS", "-D warnings");
    status(cmd)
}

fn deny() -> Result<(), String> {
    install_advisory_db()?;
    // Offline, cargo-deny reads every platform's crates from the local
    // registry; a build fetches only this platform's. The registry is
    // reachable, the advisory database is not.
    status(cargo(&["fetch", "--locked"]))?;
    status(cargo(&["deny", "--offline", "check"]))
}

/// These machines cannot fetch the advisory database: install the snapshot
/// from `../shared/advisory-db` when no database is there yet (a newer one
/// is never replaced).
fn install_advisory_db() -> Result<(), String> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .ok_or("neither CARGO_HOME nor HOME is set")?;
    let db = cargo_home.join("advisory-dbs").join(ADVISORY_DB_DIR);
    if db.join(".git").exists() {
        return Ok(());
    }
    let shared = std::env::var_os("KEEL_SHARED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("..").join("shared"));
    let bundle = shared.join("advisory-db").join("advisory-db.bundle");
    if !bundle.exists() {
        return Err(format!(
            "no advisory database at {} and no snapshot at {} (set KEEL_SHARED_DIR)",
            db.display(),
            bundle.display()
        ));
    }
    let mut clone = Command::new("git");
    clone.arg("clone").arg("-q").arg(&bundle).arg(&db);
    output(clone).map(drop)
}
