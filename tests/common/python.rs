//! A Python interpreter with pinned packages, for tests that check the gateway against an
//! independent implementation (botocore's SigV4, the official OpenAI/Anthropic/Google SDKs).
//!
//! `FERROGATE_TEST_PYTHON` names an interpreter to use as is (any versions of the packages);
//! otherwise a virtualenv at `<target dir>/test-venv` is created on first use and the pinned
//! versions below are installed into it. Test binaries run concurrently, so creation and
//! installation happen under a lock file; everything is bounded in time and fails with a message
//! saying what to do.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime};

/// Pinned versions, so a new SDK release cannot change what a test checks.
pub const PINS: &[(&str, &str)] = &[
    ("botocore", "1.44.5"),
    ("openai", "3.51.0"),
    ("anthropic", "2.10.0"),
    ("google-genai", "3.3.0"),
];

const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
/// A lock older than this was left by a killed test run.
const STALE_LOCK: Duration = Duration::from_secs(600);

/// The interpreter to run, with every package of `packages` (distribution names from `PINS`)
/// importable. Panics with a clear message when Python cannot be set up.
pub fn python_with(packages: &[&str]) -> PathBuf {
    let pins: Vec<(&str, &str)> = packages
        .iter()
        .map(|p| {
            let pin = PINS.iter().find(|(name, _)| name == p).unwrap_or_else(|| {
                panic!("python_with: no pinned version for `{p}`; add it to PINS in tests/common/python.rs")
            });
            (pin.0, pin.1)
        })
        .collect();

    if let Ok(py) = std::env::var("FERROGATE_TEST_PYTHON") {
        let py = PathBuf::from(py);
        let missing = missing(&py, &pins, false);
        assert!(
            missing.is_empty(),
            "FERROGATE_TEST_PYTHON={} lacks {:?}; install them there or unset the variable",
            py.display(),
            missing
        );
        return py;
    }

    let venv = target_dir().join("test-venv");
    let py = venv.join("bin").join("python");
    if py.exists() && missing(&py, &pins, true).is_empty() {
        return py;
    }
    let _lock = Lock::acquire(&target_dir().join("test-venv.lock"));
    // Another test binary may have finished the job while we waited.
    if !py.exists() {
        let base = std::env::var("PYTHON3").unwrap_or_else(|_| "python3".to_owned());
        run(
            Command::new(&base).args(["-m", "venv"]).arg(&venv),
            Duration::from_secs(120),
            &format!(
                "creating the test virtualenv at {} with `{base} -m venv`",
                venv.display()
            ),
        );
    }
    let todo = missing(&py, &pins, true);
    if !todo.is_empty() {
        let specs: Vec<String> = todo.iter().map(|(n, v)| format!("{n}=={v}")).collect();
        run(
            Command::new(&py)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(&specs),
            INSTALL_TIMEOUT,
            &format!("installing {specs:?} into {}", venv.display()),
        );
        let still = missing(&py, &pins, true);
        assert!(
            still.is_empty(),
            "after pip install, still missing {still:?}"
        );
    }
    py
}

/// Runs `py` with `script` on `-c`, `stdin` fed in, within `timeout`; returns stdout. Panics
/// with stderr on failure.
pub fn run_script(py: &Path, script: &str, stdin: &[u8], timeout: Duration) -> String {
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", py.display()));
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin).expect("writing the script's stdin");
    }
    let out = wait(child, timeout, "python script");
    assert!(
        out.status.success(),
        "python script failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("script output is UTF-8")
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else the one this test binary was
/// built into (`<target>/<profile>/deps/<binary>`), else `./target`.
fn target_dir() -> PathBuf {
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

/// The pins not satisfied by `py` (exact version when `exact`, else merely installed).
fn missing<'a>(py: &Path, pins: &[(&'a str, &'a str)], exact: bool) -> Vec<(&'a str, &'a str)> {
    if !py.exists() && py.components().count() > 1 {
        return pins.to_vec();
    }
    let script = "import sys, importlib.metadata as m\n\
                  for n in sys.argv[1:]:\n\
                  \x20   try: print(n, m.version(n))\n\
                  \x20   except m.PackageNotFoundError: print(n, '-')\n";
    let child = Command::new(py)
        .args(["-c", script])
        .args(pins.iter().map(|(n, _)| *n))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(child) = child else {
        return pins.to_vec();
    };
    let out = wait(
        child,
        Duration::from_secs(60),
        "checking installed packages",
    );
    if !out.status.success() {
        return pins.to_vec();
    }
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    pins.iter()
        .filter(|(name, version)| {
            let found = listed
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or("-");
            found == "-" || (exact && found != *version)
        })
        .copied()
        .collect()
}

fn run(cmd: &mut Command, timeout: Duration, what: &str) {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e} (is Python 3 installed?)"));
    let out = wait(child, timeout, what);
    assert!(
        out.status.success(),
        "{what} failed ({}); set FERROGATE_TEST_PYTHON to a Python with the packages to skip \
         this step.\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `child` at most `timeout`, killing it after. Output pipes are drained on threads so
/// a chatty child cannot block on a full pipe.
fn wait(mut child: Child, timeout: Duration, what: &str) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what}: timed out after {timeout:?}");
            }
            Err(e) => panic!("{what}: waiting failed: {e}"),
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// An exclusive lock held while the file exists (`create_new` is atomic across processes).
struct Lock(PathBuf);

impl Lock {
    fn acquire(path: &Path) -> Lock {
        if let Some(dir) = path.parent() {
            let _ = fs::create_dir_all(dir);
        }
        let deadline = Instant::now() + INSTALL_TIMEOUT + Duration::from_secs(60);
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
                        "waited too long for {} (another test is setting up Python; delete the \
                         file if no test is running)",
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
