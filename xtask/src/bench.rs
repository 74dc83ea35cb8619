//! `cargo xtask bench`: runs the criterion benches and prints a markdown
//! table per group: mean time per iteration, what each entry adds over the
//! group's `bare` entry (no wrapper), and that overhead as a multiple of
//! keel's (the entry named `keel`), all from the same run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde_json::Value;

use crate::cmd::{cargo, root, status};

/// One entry's result: its name in the group and its mean time.
pub(crate) struct Result {
    pub(crate) function: String,
    pub(crate) mean_ns: f64,
}

/// Where a run notes when it started and with which arguments, so
/// `--report` can redo the tables of that run without running it again.
fn marker() -> PathBuf {
    target_dir().join("criterion").join("keel-bench-run.json")
}

pub(crate) fn run(args: &[String]) -> std::result::Result<(), String> {
    let (started, extra) = if args.first().map(String::as_str) == Some("--report") {
        last_run()?
    } else {
        let started = SystemTime::now();
        let mut cargo_args = vec!["bench", "-p", "keel-benches", "--"];
        cargo_args.extend(args.iter().map(String::as_str));
        status(cargo(&cargo_args))?;
        let since = started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let note = serde_json::json!({ "started": since, "args": args });
        std::fs::write(marker(), note.to_string())
            .map_err(|e| format!("{}: {e}", marker().display()))?;
        (started, args.to_vec())
    };
    report(started, &extra)
}

/// The start time and arguments of the last run.
fn last_run() -> std::result::Result<(SystemTime, Vec<String>), String> {
    let note = read_json(&marker())
        .map_err(|e| format!("no earlier run to report on (run `cargo xtask bench` first): {e}"))?;
    let since = note["started"]
        .as_u64()
        .ok_or("the run note has no start time")?;
    let args = note["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok((
        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(since),
        args,
    ))
}

/// Tables, chart and summary from the results written since `started`.
fn report(started: SystemTime, extra: &[String]) -> std::result::Result<(), String> {
    let dir = target_dir().join("criterion");
    let mut groups: BTreeMap<String, Vec<Result>> = BTreeMap::new();
    collect(&dir, started, &mut groups)?;
    if groups.is_empty() {
        return Err(format!(
            "no fresh criterion results under {}",
            dir.display()
        ));
    }
    let mut report = String::new();
    for (group, results) in &groups {
        let table = table(group, results);
        print!("{table}");
        report.push_str(&table);
    }
    let docs = root().join("docs");
    std::fs::create_dir_all(&docs).map_err(|e| format!("{}: {e}", docs.display()))?;
    let command = format!("cargo xtask bench {}", extra.join(" "));
    let summary = format!(
        "{}{}\nMeasured by `{}` on this project's 2-core machine; every ratio is within one run. Every group's table: [docs/bench.md](docs/bench.md).\n\n",
        crate::summary::LEGEND,
        crate::summary::table(&groups),
        command.trim_end()
    );
    let header = format!(
        "# Benchmarks\n\n`{}` on this project's 2-core machine; every\nratio is within one run. The chart: `bench.svg`.\n\n## Summary\n\n{}",
        command.trim_end(),
        crate::summary::LEGEND
    );
    let md = docs.join("bench.md");
    let body = header + &crate::summary::table(&groups) + "\n## Every group\n" + &report;
    std::fs::write(&md, body).map_err(|e| format!("{}: {e}", md.display()))?;
    if extra.is_empty() {
        crate::summary::write_into_readme(&root().join("README.md"), &summary)?;
    }
    let svg = docs.join("bench.svg");
    let panels: Vec<crate::chart::Panel> = groups
        .iter()
        .map(|(group, results)| crate::chart::Panel {
            title: group.clone(),
            bars: results
                .iter()
                .map(|r| (r.function.clone(), r.mean_ns))
                .collect(),
        })
        .collect();
    crate::chart::write(&svg, &panels)?;
    println!("\nwrote {} and {}", md.display(), svg.display());
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// Finds every `new/benchmark.json` written since `since`.
fn collect(
    dir: &Path,
    since: SystemTime,
    groups: &mut BTreeMap<String, Vec<Result>>,
) -> std::result::Result<(), String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        let bench = path.join("new").join("benchmark.json");
        let estimates = path.join("new").join("estimates.json");
        let fresh = std::fs::metadata(&estimates)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if fresh {
            let meta = read_json(&bench)?;
            let est = read_json(&estimates)?;
            let group = meta["group_id"].as_str().unwrap_or("?").to_string();
            let mut function = meta["function_id"].as_str().unwrap_or("").to_string();
            if let Some(v) = meta["value_str"].as_str() {
                function = format!("{function}/{v}");
            }
            let mean_ns = est["mean"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
            groups
                .entry(group)
                .or_default()
                .push(Result { function, mean_ns });
        } else {
            collect(&path, since, groups)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> std::result::Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A group's markdown table.
fn table(group: &str, results: &[Result]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if group.starts_with("rate ") || results.iter().any(|r| r.function == "limit") {
        return throughput_table(group, results);
    }
    let find = |name: &str| {
        results
            .iter()
            .find(|r| r.function == name)
            .map(|r| r.mean_ns)
    };
    let bare = find("bare");
    let keel_added = find("keel").zip(bare).map(|(k, b)| k - b);
    let _ = writeln!(out, "\n### {group}\n");
    let _ = writeln!(
        out,
        "| entry | ns / call | added vs bare (ns) | added, × keel |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let mut sorted: Vec<&Result> = results.iter().collect();
    sorted.sort_by(|a, b| a.mean_ns.total_cmp(&b.mean_ns));
    for r in sorted {
        let added = bare.map(|b| r.mean_ns - b);
        let added_str = added.map_or("-".into(), |a| format!("{a:.1}"));
        let times = match (added, keel_added) {
            (Some(a), Some(k)) if k > 0.0 && r.function != "bare" => format!("{:.2}", a / k),
            _ => "-".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} |",
            r.function, r.mean_ns, added_str, times
        );
    }
    out
}

/// A throughput group (its entries time one operation of all tasks
/// together; a `limit` entry or a title starting `rate `): operations per
/// second and the share of the reference's rate each reaches: the `limit`
/// entry's, else (a group comparing keel with itself) the `keel` entry's.
fn throughput_table(group: &str, results: &[Result]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let reference = ["limit", "keel"]
        .into_iter()
        .find_map(|name| results.iter().find(|r| r.function == name));
    let limit = reference.map(|r| r.mean_ns);
    let by = reference.map_or("limit", |r| r.function.as_str());
    let _ = writeln!(out, "\n### {group}\n");
    let _ = writeln!(out, "| entry | ns / op | ops / s | × {by} |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    let mut sorted: Vec<&Result> = results.iter().collect();
    sorted.sort_by(|a, b| a.mean_ns.total_cmp(&b.mean_ns));
    for r in sorted {
        let ratio = limit.map_or("-".into(), |l| format!("{:.2}", l / r.mean_ns));
        let _ = writeln!(
            out,
            "| {} | {:.1} | {} | {} |",
            r.function,
            r.mean_ns,
            rate(1e9 / r.mean_ns),
            ratio
        );
    }
    out
}

/// A rate with a unit that keeps three significant digits: `7.52M`, `41.3K`.
fn rate(per_sec: f64) -> String {
    if per_sec >= 1e6 {
        format!("{:.2}M", per_sec / 1e6)
    } else if per_sec >= 1e3 {
        format!("{:.1}K", per_sec / 1e3)
    } else {
        format!("{per_sec:.0}")
    }
}
