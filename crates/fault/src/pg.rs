//! A throwaway PostgreSQL cluster: `initdb` into a temp directory, started
//! on a free port as the `postgres` user, stopped and started at will,
//! removed on drop. Tests stop real servers without touching the shared
//! one.

use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// A PostgreSQL server of the test's own (see the module docs).
#[derive(Debug)]
pub struct ThrowawayPostgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl ThrowawayPostgres {
    /// Creates a cluster (trust authentication, user `postgres`) and starts
    /// it on a free port of 127.0.0.1. Blocks for the second or two that
    /// takes.
    ///
    /// # Errors
    /// No PostgreSQL binaries under `/usr/lib/postgresql/*/bin` (or on
    /// `PATH`), or `initdb` / `pg_ctl` failing (their output is in the
    /// error).
    pub fn start() -> io::Result<Self> {
        Self::start_with_hba(None)
    }

    /// As [`start`](Self::start), but over TCP only `postgres` is trusted:
    /// every other role signs in with its SCRAM password, so tests can
    /// create roles and try wrong passwords.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_with_passwords() -> io::Result<Self> {
        Self::start_with_hba(Some(
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host replication postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        ))
    }

    fn start_with_hba(hba: Option<&str>) -> io::Result<Self> {
        let pg = Self::empty()?;
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )?;
        pg.configure()?;
        if let Some(hba) = hba {
            std::fs::write(Path::new(&pg.data()).join("pg_hba.conf"), hba)?;
        }
        pg.start_again()?;
        Ok(pg)
    }

    /// A streaming replica of this server (`pg_basebackup -R`: a hot
    /// standby that replays its WAL), started on a free port of its own.
    /// Reads work on it at once; [`promote`](Self::promote) makes it a
    /// primary.
    ///
    /// # Errors
    /// As [`start`](Self::start), or `pg_basebackup` failing (this server
    /// stopped, say).
    pub fn start_replica(&self) -> io::Result<Self> {
        let replica = Self::empty()?;
        replica.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &replica.data(),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )?;
        replica.configure()?;
        replica.start_again()?;
        Ok(replica)
    }

    /// Promotes this replica to a primary that takes writes, and waits
    /// until it does.
    ///
    /// # Errors
    /// `pg_ctl promote` failing (the server is no replica, or is down).
    pub fn promote(&self) -> io::Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-w", "promote"])
            .map(drop)
    }

    /// Runs `sql` with `psql` on database `postgres` and returns what it
    /// printed (unaligned, tuples only: `SELECT 1` gives `"1"`).
    ///
    /// # Errors
    /// `psql` failing (the server down, the SQL wrong: its message is in
    /// the error).
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        let port = self.port.to_string();
        let out = self.run(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-XAtq",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
        )?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// A new directory of the test's own and a free port; no cluster yet.
    fn empty() -> io::Result<Self> {
        let bin = binaries()?;
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "keel-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        give_to_postgres(&dir)?;
        let port = free_port()?;
        Ok(Self { dir, bin, port })
    }

    /// This server's own settings, after whatever a base backup copied
    /// (the last setting of a name wins).
    fn configure(&self) -> io::Result<()> {
        use std::io::Write as _;
        let mut conf = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&self.data()).join("postgresql.auto.conf"))?;
        write!(
            conf,
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             fsync = off\nmax_connections = 50\nwal_keep_size = '64MB'\n",
            self.port,
            self.dir.display()
        )
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A URL for `database` (`postgres` exists from the start).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server the fast way (connections are closed, no
    /// checkpoint wait), and waits until it has.
    ///
    /// # Errors
    /// `pg_ctl` failing.
    pub fn stop(&self) -> io::Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
            .map(drop)
    }

    /// Kills the server as a crash would (`-m immediate`).
    ///
    /// # Errors
    /// `pg_ctl` failing.
    pub fn crash(&self) -> io::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .map(drop)
    }

    /// Starts the (stopped) server again on its port, and waits until it
    /// accepts connections.
    ///
    /// # Errors
    /// `pg_ctl` failing.
    pub fn start_again(&self) -> io::Result<()> {
        let log = self.dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log.display().to_string(),
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .map(drop)
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs a PostgreSQL program as the `postgres` user.
    fn run(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        let path = self.bin.join(program);
        let output = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .output()?
        } else {
            Command::new(&path).args(args).output()?
        };
        if output.status.success() {
            Ok(output)
        } else {
            Err(io::Error::other(format!(
                "{program} {}: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )))
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/N/bin`, else the directory of `initdb`
/// on `PATH`.
fn binaries() -> io::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|dir| dir.join("initdb").exists())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no PostgreSQL binaries (initdb) found",
            )
        })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Lets the `postgres` user own `dir` (when we are root).
fn give_to_postgres(dir: &Path) -> io::Result<()> {
    if !is_root() {
        return Ok(());
    }
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "chown postgres {}: {status}",
            dir.display()
        )))
    }
}

/// A port on 127.0.0.1 that nothing listens on now (the OS's pick for a
/// listener bound to port 0, released), for a server the test starts.
///
/// # Errors
/// When the OS cannot bind a socket.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
