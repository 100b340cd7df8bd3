//! `loadtest report`: rewrites the README's peers section from peers.json,
//! between `<!-- peers:begin -->` and `<!-- peers:end -->`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::ReportArgs;
use super::model::PeersReport;
use super::section::readme_section;

pub const BEGIN: &str = "<!-- peers:begin -->";
pub const END: &str = "<!-- peers:end -->";

pub fn default_readme() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("README.md");
    std::fs::canonicalize(&p).unwrap_or(p)
}

pub fn default_json() -> PathBuf {
    crate::run::default_out_dir().join("peers.json")
}

/// `doc` with the text between the markers replaced by `body` (markers kept,
/// each on its own line). Fails unless each marker occurs exactly once, in order.
pub fn replace_section(doc: &str, body: &str) -> anyhow::Result<String> {
    let count = |m: &str| doc.matches(m).count();
    if count(BEGIN) != 1 || count(END) != 1 {
        anyhow::bail!(
            "expected exactly one `{BEGIN}` and one `{END}` (found {} and {})",
            count(BEGIN),
            count(END)
        );
    }
    let start = doc.find(BEGIN).context("no begin marker")? + BEGIN.len();
    let end = doc.find(END).context("no end marker")?;
    if end < start {
        anyhow::bail!("`{END}` comes before `{BEGIN}`");
    }
    Ok(format!(
        "{}\n{}\n{}",
        &doc[..start],
        body.trim_matches('\n'),
        &doc[end..]
    ))
}

/// Rewrites `readme`'s section from `report`.
pub fn update(readme: &Path, report: &PeersReport) -> anyhow::Result<()> {
    let doc =
        std::fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let new = replace_section(&doc, &readme_section(report))
        .with_context(|| format!("in {}", readme.display()))?;
    std::fs::write(readme, new).with_context(|| format!("writing {}", readme.display()))
}

pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let json = args.json.clone().unwrap_or_else(default_json);
    let text = std::fs::read_to_string(&json)
        .with_context(|| format!("reading {} (run `loadtest peers` first)", json.display()))?;
    let report: PeersReport =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let readme = args.readme.clone().unwrap_or_else(default_readme);
    update(&readme, &report)?;
    // peers.md and the charts next to the JSON are rendered from it too.
    if let Some(dir) = json.parent() {
        super::output::write_rendered(dir, &report)?;
    }
    println!(
        "rewrote the peers section of {}, and peers.md and the charts, from {}",
        readme.display(),
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
        let out = replace_section(&doc, "\nnew body\n").unwrap_or_default();
        assert_eq!(
            out,
            format!("# T\n\nbefore\n{BEGIN}\nnew body\n{END}\nafter\n")
        );
        // Idempotent.
        assert_eq!(replace_section(&out, "new body").unwrap_or_default(), out);
    }

    #[test]
    fn empty_section_and_adjacent_markers() {
        let doc = format!("a {BEGIN}{END} b");
        assert_eq!(
            replace_section(&doc, "x").unwrap_or_default(),
            format!("a {BEGIN}\nx\n{END} b")
        );
    }

    #[test]
    fn rejects_missing_duplicate_or_reversed_markers() {
        assert!(replace_section("no markers", "x").is_err());
        assert!(replace_section(&format!("{BEGIN}\n{END}\n{END}"), "x").is_err());
        assert!(replace_section(&format!("{END}\n{BEGIN}"), "x").is_err());
    }
}
