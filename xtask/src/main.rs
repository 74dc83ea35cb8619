//! Project chores, run as `cargo xtask <task>`:
//!
//! - `ci`: every check CI runs, one line per step with its time.
//! - `bench`: the benchmarks, then a markdown table of the results
//!   (docs/bench.md, docs/bench.svg and, after a full run, README.md's
//!   summary).
//! - `pg [--replicas N]`: throwaway PostgreSQL servers for manual use.
#![forbid(unsafe_code)]
#![expect(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a command-line tool reports to the terminal"
)]

mod bench;
mod chart;
mod ci;
mod cmd;
mod pg;
mod summary;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("bench") => bench::run(&args[1..]),
        Some("pg") => pg::run(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n  ci      fmt, clippy, standalone check, tests, docs, cargo-deny\n  bench   run the benchmarks and print a markdown table (extra args go to criterion;\n          `--report` redoes the tables, chart and summary of the last run)\n  pg      a throwaway PostgreSQL primary (`--replicas N`: and N streaming replicas) until Ctrl-C"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
