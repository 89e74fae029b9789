//! PostgreSQL servers of a test's own: initdb into a temporary directory, started on a free
//! port as the `postgres` user (initdb refuses root), stopped immediately when dropped. For
//! tests that need several servers or must stop one; the shared server is never touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Runs one PostgreSQL program as the `postgres` user; panics unless it succeeds.
pub fn as_postgres(program: &str, args: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("runuser runs");
    assert!(status.success(), "{program} {args:?} failed");
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A temporary directory the `postgres` user owns, for the data directories of a test.
pub fn data_root() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("chown")
        .args(["postgres:postgres"])
        .arg(dir.path())
        .status()
        .expect("chown");
    assert!(status.success());
    dir
}

/// One PostgreSQL server of the test's own, stopped (immediately) when dropped.
pub struct Instance {
    /// Its data directory.
    pub data: PathBuf,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Instance {
    /// A new cluster in `root/name` (initdb, trust authentication, user `postgres`) with
    /// `settings` appended to its configuration; not started.
    pub fn init(root: &Path, name: &str, settings: &str) -> Instance {
        let instance = Instance {
            data: root.join(name),
            port: free_port(),
        };
        let data = instance.data.to_string_lossy().to_string();
        as_postgres(
            "initdb",
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        std::fs::write(instance.data.join("postgresql.auto.conf"), settings)
            .expect("server settings");
        instance
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let data = self.data.to_string_lossy().to_string();
        let options = format!("-p {} -k {data} -c listen_addresses=127.0.0.1", self.port);
        let log = self.data.join("server.log").to_string_lossy().to_string();
        as_postgres(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        );
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id, from its pid file.
    pub fn pid(&self) -> String {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).expect("pid file");
        text.lines().next().expect("pid line").trim().to_string()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(Path::new(PG_BIN).join("pg_ctl"))
            .args([
                "-D",
                &self.data.to_string_lossy(),
                "-m",
                "immediate",
                "stop",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
