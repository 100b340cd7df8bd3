//! Latency-percentile charts: one panel per scenario × load, one line per
//! subject, log scale (latency.svg for `run`, peers-latency.svg for `peers`).

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Measurement, Mode, Report};

const PERCENTILES: [&str; 4] = ["p50", "p90", "p99", "p99.9"];

pub fn color(subject: &str, idx: usize) -> RGBColor {
    match subject {
        "direct" => RGBColor(31, 119, 180),
        "bare" => RGBColor(44, 160, 44),
        "ferrogate" => RGBColor(214, 39, 40),
        "litellm" => RGBColor(148, 103, 189),
        "portkey" => RGBColor(255, 127, 14),
        _ => {
            let c = Palette99::pick(idx + 3).to_rgba();
            RGBColor(c.0, c.1, c.2)
        }
    }
}

fn values(m: &Measurement) -> Option<[f64; 4]> {
    let p = m.latency_us?;
    Some([p.p50, p.p90, p.p99, p.p999])
}

fn title(m: &Measurement) -> String {
    match (m.mode, m.target_rps) {
        (Mode::Open, Some(r)) => format!("{} @ {r:.0} req/s (open loop)", m.scenario.name()),
        _ => format!(
            "{} max throughput ({} conns)",
            m.scenario.name(),
            m.connections
        ),
    }
}

pub fn write_svg(path: &Path, report: &Report) -> anyhow::Result<()> {
    write_latency_svg(path, &report.measurements)
}

/// Plotting errors carry backend types; keep only their text.
pub fn plot_err(e: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

pub fn write_latency_svg(path: &Path, measurements: &[Measurement]) -> anyhow::Result<()> {
    // Panels in measurement order, one per (scenario, mode, rate).
    let mut panels: Vec<(String, Vec<&Measurement>)> = Vec::new();
    for m in measurements {
        let t = title(m);
        match panels.iter_mut().find(|(k, _)| *k == t) {
            Some((_, v)) => v.push(m),
            None => panels.push((t, vec![m])),
        }
    }
    if panels.is_empty() {
        anyhow::bail!("no measurements to plot");
    }
    let cols = 2usize;
    let rows = panels.len().div_ceil(cols);
    let root = SVGBackend::new(path, (1200, 380 * rows as u32)).into_drawing_area();
    let err = plot_err;
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let areas = root.split_evenly((rows, cols));
    for (area, (name, ms)) in areas.iter().zip(&panels) {
        let series: Vec<(&str, [f64; 4])> = ms
            .iter()
            .filter_map(|m| Some((m.subject.as_str(), values(m)?)))
            .collect();
        // Log scale: p50 differences stay visible next to multi-ms tails.
        let all = || series.iter().flat_map(|(_, v)| v.iter().copied());
        // Headroom above the highest line keeps the legend off the data.
        let ymax = all().fold(1.0f64, f64::max) * 6.0;
        let ymin = (all().fold(f64::INFINITY, f64::min) / 1.5).clamp(0.1, ymax / 2.0);
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 18))
            .margin(12)
            .margin_right(30)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0i32..3i32, (ymin..ymax).log_scale())
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                PERCENTILES
                    .get(*x as usize)
                    .copied()
                    .unwrap_or("")
                    .to_string()
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .y_desc("latency µs (log)")
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (subject, vals)) in series.iter().enumerate() {
            let c = color(subject, i);
            chart
                .draw_series(
                    LineSeries::new((0..4).map(|k| (k as i32, vals[k])), c.stroke_width(2))
                        .point_size(3),
                )
                .map_err(|e| err(&e))?
                .label(*subject)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
