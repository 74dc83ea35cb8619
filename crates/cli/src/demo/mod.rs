//! `keel demo`: the full stack from one config, a concurrent workload of
//! reads, writes, transactions and session operations, the health probes
//! and `/metrics` on `--listen`, a line a second, and a summary.

mod chaos;
mod dashboard;
mod http;
mod report;
mod stats;
mod workload;

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel::pool::Backend;
use keel::sqlx::{MySqlConnection, PgConnection, SqliteConnection};
use keel::{Database, DatabaseConfig};
use keel_session_store::{
    MemoryStore, NewSession, SessionStore, SledConfig, SledStore, StoreConfig,
};
use tokio::sync::watch;

use crate::fail::Failure;
use chaos::Chaos;
use report::{History, Sample};
use stats::{DemoStats, Op};
use workload::{ACCOUNTS, Workload};

/// `keel demo`'s flags.
#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// The database: `postgres://...`, `mysql://...` or `sqlite:...`
    /// (default: DATABASE_URL, else a SQLite file in a temp dir).
    #[arg(long)]
    database_url: Option<String>,
    /// A TOML config file (the environment's DATABASE_* apply over it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where sessions live: `memory`, or `sled:DIR`.
    #[arg(long, default_value = "memory")]
    sessions: String,
    /// How long the workload runs (`20s`, `2m`).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent clients.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=1024))]
    clients: u16,
    /// Where to serve /, /health, /health/ready, /health/detailed, /metrics.
    #[arg(long, default_value = "127.0.0.1:9464")]
    listen: SocketAddr,
    /// Inject faults (windows in which most operations fail with a refused
    /// connection), so retries and the breaker are seen at work.
    #[arg(long)]
    chaos: bool,
}

enum Sessions {
    Memory,
    Sled(PathBuf),
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode, Failure> {
    let sessions = match args.sessions.as_str() {
        "memory" => Sessions::Memory,
        other => match other.strip_prefix("sled:") {
            Some(dir) if !dir.is_empty() => Sessions::Sled(dir.into()),
            _ => {
                return Err(Failure::input(format!(
                    "--sessions `{other}`: expected `memory` or `sled:DIR`"
                )));
            }
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::environment(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(start(args, sessions))
}

/// The demo's defaults, short enough to see things happen in seconds: the
/// breaker opens when half the calls of the last 2 s failed (at least 50
/// of them) and stays open 3 s; health checks every 5 s.
fn demo_config() -> DatabaseConfig {
    let mut config = DatabaseConfig::default().with_name("demo");
    config.breaker = config
        .breaker
        .with_consecutive_failures(None)
        .with_failure_rate(0.5)
        .with_window(keel::breaker::Window::Time {
            duration: Duration::from_secs(2),
            buckets: 4,
        })
        .with_min_calls(50)
        .with_open_duration(Duration::from_secs(3));
    config.health = keel::health::HealthConfig::new(Duration::from_secs(5), Duration::from_secs(2));
    config
}

async fn start(args: DemoArgs, sessions: Sessions) -> Result<ExitCode, Failure> {
    let hint = "fix the field named above; `keel config show` prints the effective config";
    let base = match &args.config {
        Some(file) => DatabaseConfig::from_file(file).map_err(|e| Failure::input(e).hint(hint))?,
        None => demo_config(),
    };
    let mut config = base.with_env().map_err(|e| Failure::input(e).hint(hint))?;
    let _temp;
    if let Some(url) = &args.database_url {
        config.url = Some(url.parse().map_err(|e| {
            Failure::input(format!("--database-url: {e}")).hint(
                "e.g. postgres://user@127.0.0.1:5432/db, mysql://root@127.0.0.1/db, sqlite:demo.db",
            )
        })?);
    }
    if config.url.is_none() {
        let dir = tempfile::tempdir()
            .map_err(|e| Failure::environment(format!("cannot make a temp dir: {e}")))?;
        let file = dir.path().join("keel-demo.db");
        config.url = Some(
            format!("sqlite://{}?mode=rwc", file.display())
                .parse()
                .map_err(|e| Failure::environment(format!("the temp SQLite path: {e}")))?,
        );
        _temp = dir;
    }
    config
        .validate()
        .map_err(|e| Failure::input(e).hint(hint))?;
    let backend = config.url.as_ref().map(keel::pool::DatabaseUrl::backend);
    let store = match &sessions {
        Sessions::Memory => Store::Memory(
            MemoryStore::builder(StoreConfig::default())
                .name("demo")
                .build()
                .map_err(|e| Failure::environment(format!("the session store: {e}")))?,
        ),
        Sessions::Sled(dir) => Store::Sled(
            SledStore::builder(SledConfig::new(dir), StoreConfig::default())
                .name("demo")
                .build()
                .map_err(|e| {
                    Failure::environment(format!(
                        "the sled session store in {}: {e}",
                        dir.display()
                    ))
                })?,
        ),
    };
    match backend {
        Some(Backend::Postgres) => demo::<PgConnection>(args, config, store).await,
        Some(Backend::MySql) => demo::<MySqlConnection>(args, config, store).await,
        _ => demo::<SqliteConnection>(args, config, store).await,
    }
}

enum Store {
    Memory(MemoryStore),
    Sled(SledStore),
}

async fn demo<C: Workload>(
    args: DemoArgs,
    config: DatabaseConfig,
    store: Store,
) -> Result<ExitCode, Failure> {
    match store {
        Store::Memory(store) => run_demo::<C, _>(args, config, Arc::new(store)).await,
        Store::Sled(store) => run_demo::<C, _>(args, config, Arc::new(store)).await,
    }
}

async fn run_demo<C: Workload, S: SessionStore>(
    args: DemoArgs,
    config: DatabaseConfig,
    store: Arc<S>,
) -> Result<ExitCode, Failure> {
    let prometheus = keel::telemetry::install()
        .map_err(|e| Failure::environment(format!("the metrics recorder: {e}")))?;
    let shown_url = config
        .url
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| {
        Failure::environment(format!("cannot listen on {}: {e}", args.listen))
            .hint("another program holds the port: pass --listen 127.0.0.1:0 (any free port) or another address")
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Failure::environment(format!("the listening address: {e}")))?;
    let mut config = config;
    let proxy = match (
        args.chaos,
        config.url.as_ref().map(keel::pool::DatabaseUrl::backend),
    ) {
        (true, Some(Backend::Postgres | Backend::MySql)) => {
            let (proxy, url) = chaos::through_proxy(config.url.as_ref()).await?;
            config.url = Some(url);
            Some(proxy)
        }
        _ => None,
    };
    let db = Database::<C>::connect(config).await.map_err(|e| {
        Failure::environment(e)
            .hint("is the database running and reachable? check --database-url or DATABASE_URL")
    })?;
    C::setup(&db).await.map_err(|e| {
        Failure::environment(e)
            .hint("the demo creates the table keel_demo_accounts; it needs CREATE rights")
    })?;

    say(&format!(
        "keel demo: {shown_url}, {} clients for {:?}{}",
        args.clients,
        args.duration,
        match (args.chaos, &proxy) {
            (false, _) => String::new(),
            (true, Some(p)) => format!(
                ", with faults: connections pass through a proxy on {} that drops and refuses them",
                p.address()
            ),
            (true, None) => ", with faults injected in the stack".to_owned(),
        }
    ));
    say(&format!(
        "serving http://{address}/ (status page), /health, /health/ready, /health/detailed, /metrics"
    ));

    let (stop_tx, stop_rx) = watch::channel(false);
    let history = Arc::new(History::default());
    let app = http::router(&db, prometheus, Arc::clone(&history));
    let mut server_stop = stop_rx.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = server_stop.changed().await;
            })
            .await
    });

    let chaos = Arc::new(Chaos::new(args.chaos, proxy));
    let stats = Arc::new(DemoStats::new());
    let chaos_task = tokio::spawn({
        let chaos = Arc::clone(&chaos);
        let stop = stop_rx.clone();
        async move { chaos.drive(stop).await }
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|client| {
            tokio::spawn(client_loop(
                db.clone(),
                Arc::clone(&store),
                Arc::clone(&chaos),
                Arc::clone(&stats),
                u64::from(client),
                stop_rx.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let max_size = db.config().pool.max_size;
    let address_text = address.to_string();
    let mut dashboard = if std::io::stdout().is_terminal() {
        dashboard::Dashboard::start().ok()
    } else {
        None
    };
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last_total = 0;
    let mut last_failed = 0;
    let mut interrupted = false;
    let deadline = tokio::time::sleep(args.duration);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => {
                interrupted = true;
                break;
            }
            _ = ticker.tick() => {
                let (ok, failed) = stats.total();
                let (p50, p99) = stats.take_recent();
                let pool = db.stats();
                let sample = Sample {
                    second: started.elapsed().as_secs(),
                    ops_per_s: (ok + failed) - (last_total),
                    failed_per_s: failed - last_failed,
                    p50,
                    p99,
                    in_use: pool.in_use,
                    idle: pool.idle,
                    waiting: pool.waiters,
                    breaker: db.breaker_info().state.as_str(),
                    retries: db.metrics_snapshot().retries,
                    sessions: store.len().await.unwrap_or_default(),
                    chaos: chaos.is_open(),
                };
                (last_total, last_failed) = (ok + failed, failed);
                let line = report::line(&sample);
                history.push(sample);
                match &mut dashboard {
                    Some(screen) => {
                        let header = dashboard::Header {
                            url: &shown_url,
                            address: &address_text,
                            clients: args.clients,
                            duration_s: args.duration.as_secs(),
                            max_size,
                        };
                        if screen.draw(&header, &history.recent(120)).is_err() {
                            dashboard = None;
                        }
                    }
                    None => say(&line),
                }
            }
        }
    }
    drop(dashboard);
    let _ = stop_tx.send(true);
    for client in clients {
        let _ = client.await;
    }
    let _ = chaos_task.await;
    let ran = started.elapsed();
    say(&report::summary(&db, &stats, &chaos, ran));
    let _ = server.await;
    if let Err(e) = db.shutdown(Duration::from_secs(5)).await {
        say(&format!("shutdown: {e}"));
    }
    if interrupted {
        say("interrupted: stopped cleanly");
    }
    Ok(ExitCode::SUCCESS)
}

/// A failed operation: what the summary counts it as, and whether the open
/// breaker turned it away.
struct Failed {
    kind: String,
    rejected: bool,
}

fn outcome<T>(result: Result<T, keel::Error>) -> Result<(), Failed> {
    result.map(drop).map_err(|e| Failed {
        kind: e.phase().to_string(),
        rejected: e.is_rejected(),
    })
}

/// One client: a mix of reads (60 %), writes (20 %), transfers (10 %) and
/// session operations (10 %) until told to stop.
async fn client_loop<C: Workload, S: SessionStore>(
    db: Database<C>,
    store: Arc<S>,
    chaos: Arc<Chaos>,
    stats: Arc<DemoStats>,
    client: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = fastrand::Rng::with_seed(client);
    let mut session = None;
    while !*stop.borrow_and_update() {
        let roll = rng.u8(0..100);
        let id = rng.i64(1..=ACCOUNTS);
        let started = Instant::now();
        let (op, result) = match roll {
            0..60 => (Op::Read, outcome(C::read(&db, &chaos, id).await)),
            60..80 => (Op::Write, outcome(C::write(&db, &chaos, id, 1).await)),
            80..90 => {
                let to = rng.i64(1..=ACCOUNTS);
                (
                    Op::Transfer,
                    outcome(C::transfer(&db, &chaos, id, to, 5).await),
                )
            }
            _ => (
                Op::Session,
                session_step(&*store, &mut session, client)
                    .await
                    .map_err(|kind| Failed {
                        kind,
                        rejected: false,
                    }),
            ),
        };
        let rejected = result.as_ref().is_err_and(|failed| failed.rejected);
        stats.record(
            op,
            started.elapsed(),
            result.err().map(|failed| failed.kind),
        );
        if rejected {
            // A well-behaved client backs off while the breaker is open
            // rather than spinning on rejections.
            tokio::time::sleep(Duration::from_millis(50)).await;
        } else if matches!(op, Op::Read) && roll.is_multiple_of(7) {
            // Now and then a pause, as a real client thinks between calls.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Creates the client's session, or touches it, or updates it.
async fn session_step<S: SessionStore>(
    store: &S,
    session: &mut Option<keel_session_store::SessionId>,
    client: u64,
) -> Result<(), String> {
    let fail = |e: keel_session_store::StoreError| format!("session store: {e}");
    match session {
        None => {
            let created = store
                .create(NewSession::new(format!("client-{client}"), "demo"))
                .await
                .map_err(fail)?;
            *session = Some(created.id);
        }
        Some(id) => match store.touch(id).await {
            Ok(current) => {
                store
                    .update(id, current.version, current.data.clone())
                    .await
                    .map_err(fail)?;
            }
            Err(_) => *session = None,
        },
    }
    Ok(())
}

#[expect(clippy::print_stdout, reason = "the demo's output")]
fn say(text: &str) {
    println!("{text}");
}
