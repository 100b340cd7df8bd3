//! Writes a `peers` result: peers.md, peers.json and the three SVG charts.

use std::path::Path;

use super::charts::{write_cpu_svg, write_rss_svg};
use super::markdown::to_markdown;
use super::model::PeersReport;

pub fn write_all(out: &Path, r: &PeersReport) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("peers.json"), serde_json::to_string_pretty(r)?)?;
    let md = write_rendered(out, r)?;
    println!("\n{md}");
    println!(
        "wrote {0}/peers.md, peers.json, peers-latency.svg, peers-cpu.svg, peers-rss.svg (wall time {1:.0} s)",
        out.display(),
        r.wall_time_s
    );
    Ok(())
}

/// Writes what is rendered from the JSON (peers.md and the charts); returns the Markdown.
pub fn write_rendered(out: &Path, r: &PeersReport) -> anyhow::Result<String> {
    let md = to_markdown(r);
    std::fs::write(out.join("peers.md"), &md)?;
    crate::plot::write_latency_svg(&out.join("peers-latency.svg"), &r.measurements)?;
    write_cpu_svg(&out.join("peers-cpu.svg"), r)?;
    write_rss_svg(&out.join("peers-rss.svg"), r)?;
    Ok(md)
}
