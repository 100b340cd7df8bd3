//! peers-cpu.svg and peers-rss.svg: grouped bar charts, one group per
//! contestant. (peers-latency.svg comes from `crate::plot`.)

use std::path::Path;

use plotters::prelude::*;

use super::model::{cpu_per_req, PeersReport};
use crate::plot::plot_err as err;

/// One chart: a group of bars per category, one bar per series.
struct Bars {
    title: String,
    y_desc: String,
    log: bool,
    categories: Vec<String>,
    /// (series name, colour, one value per category)
    series: Vec<(String, RGBColor, Vec<Option<f64>>)>,
    label: fn(f64) -> String,
}

fn draw(path: &Path, b: &Bars) -> anyhow::Result<()> {
    let values = || b.series.iter().flat_map(|s| s.2.iter().flatten().copied());
    let vmax = values().fold(0.0f64, f64::max).max(1.0);
    let vmin = values().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let n = b.categories.len().max(1);
    let root = SVGBackend::new(path, (160 * n as u32 + 240, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(&b.title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(34)
        .y_label_area_size(70);
    let x_range = -0.5f64..(n as f64 - 0.5);
    let cats = b.categories.clone();
    let x_fmt = move |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            cats.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let k = b.series.len().max(1) as f64;
    let width = 0.8 / k;
    // Both branches draw the same bars; only the y coordinate type differs.
    macro_rules! bars {
        ($chart:ident, $floor:expr) => {{
            $chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n + 1)
                .x_label_formatter(&x_fmt)
                .y_desc(b.y_desc.as_str())
                .y_label_formatter(&|v| (b.label)(*v))
                .draw()
                .map_err(|e| err(&e))?;
            for (j, (name, color, vals)) in b.series.iter().enumerate() {
                let c = *color;
                let rects = vals.iter().enumerate().filter_map(|(i, v)| {
                    let v = (*v)?;
                    let x0 = i as f64 - 0.4 + j as f64 * width;
                    Some(Rectangle::new(
                        [(x0, $floor), (x0 + width * 0.92, v)],
                        c.filled(),
                    ))
                });
                $chart
                    .draw_series(rects)
                    .map_err(|e| err(&e))?
                    .label(name.as_str())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                    });
                let labels = vals.iter().enumerate().filter_map(|(i, v)| {
                    let v = (*v)?;
                    let x = i as f64 - 0.4 + (j as f64 + 0.15) * width;
                    Some(Text::new(
                        (b.label)(v),
                        (x, v),
                        ("sans-serif", 13).into_font(),
                    ))
                });
                $chart.draw_series(labels).map_err(|e| err(&e))?;
            }
            $chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(|e| err(&e))?;
        }};
    }
    if b.log {
        let floor = if vmin.is_finite() { vmin / 3.0 } else { 1.0 };
        let mut chart = builder
            .build_cartesian_2d(x_range, (floor..vmax * 4.0).log_scale())
            .map_err(|e| err(&e))?;
        bars!(chart, floor);
    } else {
        let mut chart = builder
            .build_cartesian_2d(x_range, 0.0..vmax * 1.15)
            .map_err(|e| err(&e))?;
        bars!(chart, 0.0);
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

const BLUE: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(150, 150, 150);
const RED: RGBColor = RGBColor(214, 39, 40);

/// CPU µs per request at saturation, per contestant and scenario (log scale).
pub fn write_cpu_svg(path: &Path, r: &PeersReport) -> anyhow::Result<()> {
    let names: Vec<String> = r
        .contestants
        .iter()
        .filter(|c| c.name != "direct")
        .map(|c| c.name.clone())
        .collect();
    let colors = [BLUE, ORANGE];
    let series = r
        .settings
        .scenarios
        .iter()
        .enumerate()
        .map(|(i, &sc)| {
            let vals = names
                .iter()
                .map(|n| r.max(n, sc).and_then(cpu_per_req))
                .collect();
            (
                format!("{} (max throughput)", sc.name()),
                colors[i % 2],
                vals,
            )
        })
        .collect();
    draw(
        path,
        &Bars {
            title: "CPU time per request at saturation (whole process tree)".into(),
            y_desc: "CPU µs / request (log scale)".into(),
            log: true,
            categories: names,
            series,
            label: |v| {
                if v >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.1}")
                }
            },
        },
    )
}

/// Idle and peak RSS per contestant (MiB, linear).
pub fn write_rss_svg(path: &Path, r: &PeersReport) -> anyhow::Result<()> {
    let cs: Vec<_> = r
        .contestants
        .iter()
        .filter(|c| c.name != "direct")
        .collect();
    let mib = |kb: Option<u64>| kb.map(|k| k as f64 / 1024.0);
    draw(
        path,
        &Bars {
            title: "Resident memory of the whole process tree".into(),
            y_desc: "MiB".into(),
            log: false,
            categories: cs.iter().map(|c| c.name.clone()).collect(),
            series: vec![
                (
                    "idle (after start-up)".into(),
                    GREY,
                    cs.iter().map(|c| mib(c.idle_rss_kb)).collect(),
                ),
                (
                    "peak (whole run)".into(),
                    RED,
                    cs.iter().map(|c| mib(c.peak_rss_kb)).collect(),
                ),
            ],
            label: |v| format!("{v:.0}"),
        },
    )
}
