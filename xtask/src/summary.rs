//! The one-table summary of a bench run: per group, keel's cost beside the
//! fastest anchor library's and the floor's, written at the top of
//! `docs/bench.md` and, after a full run, into README.md between the
//! `<!-- bench summary -->` markers.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::bench::Result;

/// README's markers around the summary.
const START: &str = "<!-- bench summary: start -->";
const END: &str = "<!-- bench summary: end -->";

/// What an entry costs: the time it adds over the group's `bare` entry
/// where there is one (a layer's overhead), else its time per operation.
fn costs(results: &[Result]) -> Vec<(&str, f64)> {
    let bare = results.iter().find(|r| r.function == "bare");
    results
        .iter()
        .filter(|r| r.function != "bare")
        .map(|r| {
            (
                r.function.as_str(),
                r.mean_ns - bare.map_or(0.0, |b| b.mean_ns),
            )
        })
        .collect()
}

/// A floor or limit entry: the bare engine, the simplest design with the
/// same guarantees, or a wrapper that does nothing (a no-op policy).
fn is_floor(name: &str) -> bool {
    name == "limit" || name.starts_with("floor") || name.contains("no-op")
}

/// Another library's entry: not keel's, not a floor, not one of keel's own
/// layers measured alone beside the stack.
fn is_anchor(name: &str) -> bool {
    !name.starts_with("keel") && !is_floor(name) && !name.ends_with(" alone")
}

/// `keel ÷ reference`, or `-` where the reference costs next to nothing.
fn ratio(num: f64, den: f64) -> String {
    if den < 1.0 {
        "-".into()
    } else {
        format!("{:.2}", num / den)
    }
}

/// The markdown table: one row per group with a `keel` entry.
pub(crate) fn table(groups: &BTreeMap<String, Vec<Result>>) -> String {
    let mut out = String::from(
        "| group | keel (ns) | fastest anchor | its ns | anchor ÷ keel | keel ÷ floor or limit |\n\
         |---|---:|---|---:|---:|---:|\n",
    );
    for (group, results) in groups {
        let costs = costs(results);
        let Some(&(_, keel)) = costs.iter().find(|(name, _)| *name == "keel") else {
            continue;
        };
        let fastest = |pick: &dyn Fn(&str) -> bool| {
            costs
                .iter()
                .filter(|(name, _)| pick(name))
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .copied()
        };
        let anchor = fastest(&is_anchor);
        let floor = fastest(&is_floor);
        let (anchor_name, anchor_ns, times) = anchor
            .map_or(("-".into(), "-".into(), "-".into()), |(n, ns)| {
                (n.to_string(), format!("{ns:.1}"), ratio(ns, keel))
            });
        let floor = floor.map_or("-".into(), |(_, ns)| ratio(keel, ns));
        let _ = writeln!(
            out,
            "| {group} | {keel:.1} | {anchor_name} | {anchor_ns} | {times} | {floor} |"
        );
    }
    out
}

/// The summary's legend, above the table.
pub(crate) const LEGEND: &str = "Per group: keel's cost (ns added per call over the bare operation where the group has one, else ns per operation), the fastest other library's, how many times keel's cost that is (above 1: keel is cheaper), and keel's cost over the group's floor or limit entry (the bare engine, the simplest design with the same guarantees, or a wrapper doing nothing; 1.00 is at it, below 1 keel beats it). `-`: the group has no such entry, or it costs under 1 ns.\n\n";

/// Replaces the summary between README's markers with `summary`.
pub(crate) fn write_into_readme(readme: &Path, summary: &str) -> std::result::Result<(), String> {
    let text = std::fs::read_to_string(readme).map_err(|e| format!("{}: {e}", readme.display()))?;
    let (Some(start), Some(end)) = (text.find(START), text.find(END)) else {
        return Err(format!(
            "{}: no `{START}` … `{END}` markers",
            readme.display()
        ));
    };
    let updated = format!("{}{START}\n{summary}{}", &text[..start], &text[end..]);
    std::fs::write(readme, updated).map_err(|e| format!("{}: {e}", readme.display()))
}
