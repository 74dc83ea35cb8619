//! `cargo xtask pg [--replicas N]`: throwaway PostgreSQL servers for
//! manual use (a primary and N streaming replicas, each on a free port of
//! 127.0.0.1), stopped and removed on Ctrl-C or Enter.

use keel_fault::ThrowawayPostgres;

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let replicas = match args {
        [] => 0,
        [flag, n] if flag == "--replicas" => n
            .parse()
            .map_err(|_| format!("--replicas: `{n}` is not a count"))?,
        _ => return Err(format!("pg: unknown arguments {args:?} (try --replicas N)")),
    };
    let primary = ThrowawayPostgres::start().map_err(|e| format!("primary: {e}"))?;
    let mut servers = Vec::with_capacity(replicas);
    for n in 1..=replicas {
        servers.push(
            primary
                .start_replica()
                .map_err(|e| format!("replica {n}: {e}"))?,
        );
    }
    println!("primary    {}", primary.url("postgres"));
    for (n, r) in servers.iter().enumerate() {
        println!("replica {}  {}", n + 1, r.url("postgres"));
    }
    if !servers.is_empty() {
        let hosts: Vec<String> = std::iter::once(&primary)
            .chain(&servers)
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        println!(
            "cluster    postgres://postgres@{}/postgres?target_session_attrs=read-write",
            hosts.join(",")
        );
    }
    println!("\nCtrl-C or Enter stops and removes them.");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let mut line = String::new();
        let enter = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = enter => {}
        }
    });
    // Replicas first, then the primary they stream from (on drop).
    drop(servers);
    drop(primary);
    println!("stopped and removed");
    // The blocked stdin read would hold the runtime's shutdown.
    runtime.shutdown_background();
    Ok(())
}
