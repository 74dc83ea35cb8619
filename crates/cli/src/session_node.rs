//! `keel session-node`: one member of a replicated session store, and the
//! commands that manage a cluster of them.
//!
//! ```text
//! keel session-node --id 1 --listen 127.0.0.1:7001 --data-dir d1 --secret-file s
//! keel session-node init --secret-file s --node 127.0.0.1:7001 --member 1=127.0.0.1:7001 ...
//! keel session-node add-learner|promote|remove|status ...
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use keel_session_store::StoreConfig;
use keel_session_store::raft::wire::Secret;
use keel_session_store::raft::{NodeConfig, RaftClientConfig, RaftNode, RaftSessionStore, Status};

use crate::fail::Failure;

/// `keel session-node`'s flags: run a node, or manage a cluster.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct SessionNodeArgs {
    #[command(subcommand)]
    command: Option<ClusterCommand>,
    #[command(flatten)]
    run: RunArgs,
}

/// Running a node.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// This node's id, unique in the cluster.
    #[arg(long)]
    id: Option<u64>,
    /// Where to listen for peers and clients (host:port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The address others reach this node at (default: --listen).
    #[arg(long)]
    advertise: Option<String>,
    /// Where the log, the vote and the snapshots live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A file holding the cluster's shared secret (at least 16 bytes).
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Idle time after which a session expires (e.g. 30m).
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
    /// How often the leader removes expired sessions (e.g. 60s).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    cleanup_interval: Duration,
    /// How often the leader sends heartbeats (e.g. 150ms).
    #[arg(long, default_value = "150ms", value_parser = humantime::parse_duration)]
    heartbeat: Duration,
    /// The shortest time without a leader before standing for election.
    #[arg(long, default_value = "750ms", value_parser = humantime::parse_duration)]
    election_min: Duration,
    /// The longest such time.
    #[arg(long, default_value = "1500ms", value_parser = humantime::parse_duration)]
    election_max: Duration,
    /// Entries between snapshots.
    #[arg(long, default_value_t = 50_000)]
    snapshot_every: u64,
}

/// Managing a cluster, through any of its nodes.
#[derive(Debug, clap::Subcommand)]
enum ClusterCommand {
    /// Make the first members a cluster (once, on one node).
    Init {
        #[command(flatten)]
        to: Target,
        /// A first member, as ID=HOST:PORT (repeat for each).
        #[arg(long = "member", required = true, value_parser = member)]
        members: Vec<(u64, String)>,
    },
    /// Add a node that receives the log without voting.
    AddLearner {
        #[command(flatten)]
        to: Target,
        /// The node's id.
        #[arg(long)]
        id: u64,
        /// Its address (host:port).
        #[arg(long)]
        addr: String,
    },
    /// Make a learner a voter (refused until it has caught up).
    Promote {
        #[command(flatten)]
        to: Target,
        /// The learner's id.
        #[arg(long)]
        id: u64,
        /// How many entries behind the leader it may be.
        #[arg(long, default_value_t = 100)]
        max_lag: u64,
    },
    /// Take a node out of the cluster.
    Remove {
        #[command(flatten)]
        to: Target,
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
    /// The leader, the term, the members, and how far each is behind.
    Status {
        #[command(flatten)]
        to: Target,
        /// This node's own view, not the leader's.
        #[arg(long)]
        local: bool,
        /// As one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Which cluster a command is for.
#[derive(Debug, clap::Args)]
struct Target {
    /// A node of the cluster (host:port; repeat to name several).
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,
    /// A file holding the cluster's shared secret.
    #[arg(long)]
    secret_file: PathBuf,
}

fn member(text: &str) -> Result<(u64, String), String> {
    let (id, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected ID=HOST:PORT"))?;
    let id = id
        .parse()
        .map_err(|_| format!("`{text}`: the id `{id}` is not a number"))?;
    if !addr.contains(':') {
        return Err(format!("`{text}`: the address `{addr}` has no port"));
    }
    Ok((id, addr.to_owned()))
}

pub(crate) fn run(args: SessionNodeArgs) -> Result<ExitCode, Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::environment(format!("cannot start the async runtime: {e}")))?;
    match args.command {
        Some(command) => runtime.block_on(manage(command)),
        None => runtime.block_on(serve(args.run)),
    }
}

fn secret(path: &std::path::Path) -> Result<Secret, Failure> {
    Secret::from_file(path).map_err(|e| {
        Failure::input(e).hint("put at least 16 random bytes in the file, the same on every node")
    })
}

fn required<T>(value: Option<T>, flag: &str) -> Result<T, Failure> {
    value.ok_or_else(|| {
        Failure::input(format!("{flag} is required to run a node")).hint(
            "keel session-node --id 1 --listen 127.0.0.1:7001 --data-dir DIR --secret-file FILE",
        )
    })
}

async fn serve(args: RunArgs) -> Result<ExitCode, Failure> {
    init_logging();
    let id = required(args.id, "--id")?;
    let listen = required(args.listen, "--listen")?;
    let data_dir = required(args.data_dir, "--data-dir")?;
    let secret = secret(&required(args.secret_file, "--secret-file")?)?;
    let mut config = NodeConfig::new(id, listen, data_dir, secret);
    config.advertise = args.advertise;
    config.store = StoreConfig::default()
        .with_default_ttl(args.session_ttl)
        .with_cleanup_interval(args.cleanup_interval);
    config.heartbeat_interval = args.heartbeat;
    config.election_timeout = (args.election_min, args.election_max);
    config.snapshot_every = args.snapshot_every;
    let node = RaftNode::start(config)
        .await
        .map_err(Failure::environment)?;
    tracing::info!(id, addr = %node.local_addr(), "session node serving");
    announce(node.local_addr());
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!(id, "shutting down");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// The line a supervisor (or a test) waits for.
#[expect(clippy::print_stdout, reason = "the node's one line of output")]
fn announce(addr: SocketAddr) {
    println!("listening on {addr}");
}

/// Logs to stderr: keel's lines from INFO, openraft's from WARN (its INFO
/// lines narrate every election step).
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("openraft", LevelFilter::WARN);
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .try_init();
}

async fn manage(command: ClusterCommand) -> Result<ExitCode, Failure> {
    let (to, json) = match &command {
        ClusterCommand::Init { to, .. }
        | ClusterCommand::AddLearner { to, .. }
        | ClusterCommand::Promote { to, .. }
        | ClusterCommand::Remove { to, .. } => (to, false),
        ClusterCommand::Status { to, json, .. } => (to, *json),
    };
    let client = RaftSessionStore::new(RaftClientConfig::new(
        to.nodes.clone(),
        secret(&to.secret_file)?,
    ))
    .map_err(Failure::input)?;
    let status = match command {
        ClusterCommand::Init { members, .. } => {
            client
                .initialize(members.into_iter().collect::<BTreeMap<_, _>>())
                .await
        }
        ClusterCommand::AddLearner { id, addr, .. } => client.add_learner(id, addr).await,
        ClusterCommand::Promote { id, max_lag, .. } => client.promote(id, max_lag).await,
        ClusterCommand::Remove { id, .. } => client.remove(id).await,
        ClusterCommand::Status {
            local: true, to, ..
        } => client.node_status(&to.nodes[0]).await,
        ClusterCommand::Status { .. } => client.status().await,
    }
    .map_err(Failure::environment)?;
    report(&status, json);
    Ok(ExitCode::SUCCESS)
}

#[expect(clippy::print_stdout, reason = "the command's report")]
fn report(status: &Status, json: bool) {
    if json {
        println!("{}", serde_json::to_string(status).unwrap_or_default());
        return;
    }
    let leader = status
        .leader
        .map_or_else(|| "none".to_owned(), |l| l.to_string());
    println!(
        "node {}: leader {leader}, term {}, applied {}, log {}",
        status.id, status.term, status.last_applied, status.last_log
    );
    for (kind, members) in [("voter", &status.voters), ("learner", &status.learners)] {
        for (id, addr) in members {
            let lag = match status.lag.get(id) {
                Some(Some(lag)) => format!("{lag} behind"),
                Some(None) => "not replicating yet".to_owned(),
                None if status.leader == Some(*id) => "leader".to_owned(),
                None => "lag known to the leader".to_owned(),
            };
            println!("  {kind} {id} at {addr}: {lag}");
        }
    }
}
