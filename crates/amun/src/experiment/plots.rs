//! PNG plots of a report: ROC curves of RMIA per table, histograms of the
//! true-class confidence on D_F / D_T / D_R per method, Avg. Gap bars, and
//! each tuning table (metric against the learning rate, a line per step).
use super::report::Report;
use plotters::prelude::*;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Once;

type Res<T> = std::result::Result<T, Box<dyn StdError>>;

static FONT: Once = Once::new();

/// plotters draws text with a font we ship (egui's Hack), so plots need no
/// system fonts.
fn register_font() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            epaint_default_fonts::HACK_REGULAR,
        );
    });
}

fn slug(fraction: f64, with_retain: bool) -> String {
    format!("f{}-{}", fraction, if with_retain { "R" } else { "noR" })
}

/// Writes every plot of `report` into `dir`; returns their paths.
pub fn write_plots(report: &Report, dir: &Path) -> Res<Vec<PathBuf>> {
    register_font();
    let mut out = Vec::new();
    let seed = report.config.seeds[0];
    for t in &report.tables {
        let pick = |m: &str| {
            report.results.iter().find(|r| {
                r.method == m
                    && r.seed == seed
                    && r.fraction == t.fraction
                    && r.with_retain.is_none_or(|w| w == t.with_retain)
            })
        };
        let runs: Vec<_> = t.rows.iter().filter_map(|row| pick(&row.method)).collect();
        let title = format!(
            "forget {:.0}%, {} (seed {seed})",
            t.fraction * 100.0,
            if t.with_retain {
                "with D_R"
            } else {
                "without D_R"
            }
        );
        let roc = dir.join(format!("roc-{}.png", slug(t.fraction, t.with_retain)));
        roc_plot(
            &roc,
            &title,
            &runs
                .iter()
                .map(|r| (r.method.clone(), r.audit.roc.clone()))
                .collect::<Vec<_>>(),
        )?;
        out.push(roc);
        let hist = dir.join(format!(
            "confidence-{}.png",
            slug(t.fraction, t.with_retain)
        ));
        hist_plot(
            &hist,
            &title,
            &runs
                .iter()
                .map(|r| (r.method.clone(), r.audit.confidence_hist.clone()))
                .collect::<Vec<_>>(),
        )?;
        out.push(hist);
    }
    for &fraction in &report.config.forget.fractions {
        let gap = dir.join(format!("gap-f{fraction}.png"));
        let mut bars: Vec<(String, Vec<(bool, f64)>)> = Vec::new();
        for t in report.tables.iter().filter(|t| t.fraction == fraction) {
            for row in &t.rows {
                if row.method == "retrain" || !row.avg_gap.mean.is_finite() {
                    continue;
                }
                match bars.iter_mut().find(|(m, _)| *m == row.method) {
                    Some((_, v)) => v.push((t.with_retain, row.avg_gap.mean)),
                    None => {
                        bars.push((row.method.clone(), vec![(t.with_retain, row.avg_gap.mean)]))
                    }
                }
            }
        }
        gap_plot(
            &gap,
            &format!("Avg. Gap to Retrain, forget {:.0}%", fraction * 100.0),
            &bars,
        )?;
        out.push(gap);
    }
    let gamma = report.config.tune.as_ref().map_or(0.1, |t| t.gamma);
    for c in &report.tuning {
        let path = dir.join(format!(
            "tune-{}-{}.png",
            c.method,
            slug(c.fraction, c.with_retain)
        ));
        tune_plot(&path, c, gamma)?;
        out.push(path);
    }
    Ok(out)
}

/// The tuning table of one method and setting: the selection metric against
/// log10(lr), one line per StepLR step, the chosen point circled.
fn tune_plot(path: &Path, c: &super::tune::TuneChoice, gamma: f64) -> Res<()> {
    let pts: Vec<(usize, f64, f64)> = c
        .table
        .iter()
        .filter(|r| r.value.is_finite() && r.lr > 0.0)
        .map(|r| (r.step, r.lr.log10(), r.value))
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (xmin, xmax) = pts
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let ymax = pts.iter().map(|p| p.2).fold(0.0, f64::max) * 1.1 + 0.1;
    let root = BitMapBackend::new(path, (720, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "tuning {} — forget {:.0}%, {} ({:?})",
                c.method,
                c.fraction * 100.0,
                if c.with_retain {
                    "with D_R"
                } else {
                    "without D_R"
                },
                c.metric
            ),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((xmin - 0.2)..(xmax + 0.2), 0f64..ymax)?;
    chart
        .configure_mesh()
        .x_desc("log10(learning rate)")
        .y_desc("selection metric (lower is better)")
        .draw()?;
    let mut steps: Vec<usize> = pts.iter().map(|p| p.0).collect();
    steps.sort_unstable();
    steps.dedup();
    for (i, step) in steps.iter().enumerate() {
        let col = Palette99::pick(i).to_rgba();
        let mut line: Vec<(f64, f64)> = pts
            .iter()
            .filter(|p| p.0 == *step)
            .map(|p| (p.1, p.2))
            .collect();
        line.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart.draw_series(line.iter().map(|p| Circle::new(*p, 3, col.filled())))?;
        chart
            .draw_series(LineSeries::new(line, col.stroke_width(2)))?
            .label(format!("×{gamma} every {step} epoch(s)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], col.stroke_width(2)));
    }
    if let Some(best) = c
        .table
        .iter()
        .find(|r| r.lr == c.chosen_lr && r.step == c.chosen_step && r.lr > 0.0)
    {
        chart.draw_series(std::iter::once(Circle::new(
            (best.lr.log10(), best.value),
            8,
            BLACK.stroke_width(2),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn roc_plot(path: &Path, title: &str, curves: &[(String, Vec<(f64, f64)>)]) -> Res<()> {
    let root = BitMapBackend::new(path, (720, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("RMIA ROC, D_F vs D_T — {title}"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate")
        .y_desc("true-positive rate")
        .draw()?;
    chart.draw_series(LineSeries::new(
        vec![(0.0, 0.0), (1.0, 1.0)],
        BLACK.mix(0.3),
    ))?;
    for (i, (name, pts)) in curves.iter().enumerate() {
        let c = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn hist_plot(
    path: &Path,
    title: &str,
    panels: &[(String, crate::audit::ConfidenceHist)],
) -> Res<()> {
    let cols = 4usize;
    let rows = panels.len().div_ceil(cols).max(1);
    let root =
        BitMapBackend::new(path, (300 * cols as u32, 60 + 240 * rows as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(50);
    top.titled(
        &format!("true-class confidence: D_F (red), D_T (blue), D_R (green) — {title}"),
        ("sans-serif", 18),
    )?;
    let areas = body.split_evenly((rows, cols));
    for (area, (name, h)) in areas.iter().zip(panels) {
        let norm = |v: &[usize]| {
            let n = v.iter().sum::<usize>().max(1) as f64;
            v.iter()
                .enumerate()
                .map(|(i, c)| ((i as f64 + 0.5) / 20.0, *c as f64 / n))
                .collect::<Vec<_>>()
        };
        let series = [
            (norm(&h.forget), RED),
            (norm(&h.test), BLUE),
            (norm(&h.retain), GREEN),
        ];
        let ymax = series
            .iter()
            .flat_map(|(s, _)| s.iter().map(|p| p.1))
            .fold(0.05, f64::max)
            * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(25)
            .y_label_area_size(35)
            .build_cartesian_2d(0f64..1f64, 0f64..ymax)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .x_labels(5)
            .y_labels(4)
            .draw()?;
        for (s, c) in series {
            chart.draw_series(LineSeries::new(s, c.stroke_width(2)))?;
        }
    }
    root.present()?;
    Ok(())
}

fn gap_plot(path: &Path, title: &str, bars: &[(String, Vec<(bool, f64)>)]) -> Res<()> {
    // Room for each method's label ("salun (calibrated)") under its pair.
    let width = (130 * bars.len() as u32).max(900);
    let root = BitMapBackend::new(path, (width, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let ymax = bars
        .iter()
        .flat_map(|(_, v)| v.iter().map(|b| b.1))
        .fold(1.0, f64::max)
        * 1.15;
    // Two segments per method: with D_R, then without.
    let n = (2 * bars.len().max(1)) as i32;
    let names: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{title} (blue: with D_R, orange: without)"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((0..n).into_segmented(), 0f64..ymax)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n as usize)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(k) if k % 2 == 0 => {
                names.get((*k / 2) as usize).cloned().unwrap_or_default()
            }
            _ => String::new(),
        })
        .y_desc("Avg. Gap (points)")
        .draw()?;
    for (i, (_, v)) in bars.iter().enumerate() {
        for (with, g) in v {
            let k = 2 * i as i32 + i32::from(!*with);
            let c = if *with { BLUE } else { RGBColor(230, 120, 20) };
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(k), 0.0),
                    (SegmentValue::Exact(k + 1), *g),
                ],
                c.filled(),
            );
            r.set_margin(0, 0, 2, 2);
            chart.draw_series(std::iter::once(r))?;
        }
    }
    root.present()?;
    Ok(())
}
