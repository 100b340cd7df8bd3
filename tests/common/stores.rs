//! Real store servers for the governance tests, each started by the test that uses it on a free
//! loopback port in a directory of its own, and stopped (by its PID's `pg_ctl stop`) when
//! dropped. PostgreSQL refuses to run as root: as root the server runs as the `postgres` user
//! through `runuser`, on directories that user owns.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL tool (as `postgres` when we are root).
fn pg_command(bin: &Path, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin).args(args);
        c
    } else {
        let mut c = Command::new(bin);
        c.args(args);
        c
    }
}

/// The directory of PostgreSQL's server programs (Debian's layout), if installed.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown {}", path.display());
    }
}

/// An initialised cluster, made once (initdb takes seconds) in the system's temp directory and
/// copied for each server. Not under the target directory: the `postgres` user must reach it,
/// and a checkout under a private home directory is out of its reach. Made under a name of
/// this process's own and renamed into place, so test processes running at once never see a
/// half-made one.
fn template() -> &'static PathBuf {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let bin = pg_bin_dir().expect("PostgreSQL is not installed (apt-get install postgresql)");
        let tmp = std::env::temp_dir();
        let version = bin
            .parent()
            .and_then(|p| p.file_name())
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ready = tmp.join(format!("ferrogate-test-pg-template-{version}"));
        if ready.join("data/PG_VERSION").exists() {
            return ready.join("data");
        }
        let mine = tmp.join(format!(
            "ferrogate-test-pg-template-{version}.{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&mine);
        std::fs::create_dir_all(&mine).expect("template dir");
        chown_postgres(&mine);
        let out = pg_command(
            &bin.join("initdb"),
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ],
        )
        .arg(mine.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if std::fs::rename(&mine, &ready).is_err() {
            // Another process got there first: use its template.
            let _ = std::fs::remove_dir_all(&mine);
        }
        ready.join("data")
    })
}

/// A PostgreSQL server of this test's own.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    opts: String,
    pub port: u16,
}

impl Postgres {
    pub fn start() -> Postgres {
        let template = template();
        let bin = pg_bin_dir().expect("PostgreSQL is not installed");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let ok = Command::new("cp")
            .arg("-a")
            .arg(template)
            .arg(&data)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "copy the template cluster");
        chown_postgres(dir.path());
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            dir.path().display()
        );
        let pg = Postgres {
            dir,
            bin,
            opts,
            port,
        };
        pg.resume();
        pg
    }

    /// Starts the server (again, after [`Postgres::pause`]) on the same port and data.
    pub fn resume(&self) {
        let log = self.dir.path().join("log");
        let out = pg_command(
            &self.bin.join("pg_ctl"),
            &["-w", "-t", "30", "-o", &self.opts, "-l"],
        )
        .arg(&log)
        .arg("-D")
        .arg(self.dir.path().join("data"))
        .arg("start")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (its clients' connections break), keeping its data.
    pub fn pause(&self) {
        // `fast`: clients are cut off but what they committed is kept (the servers run with
        // `synchronous_commit=off`, which an immediate stop would lose).
        let ok = pg_command(&self.bin.join("pg_ctl"), &["-w", "-m", "fast", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pg_ctl stop");
    }

    /// The server's `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = pg_command(&self.bin.join("pg_ctl"), &["-m", "immediate", "-D"])
            .arg(&data)
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Redis server of this test's own (no persistence), stopped by its PID when dropped.
pub struct Redis {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Redis {
    pub fn start() -> Redis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed (apt-get install redis-server)");
        let redis = Redis {
            child,
            _dir: dir,
            port,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if redis.ping() {
                return redis;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not answer on port {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// `INFO commandstats`: calls per command (lower-case names).
    pub fn command_calls(&self) -> std::collections::HashMap<String, u64> {
        let client = redis::Client::open(self.url()).expect("redis url");
        let mut conn = client.get_connection().expect("connect to redis");
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut conn)
            .expect("INFO");
        info.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("cmdstat_")?;
                let (name, stats) = rest.split_once(':')?;
                let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
                Some((name.to_string(), calls.parse().ok()?))
            })
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
