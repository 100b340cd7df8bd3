//! Child processes for tests that set up or drive outside tools (a Python virtualenv, npm,
//! Claude Code): the cargo target directory they install into, a lock file so concurrently
//! running test binaries install once, and a bounded run that leaves no process behind.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

/// A lock older than this was left by a killed test run (installs are bounded well below it).
const STALE_LOCK: Duration = Duration::from_secs(600);
/// Longest wait for another test binary's install to finish.
const LOCK_WAIT: Duration = Duration::from_secs(420);

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else the one this test binary was
/// built into (`<target>/<profile>/deps/<binary>`), else `./target`.
pub fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// An exclusive lock held while the file exists (`create_new` is atomic across processes);
/// released on drop.
pub struct Lock(PathBuf);

impl Lock {
    /// Waits for the lock at `path`; `what` names the work it guards, for the message when the
    /// wait is too long.
    pub fn acquire(path: &Path, what: &str) -> Lock {
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match File::create_new(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return Lock(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .is_some_and(|age| age > STALE_LOCK);
                    if stale {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "waited too long for {} (another test is {what}; delete the file if no \
                         test is running)",
                        path.display()
                    );
                    sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("creating lock {}: {e}", path.display()),
            }
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// What a bounded run left: the exit status (`None` when it was killed for running past its
/// time), stdout, stderr.
pub type Ran = (Option<ExitStatus>, String, String);

/// Runs `cmd` in its own process group with stdin closed and output piped, at most `timeout`;
/// on timeout the whole group is killed (a tool may have children of its own). `Err` only when
/// the command cannot be started, so each caller can say what is missing.
pub fn run_bounded(cmd: Command, timeout: Duration, what: &str) -> std::io::Result<Ran> {
    run_bounded_with_input(cmd, &[], timeout, what)
}

/// [`run_bounded`] with `input` written to the command's stdin (then closed).
pub fn run_bounded_with_input(
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
    what: &str,
) -> std::io::Result<Ran> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let (out, err) = (drain(&mut child, true), drain(&mut child, false));
    if let Some(mut pipe) = child.stdin.take() {
        // On a thread: a large input must not block while the child fills its output pipes.
        // A child that exits without reading it closes the pipe, which is not an error here.
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            Ok(None) => {
                kill_group(&mut child);
                break None;
            }
            Err(e) => {
                kill_group(&mut child);
                panic!("{what}: waiting failed: {e}");
            }
        }
    };
    Ok((
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    ))
}

/// Both output streams, labelled, for failure messages.
pub fn output_text(stdout: &str, stderr: &str) -> String {
    format!("--- stdout\n{stdout}\n--- stderr\n{stderr}")
}

/// Kills `child`'s process group (the child leads it, see `process_group(0)`) and reaps it.
fn kill_group(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let _ = child.kill();
    let _ = child.wait();
}

/// Reads one output pipe to its end on a thread, so a chatty child cannot block on a full pipe.
fn drain(child: &mut Child, stdout: bool) -> std::thread::JoinHandle<String> {
    let pipe: Option<Box<dyn Read + Send>> = if stdout {
        child.stdout.take().map(|p| Box::new(p) as _)
    } else {
        child.stderr.take().map(|p| Box::new(p) as _)
    };
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A hung tool must not outlive the test: on timeout its whole process group is killed.
    #[test]
    fn timeout_kills_the_whole_process_group() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 30 & echo $!; wait"]);
        let started = Instant::now();
        let (status, stdout, stderr) =
            run_bounded(cmd, Duration::from_millis(500), "sh").expect("start sh");
        let out = output_text(&stdout, &stderr);
        assert_eq!(status, None, "{out}");
        assert!(started.elapsed() < Duration::from_secs(10), "{out}");
        let child_pid = stdout
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no background pid printed: {out}"));
        // Alive unless gone or a zombie (an orphan waits for init to reap it).
        let alive = || {
            fs::read_to_string(format!("/proc/{child_pid}/stat")).is_ok_and(|stat| {
                let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
                state != Some(Some('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            sleep(Duration::from_millis(50));
        }
        assert!(
            !alive(),
            "background child {child_pid} survived the timeout"
        );
    }
}
