//! PNG plots of a run's metrics against samples seen (plotters, bitmap backend).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::{EvalRecord, ReportError};

/// The plots [`render_plots`] writes, in order: E\[φ\] per constraint, KL(p‖π) (with
/// KL(p‖q) when logged) and KL(π‖a).
pub const PLOT_FILES: [&str; 3] = ["moments.png", "kl_p_pi.png", "kl_pi_a.png"];

/// DejaVu Sans Mono (Bitstream Vera licence, see assets/fonts/LICENSE): plotters' `ab_glyph`
/// text rendering loads no system fonts, so the labels' font ships in the binary.
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";
const SIZE: (u32, u32) = (960, 600);

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        [FontStyle::Normal, FontStyle::Bold]
            .into_iter()
            .all(|style| plotters::style::register_font(FAMILY, style, FONT).is_ok())
    });
    if ok { Ok(()) } else { Err("the embedded font does not load".to_owned()) }
}

/// A named line: (samples seen, value) points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Draws [`PLOT_FILES`] into `out_dir` from `records`, with each constraint's target (from
/// `targets`, by name) as a dashed line of the same colour. A plot with no data is not
/// written. Returns the files written.
pub fn render_plots(
    records: &[EvalRecord],
    targets: &BTreeMap<String, f64>,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, ReportError> {
    std::fs::create_dir_all(out_dir)
        .map_err(|source| ReportError::Io { path: out_dir.to_owned(), source })?;
    let x = |r: &EvalRecord| r.samples_seen as f64;
    let series = |name: &str, f: &dyn Fn(&EvalRecord) -> Option<f64>| Series {
        name: name.to_owned(),
        points: records
            .iter()
            .filter_map(|r| f(r).filter(|v| v.is_finite()).map(|v| (x(r), v)))
            .collect(),
    };
    let mut names: Vec<&String> = records.iter().flat_map(|r| r.moments.keys()).collect();
    names.sort();
    names.dedup();
    let moments: Vec<Series> = names
        .iter()
        .map(|n| series(&format!("E[φ] {n}"), &|r| r.moments.get(*n).copied()))
        .collect();
    let moment_targets: Vec<Option<f64>> = names.iter().map(|n| targets.get(*n).copied()).collect();
    let plots = [
        (PLOT_FILES[0], "Constraint satisfaction E_π[φ]", "E[φ]", moments, moment_targets),
        (
            PLOT_FILES[1],
            "Distance to the target KL(p‖π)",
            "nats",
            vec![series("KL(p‖π)", &|r| r.kl_p_pi), series("KL(p‖q)", &|r| r.kl_p_q)],
            vec![],
        ),
        (
            PLOT_FILES[2],
            "Forgetting KL(π‖a)",
            "nats",
            vec![series("KL(π‖a)", &|r| r.kl_pi_a)],
            vec![],
        ),
    ];
    let mut written = Vec::new();
    for (file, title, y_label, series, targets) in plots {
        let keep: Vec<(Series, Option<f64>)> = series
            .into_iter()
            .zip(targets.into_iter().chain(std::iter::repeat(None)))
            .filter(|(s, _)| !s.points.is_empty())
            .collect();
        if keep.is_empty() {
            continue;
        }
        let path = out_dir.join(file);
        draw(&path, title, y_label, &keep)
            .map_err(|message| ReportError::Plot { path: path.clone(), message })?;
        written.push(path);
    }
    Ok(written)
}

/// "1.2M", "512k", "40".
fn short_count(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else {
        trim(v)
    }
}

fn trim(v: f64) -> String {
    trim_to(v, 2)
}

/// `v` with `decimals` decimals, trailing zeros dropped.
fn trim_to(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.') } else { &s };
    if s == "-0" { "0".to_owned() } else { s.to_owned() }
}

/// The x extent of `xs` (one unit wide if it is a point) and the y range of `ys` padded by 8%
/// (or by a fixed margin if every value is the same).
fn ranges(
    xs: impl Iterator<Item = f64>,
    ys: impl Iterator<Item = f64>,
) -> (f64, f64, std::ops::Range<f64>) {
    let extent = |v: &mut dyn Iterator<Item = f64>| {
        v.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (lo, hi) = extent(&mut { ys });
    let pad = if hi > lo { 0.08 * (hi - lo) } else { 0.5f64.max(0.1 * hi.abs()) };
    let (x0, x1) = extent(&mut { xs });
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    (x0, x1, (lo - pad)..(hi + pad))
}

fn draw(
    path: &Path,
    title: &str,
    y_label: &str,
    series: &[(Series, Option<f64>)],
) -> Result<(), String> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let ys = series.iter().flat_map(|(s, t)| s.points.iter().map(|p| p.1).chain(*t));
    let xs = series.iter().flat_map(|(s, _)| s.points.iter().map(|p| p.0));
    let (x0, x1, y) = ranges(xs, ys);

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 26))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("samples seen")
        .y_desc(y_label)
        .x_label_formatter(&|v| short_count(*v))
        .y_label_formatter(&|v| trim_to(*v, 3))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (s, target)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(s.name.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
        if let Some(t) = target {
            chart
                .draw_series(DashedLineSeries::new(
                    [(x0, *t), (x1, *t)],
                    8,
                    6,
                    color.stroke_width(1),
                ))
                .map_err(|e| err(&e))?
                .label(format!("target {}", trim(*t)))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(1))
                });
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

/// A line with a band: (x, mean, std) points, drawn as the mean and a shaded ±1 std band.
pub(crate) struct Band {
    pub(crate) name: String,
    pub(crate) points: Vec<(f64, f64, f64)>,
}

/// For each band, `Some(its largest value)` when that is more than 5 times the largest value
/// of every other band (with at least 3 bands): the y axis then leaves it out, so that one
/// diverging method does not flatten the others into a line (it is drawn, clipped, and its
/// legend says how far it goes).
fn off_scale(bands: &[Band]) -> Vec<Option<f64>> {
    let maxima: Vec<f64> = bands
        .iter()
        .map(|b| b.points.iter().map(|p| (p.1 + p.2).abs()).fold(0.0, f64::max))
        .collect();
    (0..bands.len())
        .map(|i| {
            let others = maxima
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, m)| *m)
                .fold(0.0, f64::max);
            (bands.len() >= 3 && maxima[i] > 5.0 * others && others > 0.0).then_some(maxima[i])
        })
        .collect()
}

/// One plot of several [`Band`]s against samples seen, with `target` as a dashed line.
pub(crate) fn draw_bands(
    path: &Path,
    title: &str,
    bands: &[Band],
    target: Option<f64>,
) -> Result<(), String> {
    register_font()?;
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let off_scale = off_scale(bands);
    let ys = bands
        .iter()
        .zip(&off_scale)
        .filter(|(_, off)| off.is_none())
        .flat_map(|(b, _)| b.points.iter().flat_map(|p| [p.1 - p.2, p.1 + p.2]));
    let xs = bands.iter().flat_map(|b| b.points.iter().map(|p| p.0));
    let (x0, x1, y) = ranges(xs, ys.chain(target));

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 26))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("samples seen")
        .x_label_formatter(&|v| short_count(*v))
        .y_label_formatter(&|v| trim_to(*v, 3))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (band, off)) in bands.iter().zip(&off_scale).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let label = match off {
            Some(max) => format!("{} (off scale, up to {})", band.name, trim(*max)),
            None => band.name.clone(),
        };
        let upper = band.points.iter().map(|p| (p.0, p.1 + p.2));
        let lower = band.points.iter().rev().map(|p| (p.0, p.1 - p.2));
        chart
            .draw_series(std::iter::once(Polygon::new(
                upper.chain(lower).collect::<Vec<_>>(),
                color.mix(0.15).filled(),
            )))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                band.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if let Some(t) = target {
        chart
            .draw_series(DashedLineSeries::new([(x0, t), (x1, t)], 8, 6, BLACK.stroke_width(1)))
            .map_err(|e| err(&e))?
            .label(format!("target {}", trim(t)))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_short() {
        assert_eq!(short_count(6_400_000.0), "6.4M");
        assert_eq!(short_count(51_200.0), "51.2k");
        assert_eq!(short_count(512.0), "512");
        assert_eq!(short_count(0.0), "0");
        assert_eq!(trim_to(0.5, 3), "0.5");
        assert_eq!(trim_to(-0.0001, 3), "0");
        assert_eq!(trim_to(120.0, 3), "120");
    }

    #[test]
    fn one_diverging_band_is_left_off_the_scale() {
        let band = |name: &str, top: f64| Band {
            name: name.to_owned(),
            points: vec![(0.0, 1.0, 0.0), (1.0, top, 0.0)],
        };
        let bands = [band("a", 2.0), band("b", 3.0), band("c", 80.0)];
        assert_eq!(off_scale(&bands), [None, None, Some(80.0)]);
        assert_eq!(off_scale(&bands[..2]), [None, None], "two bands: no judgement");
        let close = [band("a", 2.0), band("b", 3.0), band("c", 9.0)];
        assert_eq!(off_scale(&close), [None, None, None]);
    }
}
