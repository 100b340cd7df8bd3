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
    /// Set once reaped; after that the PID is no longer ours to signal.
    status: Option<std::process::ExitStatus>,
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

/// Starts the child; returns it with the channel that receives the address
/// from its readiness line.
fn start(
    spec: &SpawnSpec,
    log_dir: &Path,
) -> anyhow::Result<(Spawned, mpsc::Receiver<Option<SocketAddr>>)> {
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
        // Own process group (PGID = PID): a terminal Ctrl-C reaches only us,
        // and `stop` can signal the child together with the workers it forks.
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

    let spawned = Spawned {
        name: spec.name.clone(),
        pid,
        addr: spec
            .expected_addr
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        command: spec.command_line(),
        stderr_log,
        child,
        status: None,
    };
    Ok((spawned, rx))
}

/// Fails when the child has exited (its stderr tail in the error) or `deadline` passed.
fn check_starting(
    spawned: &mut Spawned,
    deadline: Instant,
    spec: &SpawnSpec,
) -> anyhow::Result<()> {
    signals::check()?;
    if !spawned.is_running() {
        let status = spawned.stop(Duration::ZERO);
        anyhow::bail!(
            "{} exited ({}) before becoming ready; stderr:\n{}",
            spec.name,
            status.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
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
    Ok(())
}

/// Starts a child that prints `NAME listening on http://ADDR` when ready
/// (and, with `health_check`, then answers `GET /health` with 200).
pub fn spawn(spec: &SpawnSpec, log_dir: &Path) -> anyhow::Result<Spawned> {
    let (mut spawned, rx) = start(spec, log_dir)?;
    let deadline = Instant::now() + spec.ready_timeout;
    loop {
        check_starting(&mut spawned, deadline, spec)?;
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

/// Starts a child that announces nothing we can parse (LiteLLM, Portkey): it
/// is ready once `GET path` on `spec.expected_addr` answers 200.
pub fn spawn_http_ready(spec: &SpawnSpec, log_dir: &Path, path: &str) -> anyhow::Result<Spawned> {
    let addr = spec
        .expected_addr
        .with_context(|| format!("{}: no address to poll", spec.name))?;
    let (mut spawned, _rx) = start(spec, log_dir)?;
    let deadline = Instant::now() + spec.ready_timeout;
    loop {
        check_starting(&mut spawned, deadline, spec)?;
        if http_get_ok(addr, path) {
            return Ok(spawned);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Blocking `GET /health`; true on a 200 status line.
pub fn health_ok(addr: SocketAddr) -> bool {
    http_get_ok(addr, "/health")
}

/// Blocking `GET path` with short timeouts; true on a 200 status line.
pub fn http_get_ok(addr: SocketAddr, path: &str) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut buf = [0u8; 32];
        let n = s.read(&mut buf)?;
        Ok(buf[..n].starts_with(b"HTTP/1.1 200") || buf[..n].starts_with(b"HTTP/1.0 200"))
    };
    attempt().unwrap_or(false)
}

/// True when `pid` (our child) has exited but is not reaped yet. Not reaping
/// keeps the PID, and so the process group ID, from being reused while we
/// may still signal the group.
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid with WNOWAIT only reads our child's state.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rc = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        rc == 0 && info.si_pid() != 0
    }
}

/// Signals the process group our child leads (PGID = its PID).
fn signal_group(pid: u32, sig: libc::c_int) {
    // SAFETY: the group is our child's own (process_group(0) at spawn), and the
    // child is not reaped yet, so the ID cannot belong to anyone else.
    unsafe {
        libc::kill(-(pid as libc::pid_t), sig);
    }
}

impl Spawned {
    pub fn is_running(&mut self) -> bool {
        self.status.is_none() && !exited_unreaped(self.pid)
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

    /// SIGTERM to the child's process group, up to `grace` for the child to
    /// exit, then SIGKILL to the group (which also ends workers the child
    /// forked and left behind), then reap. Idempotent.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        if self.status.is_some() {
            return self.status;
        }
        if !exited_unreaped(self.pid) {
            signal_group(self.pid, libc::SIGTERM);
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline && !exited_unreaped(self.pid) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        signal_group(self.pid, libc::SIGKILL);
        self.status = self.child.wait().ok();
        self.status
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Runs a one-off command (an installer) in its own process group with
/// stdout and stderr appended to `log`; kills the group after `limit`.
pub fn run_bounded(cmd: &mut Command, log: &Path, limit: Duration) -> anyhow::Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {shown}"))?;
    let pid = child.id();
    let deadline = Instant::now() + limit;
    while !exited_unreaped(pid) {
        if signals::interrupted() || Instant::now() > deadline {
            signal_group(pid, libc::SIGKILL);
            let _ = child.wait();
            signals::check()?;
            anyhow::bail!(
                "{shown} did not finish within {limit:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Helpers it left behind in its group go with it.
    signal_group(pid, libc::SIGKILL);
    let status = child.wait()?;
    if !status.success() {
        anyhow::bail!("{shown} failed ({status}); see {}", log.display());
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (for subjects that cannot bind port 0 themselves).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The bare hyper proxy (`loadtest bare-proxy`) in front of `upstream`, as `run` and `peers`
/// start it: the floor every gateway is compared with.
pub fn bare_proxy_spec(program: PathBuf, upstream: SocketAddr, cpu: Option<usize>) -> SpawnSpec {
    SpawnSpec {
        name: "bare".into(),
        program,
        args: vec![
            "bare-proxy".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--upstream".into(),
            format!("http://{upstream}"),
        ],
        wrapper: Vec::new(),
        cpu,
        expected_addr: None,
        ready_timeout: Duration::from_secs(10),
        health_check: false,
        env: Vec::new(),
    }
}

/// The mock upstream, as every subcommand starts it.
pub fn mock_spec(program: PathBuf, chunks: usize, cpu: Option<usize>) -> SpawnSpec {
    named_mock_spec(program, "mock", chunks, cpu, &[])
}

/// A mock with its own name and extra flags (`--fail-ratio`, `--latency-us`).
pub fn named_mock_spec(
    program: PathBuf,
    name: &str,
    chunks: usize,
    cpu: Option<usize>,
    extra: &[String],
) -> SpawnSpec {
    let mut args: Vec<String> = vec![
        "mock".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--chunks".into(),
        chunks.to_string(),
    ];
    args.extend(extra.iter().cloned());
    SpawnSpec {
        name: name.into(),
        program,
        args,
        wrapper: Vec::new(),
        cpu,
        expected_addr: None,
        ready_timeout: Duration::from_secs(10),
        health_check: false,
        env: Vec::new(),
    }
}

/// `--pin`: the subject on CPU 0, this process (generator) and the mock on CPU 1. Returns
/// (pinned, subject CPU, mock CPU); falls back to unpinned on a 1-CPU machine.
pub fn pinning(
    requested: bool,
    machine: &crate::sysinfo::Machine,
) -> anyhow::Result<(bool, Option<usize>, Option<usize>)> {
    let pin = requested && machine.nproc >= 2;
    if requested && !pin {
        eprintln!("warning: --pin needs at least 2 CPUs; running unpinned");
    }
    if !pin {
        return Ok((false, None, None));
    }
    crate::util::pin_current_thread(1)?;
    Ok((true, Some(0), Some(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_ends_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let spec = SpawnSpec {
            name: "sh".into(),
            program: "sh".into(),
            args: vec![
                "-c".into(),
                // A forked worker that would outlive its parent.
                "sleep 30 & echo 'sh listening on http://127.0.0.1:9'; wait".into(),
            ],
            wrapper: Vec::new(),
            cpu: None,
            expected_addr: None,
            ready_timeout: Duration::from_secs(10),
            health_check: false,
            env: Vec::new(),
        };
        let mut child = spawn(&spec, dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let tree = crate::proctree::list(child.pid);
        assert!(tree.len() >= 2, "{tree:?}");
        assert!(child.is_running());
        child.stop(Duration::from_secs(2));
        assert!(!child.is_running());
        std::thread::sleep(Duration::from_millis(100));
        for pid in &tree[1..] {
            // Gone, or a zombie waiting for init to reap it.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next());
            assert!(
                matches!(state, None | Some("Z")),
                "worker {pid} still alive: {stat}"
            );
        }
    }

    #[test]
    fn bounded_command_is_killed_at_its_limit() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let log = dir.path().join("log");
        let t0 = Instant::now();
        let res = run_bounded(
            Command::new("sh").args(["-c", "sleep 30"]),
            &log,
            Duration::from_millis(300),
        );
        assert!(res.is_err());
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(run_bounded(Command::new("true").arg(""), &log, Duration::from_secs(5)).is_ok());
        assert!(run_bounded(&mut Command::new("false"), &log, Duration::from_secs(5)).is_err());
    }

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
