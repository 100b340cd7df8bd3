//! Checks the module structure ARCHITECTURE.md promises, by reading the sources:
//! - the top-level modules of `src/` import each other without cycles (arrows run one way);
//! - `translate/` and `stream/` are pure: no tokio, hyper or http (nor the crate's IO modules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/proxy/body.rs` → `proxy`, `src/sse.rs` →
/// `sse`); `None` for the crate roots.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (name != "lib" && name != "main").then_some(name)
}

/// Code with comments and string literals blanked, so a path in a doc comment or a message
/// doesn't count as an import.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                    }
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every `crate::X` a top-level module mentions (tests included: a cycle through test code is
/// still a cycle a reader has to untangle), as module → modules.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(m) = module_of(&file) else { continue };
        let code = code_only(&std::fs::read_to_string(&file).unwrap());
        let deps = g.entry(m.clone()).or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && name != m {
                deps.insert(name);
            }
        }
    }
    g
}

/// A cycle through `start`, if there is one.
fn cycle_from(
    g: &BTreeMap<String, BTreeSet<String>>,
    start: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    let here = path.last().cloned().unwrap_or_else(|| start.to_string());
    for next in g.get(&here).into_iter().flatten() {
        if next == start {
            let mut c = path.clone();
            c.push(start.to_string());
            return Some(c);
        }
        if !path.contains(next) && g.contains_key(next) {
            path.push(next.clone());
            if let Some(c) = cycle_from(g, start, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let g = graph();
    assert!(g.len() > 10, "found only {:?}", g.keys());
    for m in g.keys() {
        let mut path = vec![m.clone()];
        if let Some(cycle) = cycle_from(&g, m, &mut path) {
            panic!(
                "import cycle between top-level modules: {}\nwhole graph: {g:#?}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn the_request_path_layers_point_down() {
    let g = graph();
    // Foundations import no module above them; nothing imports the server or the CLI.
    for (m, allowed) in [
        ("sse", &[][..]),
        ("usage", &["sse"][..]),
        ("glob", &[][..]),
        ("pricing", &["usage", "glob"][..]),
        (
            "governance",
            &[
                "config",
                "error",
                "glob",
                "http_headers",
                "pricing",
                "usage",
            ][..],
        ),
        ("translate", &["sse", "usage"][..]),
        ("stream", &["sse", "usage", "translate"][..]),
    ] {
        if let Some(deps) = g.get(m) {
            let extra: Vec<_> = deps
                .iter()
                .filter(|d| !allowed.contains(&d.as_str()))
                .collect();
            assert!(extra.is_empty(), "{m} imports {extra:?}");
        }
    }
    for (m, deps) in &g {
        if m != "reload" {
            assert!(!deps.contains("server"), "{m} imports server");
        }
        if !matches!(m.as_str(), "server" | "reload") {
            assert!(!deps.contains("proxy"), "{m} imports proxy");
        }
    }
}

#[test]
fn translation_and_the_stream_pipeline_are_pure() {
    for dir in ["translate", "stream"] {
        let mut files = Vec::new();
        rust_files(&src().join(dir), &mut files);
        assert!(!files.is_empty());
        for file in files {
            let code = code_only(&std::fs::read_to_string(&file).unwrap());
            for banned in ["tokio", "hyper", "http::", "http_body", "crate::upstream"] {
                let hit = code.match_indices(banned).any(|(at, _)| {
                    // A whole path segment, not part of a longer name (`http_body` vs
                    // `some_http::`).
                    at == 0
                        || !code[..at]
                            .chars()
                            .last()
                            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                });
                assert!(!hit, "{} uses {banned}", file.display());
            }
        }
    }
}
