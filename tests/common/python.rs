//! A Python interpreter with pinned packages, for tests that check the gateway against an
//! independent implementation (botocore's SigV4, the official OpenAI/Anthropic/Google SDKs).
//!
//! `FERROGATE_TEST_PYTHON` names an interpreter to use as is (any versions of the packages);
//! otherwise a virtualenv at `<target dir>/test-venv` is created on first use and the versions
//! pinned in tests/python/requirements.txt are installed into it. Test binaries run
//! concurrently, so creation and installation happen under a lock file; everything is bounded in
//! time and fails with a message saying what to do.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{output_text, run_bounded, run_bounded_with_input, target_dir, Lock};

/// The pins, so a new SDK release cannot change what a test checks (also what people install
/// by hand to run the scripts in tests/python/).
const REQUIREMENTS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/python/requirements.txt"
));

const VENV_TIMEOUT: Duration = Duration::from_secs(120);
const INSTALL_TIMEOUT: Duration = Duration::from_secs(300);
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// What to do when no usable Python can be set up.
const HOW_TO_FIX: &str = "the tests need Python 3 with venv (Debian: apt-get install python3 \
                          python3-venv), or FERROGATE_TEST_PYTHON=/path/to/python with the \
                          packages of tests/python/requirements.txt installed";

/// `(distribution, version)` for every `name==version` line of requirements.txt.
pub fn pins() -> Vec<(&'static str, &'static str)> {
    REQUIREMENTS
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (name, version) = l.split_once("==").unwrap_or_else(|| {
                panic!("tests/python/requirements.txt: `{l}` is not pinned with ==")
            });
            (name.trim(), version.trim())
        })
        .collect()
}

/// The interpreter to run, with every package of `packages` (distribution names pinned in
/// tests/python/requirements.txt) importable. Panics with a clear message when Python cannot be
/// set up.
pub fn python_with(packages: &[&str]) -> PathBuf {
    let all = pins();
    let pins: Vec<(&str, &str)> = packages
        .iter()
        .map(|p| {
            *all.iter().find(|(name, _)| name == p).unwrap_or_else(|| {
                panic!("python_with: no pinned version for `{p}`; add it to tests/python/requirements.txt")
            })
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
    if has_pip(&py) && missing(&py, &pins, true).is_empty() {
        return py;
    }
    let _lock = Lock::acquire(
        &target_dir().join("test-venv.lock"),
        "setting up the Python test virtualenv",
    );
    // Another test binary may have finished the job while we waited. A venv without pip (left
    // by a `python3 -m venv` that failed half-way, e.g. without Debian's python3-venv) is as
    // good as none: start again.
    if !has_pip(&py) {
        create_venv(&venv, &py);
    }
    let todo = missing(&py, &pins, true);
    if !todo.is_empty() {
        let specs: Vec<String> = todo.iter().map(|(n, v)| format!("{n}=={v}")).collect();
        let mut pip = Command::new(&py);
        pip.args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(&specs);
        let what = format!("installing {specs:?} into {}", venv.display());
        let (status, stdout, stderr) = run_bounded(pip, INSTALL_TIMEOUT, &what)
            .unwrap_or_else(|e| panic!("{what}: cannot start {}: {e}", py.display()));
        assert!(
            status.is_some_and(|s| s.success()),
            "{what} failed ({}); the tests need access to PyPI, or set FERROGATE_TEST_PYTHON \
             to a Python with the packages to skip this step.\n{}",
            describe(status),
            output_text(&stdout, &stderr)
        );
        let still = missing(&py, &pins, true);
        assert!(
            still.is_empty(),
            "after pip install, still missing {still:?}"
        );
    }
    py
}

/// Creates the virtualenv at `venv` (whose interpreter is `py`) from scratch; on any failure
/// removes what was made, so the next run starts clean, and panics saying what to install.
fn create_venv(venv: &Path, py: &Path) {
    let _ = fs::remove_dir_all(venv);
    let base = std::env::var("PYTHON3").unwrap_or_else(|_| "python3".to_owned());
    let what = format!(
        "creating the test virtualenv at {} with `{base} -m venv`",
        venv.display()
    );
    let mut cmd = Command::new(&base);
    cmd.args(["-m", "venv"]).arg(venv);
    let failure = match run_bounded(cmd, VENV_TIMEOUT, &what) {
        Err(e) if e.kind() == ErrorKind::NotFound => Some(format!("`{base}` not found")),
        Err(e) => Some(format!("cannot start `{base}`: {e}")),
        Ok((status, stdout, stderr)) if !status.is_some_and(|s| s.success()) => Some(format!(
            "failed ({})\n{}",
            describe(status),
            output_text(&stdout, &stderr)
        )),
        Ok(_) if !has_pip(py) => Some(format!("made no venv with pip ({})", py.display())),
        Ok(_) => None,
    };
    if let Some(failure) = failure {
        let _ = fs::remove_dir_all(venv);
        panic!("{what}: {failure}\n{HOW_TO_FIX}");
    }
}

/// Whether `py` runs and has pip (`py -m pip --version`).
fn has_pip(py: &Path) -> bool {
    if !py.exists() {
        return false;
    }
    let mut cmd = Command::new(py);
    cmd.args(["-m", "pip", "--version", "--disable-pip-version-check"]);
    run_bounded(cmd, CHECK_TIMEOUT, "python -m pip --version")
        .is_ok_and(|(status, _, _)| status.is_some_and(|s| s.success()))
}

/// Runs `py` with `script` on `-c`, `stdin` fed in, within `timeout`; returns stdout. Panics
/// with stderr on failure.
pub fn run_script(py: &Path, script: &str, stdin: &[u8], timeout: Duration) -> String {
    let mut cmd = Command::new(py);
    cmd.args(["-c", script]);
    let (status, stdout, stderr) = run_bounded_with_input(cmd, stdin, timeout, "python script")
        .unwrap_or_else(|e| panic!("starting {}: {e}", py.display()));
    assert!(
        status.is_some_and(|s| s.success()),
        "python script failed ({}):\n{}",
        describe(status),
        output_text(&stdout, &stderr)
    );
    stdout
}

fn describe(status: Option<std::process::ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "timed out".to_owned(),
    }
}

/// The pins not satisfied by `py` (exact version when `exact`, else merely installed).
fn missing<'a>(py: &Path, pins: &[(&'a str, &'a str)], exact: bool) -> Vec<(&'a str, &'a str)> {
    let script = "import sys, importlib.metadata as m\n\
                  for n in sys.argv[1:]:\n\
                  \x20   try: print(n, m.version(n))\n\
                  \x20   except m.PackageNotFoundError: print(n, '-')\n";
    let mut cmd = Command::new(py);
    cmd.args(["-c", script]).args(pins.iter().map(|(n, _)| *n));
    let listed = match run_bounded(cmd, CHECK_TIMEOUT, "checking installed packages") {
        Ok((Some(status), stdout, _)) if status.success() => stdout,
        _ => return pins.to_vec(),
    };
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
