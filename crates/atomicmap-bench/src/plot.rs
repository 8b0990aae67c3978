//! `--plot`: throughput per map as bars (one panel per workload; for `snapshot`, the throughput
//! while snapshots are taken), or, for `growth`, live heap against keys as one line per map.
//! SVG or PNG, chosen by the file's extension.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::record::Record;

/// Places to look for a TrueType font; plotters needs one to lay out (and, for PNG, draw)
/// text. `ATOMICMAP_BENCH_FONT` overrides them.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn register_font() -> Result<(), String> {
    let candidates = std::env::var("ATOMICMAP_BENCH_FONT")
        .ok()
        .into_iter()
        .chain(FONT_PATHS.iter().map(|p| p.to_string()));
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            // plotters keeps fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return Ok(());
            }
        }
    }
    Err("no TrueType font found for the plot; set ATOMICMAP_BENCH_FONT=/path/to/font.ttf".into())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draw `records` to `path`.
pub fn draw(path: &Path, records: &[Record]) -> Result<(), String> {
    register_font()?;
    let growth: Vec<&Record> = records.iter().filter(|r| !r.growth.is_empty()).collect();
    let mut workloads: Vec<&str> = Vec::new();
    for r in records.iter().filter(|r| r.growth.is_empty() && r.is_ok()) {
        if !workloads.contains(&r.workload.as_str()) {
            workloads.push(&r.workload);
        }
    }
    let panels = workloads.len() + usize::from(!growth.is_empty());
    if panels == 0 {
        return Err("nothing to plot: no map was timed".into());
    }
    let size = (1000, 420 * panels as u32);
    let png = path.extension().is_some_and(|e| e == "png");
    let result = if png {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        panels_on(&root, records, &workloads, &growth).and_then(|_| Ok(root.present()?))
    } else {
        let root = SVGBackend::new(path, size).into_drawing_area();
        panels_on(&root, records, &workloads, &growth).and_then(|_| Ok(root.present()?))
    };
    result.map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn panels_on<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    records: &[Record],
    workloads: &[&str],
    growth: &[&Record],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let panels = workloads.len() + usize::from(!growth.is_empty());
    let areas = root.split_evenly((panels, 1));
    for (area, workload) in areas.iter().zip(workloads) {
        let rows: Vec<&Record> = records
            .iter()
            .filter(|r| r.workload == *workload && r.is_ok() && r.growth.is_empty())
            .collect();
        bars(area, workload, &rows)?;
    }
    if !growth.is_empty() {
        lines(&areas[panels - 1], growth)?;
    }
    Ok(())
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    workload: &str,
    rows: &[&Record],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let first = rows[0];
    let plotted = |r: &Record| match &r.snapshot {
        Some(s) => Some(s.mops_with_snapshots),
        None => r.mops,
    };
    let top = rows.iter().filter_map(|r| plotted(r)).fold(0.0, f64::max) * 1.15 + 1e-9;
    let what = if first.snapshot.is_some() {
        "throughput while another thread takes snapshots"
    } else {
        "throughput"
    };
    let title = format!(
        "{workload}: {what}, {} threads, {} {} keys",
        first.threads, first.keys, first.key_type
    );
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0..rows.len()).into_segmented(), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc("Mops/s")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .x_labels(rows.len())
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                rows.get(*i).map_or(String::new(), |r| r.map.clone())
            }
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let color = if r.map == "LIMIT" {
            RGBColor(150, 150, 150).to_rgba()
        } else {
            Palette99::pick(i).to_rgba()
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), plotted(r).unwrap_or(0.0)),
            ],
            color.filled(),
        );
        bar.set_margin(0, 0, 8, 8);
        bar
    }))?;
    Ok(())
}

fn lines<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, rows: &[&Record]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    const MIB: f64 = 1024.0 * 1024.0;
    let max_keys = rows
        .iter()
        .flat_map(|r| &r.growth)
        .map(|s| s.keys)
        .max()
        .unwrap_or(1) as f64;
    let max_mib = rows
        .iter()
        .flat_map(|r| &r.growth)
        .map(|s| s.bytes)
        .max()
        .unwrap_or(1) as f64
        / MIB;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("growth: live heap from empty, {} threads", rows[0].threads),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_keys * 1.02, 0.0..max_mib * 1.1 + 1e-9)?;
    chart
        .configure_mesh()
        .x_desc("keys")
        .y_desc("MiB")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                r.growth
                    .iter()
                    .map(|s| (s.keys as f64, s.bytes as f64 / MIB)),
                color.stroke_width(2),
            ))?
            .label(r.map.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
