//! Golden-file tests for translation: every input under `src/translate/testdata/<dialect>/<kind>/`
//! is run through one translation step and its output compared with the `.snap` file beside it
//! (an [insta] snapshot). Recorded fixtures from `tests/fixtures/` are run the same way, their
//! snapshots kept in the same folder.
//!
//! To accept changed outputs (and write the snapshot of a new case), run
//!
//! ```text
//! INSTA_UPDATE=always cargo test --lib translate
//! ```
//!
//! and review the rewritten `.snap` files with `git diff` (or run `cargo insta review` if
//! cargo-insta is installed). Without it a failing case prints a line diff and, outside CI,
//! leaves a `.snap.new` beside the snapshot.
//!
//! Input files: leading lines starting with `//` say what the case checks (they become the
//! snapshot's description); any other line starting with `//` is a comment too. What the rest
//! of a file means is decided by the kind's test (see `testdata/README.md`).

pub mod ir_json;

use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::translate::ir::{ChatRequest, ChatResponse, StreamEvent, TranslateError};

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/translate/testdata");
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

/// One case handed to a kind's test.
pub struct Input {
    /// The file's extension (`json`, `jsonl`, `sse`, `bin` ...), to tell shapes apart.
    pub ext: String,
    /// The file's bytes, comment lines removed (fixtures: unchanged).
    pub bytes: Vec<u8>,
}

impl Input {
    /// The input as JSON; panics (failing the case) when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| panic!("input is not JSON: {e}"))
    }

    /// The input as one typed value (an `ir_json` mirror type, usually).
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("input does not fit its type: {e}"))
    }

    /// The non-empty lines of a `.jsonl` input.
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
    }
}

/// Runs `run` on the recorded `fixtures` (names under `tests/fixtures/`) and on every input file
/// in `testdata/<dir>`, comparing each output with its snapshot. All cases run; the test fails
/// at the end, naming each case that differed. A snapshot without an input also fails (a case
/// was renamed or removed).
pub fn check(dir: &str, fixtures: &[&str], run: impl Fn(&Input) -> String) {
    let folder = Path::new(TESTDATA).join(dir);
    let mut cases: Vec<(String, PathBuf, Input, String)> = Vec::new();
    for name in fixtures {
        let path = Path::new(FIXTURES).join(name);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let input = Input {
            ext: extension(&path),
            bytes,
        };
        let about = format!("recorded fixture tests/fixtures/{name}");
        cases.push(((*name).to_owned(), path, input, about));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file() && !p.to_string_lossy().contains(".snap"))
        .collect();
    files.sort();
    for path in files {
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (about, bytes) = split_comments(&text);
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let input = Input {
            ext: extension(&path),
            bytes,
        };
        cases.push((stem, path, input, about));
    }

    let mut failed = Vec::new();
    for (name, path, input, about) in &cases {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(&folder);
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_input_file(path);
        settings.set_description(about.as_str());
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let output = run(input);
            settings.bind(|| insta::assert_snapshot!(name.as_str(), output));
        }));
        if outcome.is_err() {
            failed.push(name.clone());
        }
    }

    let known: Vec<String> = cases.iter().map(|c| format!("{}.snap", c.0)).collect();
    for entry in std::fs::read_dir(&folder).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        if file.ends_with(".snap") && !known.contains(&file) {
            failed.push(format!("{file} (snapshot without an input)"));
        }
    }
    assert!(
        failed.is_empty(),
        "{dir}: {} case(s) differ: {failed:?}\n\
         To accept the new outputs: INSTA_UPDATE=always cargo test --lib translate",
        failed.len()
    );
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Leading `//` lines → the description; every `//` line is dropped from the bytes.
fn split_comments(text: &str) -> (String, Vec<u8>) {
    let mut about = Vec::new();
    let mut body = String::new();
    let mut leading = true;
    for line in text.lines() {
        match line.trim_start().strip_prefix("//") {
            Some(comment) => {
                if leading {
                    about.push(comment.trim());
                }
            }
            None => {
                leading = false;
                body.push_str(line);
                body.push('\n');
            }
        }
    }
    (about.join(" "), body.into_bytes())
}

// ---------------------------------------------------------------------------------------------
// rendering

/// Pretty JSON, for whole bodies and IR values.
pub fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

/// One line of JSON, for stream events and table rows.
pub fn line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap()
}

/// A wire body: pretty JSON when it parses, else the text as it is.
pub fn body(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(v) => pretty(&v),
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// A translation's result as JSON: the value, or `{"error": ...}` when it was refused.
pub fn result<T, J: Serialize>(r: Result<T, TranslateError>, ok: impl FnOnce(T) -> J) -> Value {
    match r {
        Ok(v) => serde_json::to_value(ok(v)).unwrap(),
        Err(e) => serde_json::json!({ "error": ir_json::TranslateError::from(&e) }),
    }
}

/// An IR request, given as its JSON mirror.
pub fn ir_request(v: Value) -> ChatRequest {
    serde_json::from_value::<ir_json::ChatRequest>(v)
        .unwrap()
        .into()
}

/// A decoded response as its JSON mirror, or `{"error": ...}` when it was refused.
pub fn decoded_response(r: Result<ChatResponse, TranslateError>) -> Value {
    result(r, |r| ir_json::ChatResponse::from(&r))
}

/// An encoder's body as JSON, or `{"error": ...}` when it was refused.
pub fn encoded(r: Result<Vec<u8>, TranslateError>) -> Value {
    result(r, |b| serde_json::from_slice::<Value>(&b).unwrap())
}

/// IR stream events, one per line.
pub fn events(events: &[StreamEvent]) -> String {
    let mut out = String::new();
    for e in events {
        writeln!(out, "{}", line(&ir_json::StreamEvent::from(e))).unwrap();
    }
    out
}

/// An encoder's SSE output, one event per line: `event: NAME` (when named) and `data: ...`
/// lines joined by ` | `. Anything that is not `\r\n\r\n`-terminated, or has a line that is
/// neither, is shown as `RAW "..."` so a framing change shows in the diff.
pub fn sse(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::new();
    let mut rest: &str = &text;
    while !rest.is_empty() {
        let Some(end) = rest.find("\r\n\r\n") else {
            writeln!(out, "RAW {rest:?}").unwrap();
            break;
        };
        let event = &rest[..end];
        rest = &rest[end + 4..];
        let fields: Vec<&str> = event.split("\r\n").collect();
        let well_formed = fields
            .iter()
            .all(|f| f.starts_with("data: ") || f.starts_with("event: "));
        if well_formed {
            writeln!(out, "{}", fields.join(" | ")).unwrap();
        } else {
            writeln!(out, "RAW {:?}", format!("{event}\r\n\r\n")).unwrap();
        }
    }
    out
}

/// A table case: each line of the input is one case, each output line the answer to the input
/// line at the same place.
pub fn table(input: &Input, run: impl Fn(&[u8]) -> Value) -> String {
    let mut out = String::new();
    for l in input.lines() {
        writeln!(out, "{}", line(&run(l))).unwrap();
    }
    out
}

/// A case that is one JSON value (`.json`) or a table of them, one a line (`.jsonl`).
pub fn json_cases(input: &Input, run: impl Fn(Value) -> Value) -> String {
    if input.ext == "jsonl" {
        return table(input, |l| run(serde_json::from_slice(l).unwrap()));
    }
    pretty(&run(input.json()))
}

/// A case that is one body (any file but `.jsonl`) or a table of bodies, one a line.
pub fn body_cases(input: &Input, run: impl Fn(&[u8]) -> Value) -> String {
    if input.ext == "jsonl" {
        return table(input, run);
    }
    pretty(&run(&input.bytes))
}

/// A body given in an input file: a JSON string is taken as raw bytes (to send text that is not
/// JSON), anything else is sent as its JSON.
pub fn body_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    }
}

/// A recorded fixture's bytes (`tests/fixtures/<name>`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(FIXTURES).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// An input file under `testdata/` as JSON, comment lines removed (for a case other cases build
/// on).
pub fn input_json(path: &str) -> Value {
    let path = Path::new(TESTDATA).join(path);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&split_comments(&text).1).unwrap()
}
