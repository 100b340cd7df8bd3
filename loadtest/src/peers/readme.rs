//! `loadtest report`: rewrites, from peers.json, the README's headline table
//! (between `<!-- peers-headline:begin -->` and `<!-- peers-headline:end -->`)
//! and docs/performance.md's "Against other gateways" section (between
//! `<!-- peers:begin -->` and `<!-- peers:end -->`), plus peers.md and the
//! charts next to the JSON.

use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;

use super::args::ReportArgs;
use super::model::PeersReport;
use super::section::{headline, performance_section};

/// docs/performance.md's section.
pub const BEGIN: &str = "<!-- peers:begin -->";
pub const END: &str = "<!-- peers:end -->";
/// The README's headline table.
pub const HEADLINE_BEGIN: &str = "<!-- peers-headline:begin -->";
pub const HEADLINE_END: &str = "<!-- peers-headline:end -->";

fn workspace_file(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::canonicalize(&p).unwrap_or(p)
}

pub fn default_readme() -> PathBuf {
    workspace_file("README.md")
}

pub fn default_performance_doc() -> PathBuf {
    workspace_file("docs/performance.md")
}

pub fn default_json() -> PathBuf {
    crate::run::default_out_dir().join("peers.json")
}

/// `doc` with the text between `begin` and `end` replaced by `body` (markers
/// kept, each on its own line). Fails unless each marker occurs exactly once,
/// in order.
pub fn replace_section(doc: &str, begin: &str, end: &str, body: &str) -> anyhow::Result<String> {
    let count = |m: &str| doc.matches(m).count();
    if count(begin) != 1 || count(end) != 1 {
        anyhow::bail!(
            "expected exactly one `{begin}` and one `{end}` (found {} and {})",
            count(begin),
            count(end)
        );
    }
    let start = doc.find(begin).context("no begin marker")? + begin.len();
    let stop = doc.find(end).context("no end marker")?;
    if stop < start {
        anyhow::bail!("`{end}` comes before `{begin}`");
    }
    Ok(format!(
        "{}\n{}\n{}",
        &doc[..start],
        body.trim_matches('\n'),
        &doc[stop..]
    ))
}

/// `to` as a relative link from the directory `from_dir` (both made absolute
/// against the working directory first), with `/` separators.
pub fn relative_link(from_dir: &Path, to: &Path) -> String {
    let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let normal = |p: PathBuf| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in p.components() {
            match c {
                Component::ParentDir => {
                    out.pop();
                }
                Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
                _ => {}
            }
        }
        out
    };
    let from = normal(abs(from_dir));
    let to = normal(abs(to));
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(to[common..].iter().cloned());
    if parts.is_empty() {
        ".".into()
    } else {
        parts.join("/")
    }
}

fn rewrite(path: &Path, begin: &str, end: &str, body: &str) -> anyhow::Result<()> {
    let doc =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let new = replace_section(&doc, begin, end, body)
        .with_context(|| format!("in {}", path.display()))?;
    std::fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

/// Where a report is published.
pub struct Targets {
    pub readme: PathBuf,
    pub performance_doc: PathBuf,
    /// The directory holding peers.json, peers.md and the charts.
    pub results: PathBuf,
}

impl Targets {
    pub fn defaults(results: PathBuf) -> Self {
        Self {
            readme: default_readme(),
            performance_doc: default_performance_doc(),
            results,
        }
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

/// Rewrites the README's headline and docs/performance.md's section from `report`.
pub fn update(t: &Targets, report: &PeersReport) -> anyhow::Result<()> {
    let results = relative_link(parent(&t.performance_doc), &t.results);
    rewrite(
        &t.performance_doc,
        BEGIN,
        END,
        &performance_section(report, &results),
    )?;
    let doc_link = relative_link(parent(&t.readme), &t.performance_doc);
    rewrite(
        &t.readme,
        HEADLINE_BEGIN,
        HEADLINE_END,
        &headline(report, &doc_link),
    )
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let json = args.json.clone().unwrap_or_else(default_json);
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("reading {} (run `loadtest peers` first)", json.display()))?;
    let report: PeersReport =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let results = parent(&json).to_path_buf();
    let targets = Targets {
        readme: args.readme.clone().unwrap_or_else(default_readme),
        performance_doc: args
            .performance_doc
            .clone()
            .unwrap_or_else(default_performance_doc),
        results: results.clone(),
    };
    update(&targets, &report)?;
    // peers.md and the charts next to the JSON are rendered from it too.
    super::output::write_rendered(&results, &report)?;
    println!(
        "rewrote the peers table of {}, the peers section of {}, and peers.md and the charts, from {}",
        targets.readme.display(),
        targets.performance_doc.display(),
        json.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_only_between_markers() {
        let doc = format!("# T\n\nbefore\n{BEGIN}\nold\ntext\n{END}\nafter\n");
        let out = replace_section(&doc, BEGIN, END, "\nnew body\n").unwrap_or_default();
        assert_eq!(
            out,
            format!("# T\n\nbefore\n{BEGIN}\nnew body\n{END}\nafter\n")
        );
        // Idempotent.
        assert_eq!(
            replace_section(&out, BEGIN, END, "new body").unwrap_or_default(),
            out
        );
    }

    #[test]
    fn empty_section_and_adjacent_markers() {
        let doc = format!("a {BEGIN}{END} b");
        assert_eq!(
            replace_section(&doc, BEGIN, END, "x").unwrap_or_default(),
            format!("a {BEGIN}\nx\n{END} b")
        );
    }

    #[test]
    fn rejects_missing_duplicate_or_reversed_markers() {
        assert!(replace_section("no markers", BEGIN, END, "x").is_err());
        assert!(replace_section(&format!("{BEGIN}\n{END}\n{END}"), BEGIN, END, "x").is_err());
        assert!(replace_section(&format!("{END}\n{BEGIN}"), BEGIN, END, "x").is_err());
    }

    #[test]
    fn headline_markers_are_distinct_from_the_section_markers() {
        // `<!-- peers:begin -->` must not occur inside the headline markers, or a
        // README holding both would be ambiguous.
        assert!(!HEADLINE_BEGIN.contains(BEGIN) && !HEADLINE_END.contains(END));
        let doc = format!("{HEADLINE_BEGIN}\nold\n{HEADLINE_END}\n");
        assert_eq!(
            replace_section(&doc, HEADLINE_BEGIN, HEADLINE_END, "new").unwrap_or_default(),
            format!("{HEADLINE_BEGIN}\nnew\n{HEADLINE_END}\n")
        );
        assert!(replace_section(&doc, BEGIN, END, "new").is_err());
    }

    #[test]
    fn relative_links() {
        let root = Path::new("/w/repo");
        assert_eq!(
            relative_link(&root.join("docs"), &root.join("loadtest/results")),
            "../loadtest/results"
        );
        assert_eq!(
            relative_link(root, &root.join("docs/performance.md")),
            "docs/performance.md"
        );
        assert_eq!(
            relative_link(&root.join("loadtest/../docs"), &root.join("README.md")),
            "../README.md"
        );
        assert_eq!(relative_link(root, root), ".");
    }
}
