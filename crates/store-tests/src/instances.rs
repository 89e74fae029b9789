//! PostgreSQL servers of a test's own: initdb into a temporary directory, started on a free
//! port as the `postgres` user (initdb refuses root), stopped immediately when dropped. For
//! tests that need several servers or must stop one; the shared server is never touched.
//! Needs PostgreSQL 15's programs and `runuser` (the tests run as root).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Runs one PostgreSQL program as the `postgres` user; whether it succeeded.
fn try_as_postgres(program: &str, args: &[&str]) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(Path::new(PG_BIN).join(program))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("runuser runs")
        .success()
}

/// Runs one PostgreSQL program as the `postgres` user; panics unless it succeeds.
pub fn as_postgres(program: &str, args: &[&str]) {
    assert!(try_as_postgres(program, args), "{program} {args:?} failed");
}

/// A port nothing listens on right now, taken below the kernel's ephemeral range: a port the
/// kernel handed out could be taken by a client connection of a parallel test before the
/// server binds it.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    const FLOOR: u16 = 20_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = u64::from(ephemeral.saturating_sub(FLOOR));
    let mut random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    for _ in 0..span.min(1_000) {
        let port = FLOOR + (random % span) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        random = random
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
    }
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

    /// Starts the server and waits until it accepts connections. A port taken meanwhile by
    /// another process is replaced by a new one; any other failure panics with the server's log.
    pub fn start(&mut self) {
        for _ in 0..5 {
            match self.try_start() {
                Ok(()) => return,
                Err(log) if log.contains("could not bind") || log.contains("already in use") => {
                    self.port = free_port();
                }
                Err(log) => panic!("PostgreSQL in {:?} did not start:\n{log}", self.data),
            }
        }
        panic!("PostgreSQL in {:?} found no free port", self.data);
    }

    /// Starts the server again on the same port (clients keep their URL); panics with the
    /// server's log if it does not start.
    pub fn restart(&self) {
        if let Err(log) = self.try_start() {
            panic!("PostgreSQL in {:?} did not restart:\n{log}", self.data);
        }
    }

    /// `pg_ctl start -w`; on failure, the server's log.
    fn try_start(&self) -> Result<(), String> {
        let data = self.data.to_string_lossy().to_string();
        let log_path = self.data.join("server.log");
        let log = log_path.to_string_lossy().to_string();
        let options = format!("-p {} -k {data} -c listen_addresses=127.0.0.1", self.port);
        let _ = std::fs::remove_file(&log_path);
        if try_as_postgres(
            "pg_ctl",
            &["-D", &data, "-o", &options, "-l", &log, "-w", "start"],
        ) {
            return Ok(());
        }
        Err(std::fs::read_to_string(&log_path).unwrap_or_default())
    }

    /// Stops the server (fast shutdown) and waits until it is down.
    pub fn stop(&self) {
        let data = self.data.to_string_lossy().to_string();
        as_postgres("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]);
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

/// PgBouncer of the test's own in transaction pooling mode, in front of a PostgreSQL server:
/// every database name is passed through, and at most `server_connections` server connections
/// per database serve any number of clients, so consecutive transactions of one client run on
/// whichever server connection is free. Needs `pgbouncer` (Debian's package; `scripts/test.sh`
/// installs it). Killed when dropped.
pub struct Pooler {
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: std::process::Child,
    _dir: TempDir,
}

/// Where Debian installs PgBouncer.
const PGBOUNCER: &str = "/usr/sbin/pgbouncer";

impl Pooler {
    /// Starts PgBouncer for the server at `127.0.0.1:server_port` and waits until it accepts
    /// connections; panics with its log if it does not. `ignored` is its
    /// `ignore_startup_parameters`: PgBouncer refuses a client sending any other parameter it
    /// does not track itself.
    pub fn start(server_port: u16, server_connections: usize, ignored: &str) -> Pooler {
        assert!(
            Path::new(PGBOUNCER).exists(),
            "{PGBOUNCER} is missing: install Debian's pgbouncer (scripts/test.sh does)"
        );
        let dir = data_root();
        let port = free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("auth file");
        let config = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &config,
            format!(
                "[databases]\n* = host=127.0.0.1 port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
                 default_pool_size = {server_connections}\nmax_client_conn = 500\n\
                 admin_users = postgres\nignore_startup_parameters = {ignored}\nserver_reset_query =\nserver_check_delay = 0\n",
                users = users.display(),
            ),
        )
        .expect("pgbouncer.ini");
        let log = dir.path().join("pgbouncer.log");
        let child = Command::new(PGBOUNCER)
            .args(["-u", "postgres"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("pgbouncer runs");
        let mut pooler = Pooler {
            port,
            child,
            _dir: dir,
        };
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = pooler.child.try_wait().expect("pgbouncer status");
            if exited.is_some() || started.elapsed() > std::time::Duration::from_secs(10) {
                panic!(
                    "PgBouncer did not start ({exited:?}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        pooler
    }

    /// `url` (a `postgres://` URL of the server behind it) pointed at the pooler instead.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Pooler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
