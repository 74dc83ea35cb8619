//! A throwaway PostgreSQL cluster for tests that need their own server
//! (a different auth setup, a server to stop): `initdb` into a temp dir,
//! on a free port, run as the `postgres` user; stopped and removed on drop.
//! The shared server at 5432 is never touched.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A running throwaway cluster. Its superuser `postgres` connects without
/// a password over TCP; every other role must use SCRAM.
pub(crate) struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub(crate) port: u16,
}

fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a PostgreSQL tool as the `postgres` user (the server refuses root).
fn run_as_postgres(bin: &Path, tool: &str, args: &[&str]) -> Result<(), String> {
    let tool = bin.join(tool);
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let mut cmd = if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&tool);
        c
    } else {
        Command::new(&tool)
    };
    let out = cmd.args(args).output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {args:?} failed: {}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Cluster {
    /// Creates and starts a cluster.
    pub(crate) fn start() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let bin = bin_dir();
        let dir = std::env::temp_dir().join(format!(
            "keel-pg-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the cluster dir");
        let status = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown the cluster dir");
        assert!(status.success(), "chown postgres {}", dir.display());
        let data = dir.join("data");
        let data_str = data.to_str().expect("a UTF-8 temp dir");
        run_as_postgres(
            &bin,
            "initdb",
            &[
                "-D",
                data_str,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        )
        .expect("initdb");
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             password_encryption = 'scram-sha-256'\nfsync = off\nmax_connections = 20\n",
            dir.display()
        );
        append(&data.join("postgresql.conf"), &conf);
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             host all postgres 127.0.0.1/32 trust\n\
             host all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("write pg_hba.conf");
        let log = dir.join("server.log");
        run_as_postgres(
            &bin,
            "pg_ctl",
            &[
                "-D",
                data_str,
                "-l",
                log.to_str().expect("a UTF-8 temp dir"),
                "-w",
                "start",
            ],
        )
        .expect("pg_ctl start");
        Self { dir, bin, port }
    }

    /// The URL of `database` as `user` (with `password`, if any).
    pub(crate) fn url(&self, user: &str, password: Option<&str>) -> String {
        let auth = match password {
            Some(p) => format!("{user}:{p}"),
            None => user.to_owned(),
        };
        format!("postgres://{auth}@127.0.0.1:{}/postgres", self.port)
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open postgresql.conf");
    file.write_all(text.as_bytes())
        .expect("append to postgresql.conf");
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        if let Some(data) = data.to_str() {
            // Best effort: a drop must not panic.
            let _ = run_as_postgres(
                &self.bin,
                "pg_ctl",
                &["-D", data, "-m", "immediate", "stop"],
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
