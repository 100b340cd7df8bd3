//! Child processes the orchestrators start: spawn (optionally pinned to a CPU
//! and/or wrapped, e.g. by valgrind), wait for the readiness line, log
//! stdout/stderr to files, and stop them by PID when dropped.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::signals;

/// How to start one child.
#[derive(Clone, Debug)]
pub struct SpawnSpec {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Prefix command, e.g. `valgrind --tool=callgrind ...`.
    pub wrapper: Vec<String>,
    /// Pin to this CPU (sched_setaffinity before exec).
    pub cpu: Option<usize>,
    /// Address to use when the readiness line has none we can parse.
    pub expected_addr: Option<SocketAddr>,
    pub ready_timeout: Duration,
    /// Also require `GET /health` → 200 after the readiness line.
    pub health_check: bool,
    /// Extra environment variables (`KEY=VALUE`).
    pub env: Vec<(String, String)>,
}

/// A running child; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Spawned {
    pub name: String,
    pub pid: u32,
    pub addr: SocketAddr,
    pub command: String,
    pub stderr_log: PathBuf,
    child: Child,
}

impl SpawnSpec {
    pub fn command_line(&self) -> String {
        let mut parts: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.extend(self.wrapper.iter().cloned());
        parts.push(self.program.display().to_string());
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }
}

/// Parses the address out of a `... listening on http://ADDR` line.
pub fn parse_ready_line(line: &str) -> Option<Option<SocketAddr>> {
    let idx = line.find("listening on http://")?;
    let rest = &line[idx + "listening on http://".len()..];
    let addr = rest
        .split(|c: char| c.is_whitespace() || c == '/')
        .next()
        .unwrap_or_default();
    Some(addr.parse().ok())
}

pub fn spawn(spec: &SpawnSpec, log_dir: &Path) -> anyhow::Result<Spawned> {
    let (program, args): (&Path, Vec<&str>) = match spec.wrapper.split_first() {
        Some((first, rest)) => {
            let mut args: Vec<&str> = rest.iter().map(String::as_str).collect();
            args.push(spec.program.to_str().context("non-UTF-8 program path")?);
            args.extend(spec.args.iter().map(String::as_str));
            (Path::new(first), args)
        }
        None => (
            spec.program.as_path(),
            spec.args.iter().map(String::as_str).collect(),
        ),
    };
    let stderr_log = log_dir.join(format!("{}.stderr.log", spec.name));
    let stdout_log = log_dir.join(format!("{}.stdout.log", spec.name));
    let mut cmd = Command::new(program);
    cmd.args(&args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(File::create(&stderr_log)?)
        // Own process group: a terminal Ctrl-C reaches only us; we stop the children.
        .process_group(0);
    let cpu = spec.cpu;
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            // If the harness dies without cleaning up, the kernel kills the child.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if let Some(cpu) = cpu {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", spec.command_line()))?;
    let pid = child.id();
    let stdout = child.stdout.take().context("child stdout")?;

    // Reader thread: forwards the readiness address, then keeps draining stdout to a file.
    let (tx, rx) = mpsc::channel::<Option<SocketAddr>>();
    std::thread::spawn(move || {
        let mut log = File::create(stdout_log).ok();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let mut announced = false;
        while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if let Some(f) = log.as_mut() {
                let _ = f.write_all(line.as_bytes());
            }
            if !announced {
                if let Some(addr) = parse_ready_line(&line) {
                    announced = true;
                    let _ = tx.send(addr);
                }
            }
            line.clear();
        }
    });

    let mut spawned = Spawned {
        name: spec.name.clone(),
        pid,
        addr: spec
            .expected_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        command: spec.command_line(),
        stderr_log,
        child,
    };
    let deadline = Instant::now() + spec.ready_timeout;
    loop {
        signals::check()?;
        if let Some(status) = spawned.child.try_wait()? {
            anyhow::bail!(
                "{} exited ({status}) before becoming ready; stderr:\n{}",
                spec.name,
                spawned.stderr_tail(4000)
            );
        }
        if Instant::now() > deadline {
            anyhow::bail!(
                "{} not ready after {:?}; stderr:\n{}",
                spec.name,
                spec.ready_timeout,
                spawned.stderr_tail(4000)
            );
        }
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(addr) => {
                match addr.or(spec.expected_addr) {
                    Some(a) => spawned.addr = a,
                    None => anyhow::bail!("{}: cannot parse its listening address", spec.name),
                }
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // stdout closed without a readiness line; the exit check above reports it.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    if spec.health_check {
        loop {
            signals::check()?;
            if health_ok(spawned.addr) {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("{}: GET /health never returned 200", spec.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(spawned)
}

/// Blocking `GET /health`; true on a 200 status line.
pub fn health_ok(addr: SocketAddr) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf)?;
        Ok(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
    };
    attempt().unwrap_or(false)
}

impl Spawned {
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Last `max` bytes of the child's stderr log.
    pub fn stderr_tail(&self, max: u64) -> String {
        let read = || -> std::io::Result<String> {
            let mut f = File::open(&self.stderr_log)?;
            let len = f.metadata()?.len();
            f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
            let mut s = String::new();
            f.read_to_string(&mut s)?;
            Ok(s)
        };
        read().unwrap_or_default()
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Idempotent.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        // SAFETY: signalling our own child by its PID (not yet reaped, so the PID is still ours).
        unsafe {
            libc::kill(self.pid as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        self.child.wait().ok()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// A free TCP port on 127.0.0.1 (for subjects that cannot bind port 0 themselves).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_line() {
        assert_eq!(
            parse_ready_line("ferrogate listening on http://127.0.0.1:8080\n"),
            Some(Some(SocketAddr::from(([127, 0, 0, 1], 8080))))
        );
        assert_eq!(
            parse_ready_line("x listening on http://localhost:1/"),
            Some(None)
        );
        assert_eq!(parse_ready_line("starting"), None);
    }
}
