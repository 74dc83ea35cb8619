//! `keel`: the program a person runs. `keel demo` shows the stack at work
//! on embedded defaults (SQLite, memory sessions); `keel config` checks and
//! shows a configuration.

mod config_cmd;
mod demo;
mod fail;
mod monitor;
mod session_node;

use std::process::ExitCode;

/// mimalloc: a session node allocates and frees a few objects per write
/// on two threads; glibc's malloc spent about a tenth of its time there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

/// Resilient database access for Rust services: pool, retry, circuit
/// breaker, health checks and metrics.
#[derive(Debug, Parser)]
#[command(name = "keel", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a concurrent workload through the full stack, serve health and
    /// metrics, and show what happens (with --chaos, under faults).
    Demo(demo::DemoArgs),
    /// Report the health of a service serving keel's /health/detailed
    /// (exit 0 healthy, 1 degraded, 2 unhealthy, 3 unreachable).
    Monitor(monitor::MonitorArgs),
    /// Check or show a configuration (file plus DATABASE_* environment).
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Run a node of a replicated (raft) session store, or manage a cluster
    /// of them (init, add-learner, promote, remove, status).
    SessionNode(session_node::SessionNodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Monitor(args) => monitor::run(args),
        Command::Config(command) => config_cmd::run(command),
        Command::SessionNode(args) => session_node::run(args),
    };
    match result {
        Ok(code) => code,
        Err(failure) => failure.report(),
    }
}
