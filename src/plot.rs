//! Plots, written as small SVG files: for now one kind, a line chart of a measure against a
//! setting (perplexity against the n-gram order, one line per smoothing method).
//!
//! ```
//! use llm_lessons::plot::{LineChart, Series};
//! let chart = LineChart::new("Perplexity by order", "order n", "perplexity")
//!     .log_y()
//!     .series(Series::new("Laplace", vec![(1.0, 60.0), (2.0, 25.0), (3.0, 30.0)]))
//!     .hline("true perplexity", 8.7);
//! let svg = chart.to_svg_string()?;
//! assert!(svg.starts_with("<svg") && svg.contains("Laplace"));
//! # Ok::<(), llm_lessons::Error>(())
//! ```
//!
//! Points that are not finite are left out (the perplexity of an unsmoothed model is often
//! infinite), and so are points at or below 0 on a log axis. Not here: bar charts, several
//! panels, PNG output (plotters can do all three).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::{Error, Result};

/// Width and height of a chart, in pixels.
const SIZE: (u32, u32) = (820, 440);

/// Line colours, one per series in turn (Tableau 10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The dashed reference line.
const HLINE_COLOR: RGBAColor = RGBAColor(80, 80, 80, 1.0);

/// plotters measures text with a font it is given: the bundled DejaVu Sans, registered once
/// under the family name every chart uses.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../data/fonts/DejaVuSans.ttf");
        // The font is part of the crate: if it did not parse, every chart would fail and
        // say so (plotters reports a missing font as a drawing error).
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// One line of a chart: a name for the legend and its (x, y) points, in order of x.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Series {
        Series {
            name: name.into(),
            points,
        }
    }
}

/// A line chart: several series against a shared x axis, with an optional dashed
/// horizontal reference line (such as the true perplexity of the source).
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// A logarithmic y axis.
    pub log_y: bool,
    /// A dashed horizontal line at `y`, named in the legend.
    pub hline: Option<(String, f64)>,
}

impl LineChart {
    /// An empty chart with a linear y axis.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> LineChart {
        LineChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            log_y: false,
            hline: None,
        }
    }

    /// Adds a series.
    pub fn series(mut self, series: Series) -> LineChart {
        self.series.push(series);
        self
    }

    /// Makes the y axis logarithmic.
    pub fn log_y(mut self) -> LineChart {
        self.log_y = true;
        self
    }

    /// Adds a dashed horizontal reference line at `y`.
    pub fn hline(mut self, name: impl Into<String>, y: f64) -> LineChart {
        self.hline = Some((name.into(), y));
        self
    }

    /// Draws the chart and writes it to `path` as SVG, atomically (a reader never sees
    /// half a file).
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let svg = self.render().map_err(|message| Error::Plot {
            path: path.to_path_buf(),
            message,
        })?;
        crate::data::write_atomic(path, svg.as_bytes())
    }

    /// Draws the chart as an SVG document.
    pub fn to_svg_string(&self) -> Result<String> {
        self.render().map_err(|message| Error::Plot {
            path: PathBuf::from(format!("{:?}", self.title)),
            message,
        })
    }

    /// Shows the chart inline in an evcxr (Jupyter) notebook cell; prints the error instead
    /// if it cannot be drawn.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        match self.to_svg_string() {
            Ok(svg) => println!("EVCXR_BEGIN_CONTENT text/html\n{svg}\nEVCXR_END_CONTENT"),
            Err(e) => eprintln!("{e}"),
        }
    }

    /// The points that can be drawn: finite, and above 0 on a log axis.
    fn drawable(&self, points: &[(f64, f64)]) -> Vec<(f64, f64)> {
        let ok = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite() && (!self.log_y || y > 0.0);
        points.iter().copied().filter(ok).collect()
    }

    /// The axis ranges: every drawable point and the reference line, with a margin.
    fn ranges(&self) -> std::result::Result<(Range<f64>, Range<f64>), String> {
        let points: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| self.drawable(&s.points))
            .collect();
        if points.is_empty() {
            return Err("no series has a finite point to draw".into());
        }
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        let hline = self.hline.iter().map(|(_, y)| (points[0].0, *y));
        for (x, y) in points
            .iter()
            .copied()
            .chain(self.drawable(&hline.collect::<Vec<_>>()))
        {
            (x0, x1) = (x0.min(x), x1.max(x));
            (y0, y1) = (y0.min(y), y1.max(y));
        }
        let pad = |lo: f64, hi: f64| {
            let margin = if hi > lo {
                0.05 * (hi - lo)
            } else {
                0.5 * lo.abs().max(1.0)
            };
            (lo - margin)..(hi + margin)
        };
        let y = if self.log_y {
            // 10% of a decade, at least, on either side.
            let ratio = (y1 / y0).powf(0.05).max(1.1);
            (y0 / ratio)..(y1 * ratio)
        } else {
            pad(y0, y1)
        };
        Ok((pad(x0, x1), y))
    }

    fn render(&self) -> std::result::Result<String, String> {
        register_font();
        let (x, y) = self.ranges()?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| e.to_string();
            root.fill(&WHITE).map_err(err)?;
            let body = root.titled(&self.title, ("sans-serif", 20)).map_err(err)?;
            // The legend gets a column of its own on the right, so it never hides a line.
            let entries = self.legend_entries();
            let font = TextStyle::from(("sans-serif", 13).into_font())
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center));
            let mut widest = 0;
            for (name, _, _) in &entries {
                widest = widest.max(body.estimate_text_size(name, &font).map_err(err)?.0);
            }
            let (plot, legend) = body.split_horizontally(SIZE.0 - (widest + 56).min(SIZE.0 / 2));
            if self.log_y {
                // plotters labels only powers of 10 on a log axis: label 1, 2, 5 of each decade.
                let ticks = log_ticks(y.start, y.end);
                self.draw(&plot, x, y.log_scale().with_key_points(ticks))?;
            } else {
                self.draw(&plot, x, y)?;
            }
            for (i, (name, color, dashed)) in entries.iter().enumerate() {
                let y = 40 + 22 * i as i32;
                let style = color.stroke_width(2);
                let segments: &[(i32, i32)] = if *dashed {
                    &[(8, 16), (22, 30)]
                } else {
                    &[(8, 30)]
                };
                for &(a, b) in segments {
                    legend
                        .draw(&PathElement::new(vec![(a, y), (b, y)], style))
                        .map_err(err)?;
                }
                legend
                    .draw(&Text::new(name.as_str(), (38, y), font.clone()))
                    .map_err(err)?;
            }
            root.present().map_err(err)?;
        }
        Ok(svg)
    }

    /// The legend: each series' name and colour, then the reference line (dashed).
    fn legend_entries(&self) -> Vec<(String, RGBAColor, bool)> {
        let mut entries: Vec<(String, RGBAColor, bool)> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), COLORS[i % COLORS.len()].to_rgba(), false))
            .collect();
        if let Some((name, _)) = &self.hline {
            entries.push((name.clone(), HLINE_COLOR, true));
        }
        entries
    }

    /// Draws the axes and the lines on `area`, whatever the kind of y axis.
    fn draw<Y>(
        &self,
        area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
        x: Range<f64>,
        y: Y,
    ) -> std::result::Result<(), String>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64>,
    {
        let err = |e: DrawingAreaErrorKind<_>| e.to_string();
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x, y)
            .map_err(err)?;
        // Integer x values (orders, epochs) get integer labels.
        let x_values: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .collect();
        let integer_x = x_values.iter().all(|x| x.fract() == 0.0);
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_labels(if integer_x {
                distinct(&x_values).min(12)
            } else {
                8
            })
            .y_labels(16)
            .x_label_formatter(&|v| tick(*v))
            .y_label_formatter(&|v| tick(*v))
            .light_line_style(TRANSPARENT)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(err)?;
        for (i, s) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let points = self.drawable(&s.points);
            chart
                .draw_series(LineSeries::new(
                    points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?;
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(err)?;
        }
        if let Some((_, level)) = &self.hline {
            let (x0, x1) = (chart.x_range().start, chart.x_range().end);
            let line = DashedLineSeries::new(
                [(x0, *level), (x1, *level)],
                12,
                6,
                HLINE_COLOR.stroke_width(2),
            );
            chart.draw_series(line).map_err(err)?;
        }
        Ok(())
    }
}

/// Ticks for a log axis from `lo` to `hi`: 1, 2 and 5 times each power of 10 in range, or
/// every digit when that gives fewer than three.
///
/// `log_ticks(4.8, 90.0) == [5, 10, 20, 50]`.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
    let ticks = |steps: &[f64]| -> Vec<f64> {
        decades
            .clone()
            .flat_map(|e| steps.iter().map(move |m| m * 10f64.powi(e)))
            .filter(|t| (lo..=hi).contains(t))
            .collect()
    };
    let coarse = ticks(&[1.0, 2.0, 5.0]);
    if coarse.len() >= 3 {
        coarse
    } else {
        ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0])
    }
}

/// Number of distinct values.
fn distinct(values: &[f64]) -> usize {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v.dedup();
    v.len()
}

/// An axis label with at most three significant digits: `tick(20.000001) == "20"`,
/// `tick(0.25) == "0.25"`, `tick(1234.6) == "1235"`.
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> LineChart {
        LineChart::new("Perplexity by order", "order n", "perplexity")
            .log_y()
            .series(Series::new(
                "MLE",
                vec![(1.0, 70.0), (2.0, f64::INFINITY), (3.0, f64::NAN)],
            ))
            .series(Series::new(
                "modified Kneser-Ney",
                vec![(1.0, 70.0), (2.0, 14.0), (3.0, 9.5)],
            ))
            .hline("true perplexity", 8.7)
    }

    #[test]
    fn renders_title_and_every_name() {
        let svg = chart().to_svg_string().unwrap();
        for text in [
            "Perplexity by order",
            "MLE",
            "modified Kneser-Ney",
            "true perplexity",
            "order n",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(svg.len() < 30_000, "{} bytes", svg.len());
    }

    #[test]
    fn no_finite_point_is_an_error() {
        let c = LineChart::new("Nothing", "x", "y")
            .series(Series::new("MLE", vec![(1.0, f64::INFINITY)]));
        let e = c.to_svg_string().unwrap_err().to_string();
        assert!(
            e.contains("Nothing") && e.contains("no series has a finite point"),
            "{e}"
        );
        let log = LineChart::new("Zero", "x", "y")
            .log_y()
            .series(Series::new("a", vec![(1.0, 0.0)]));
        assert!(log.to_svg_string().is_err());
        assert!(LineChart::new("Empty", "x", "y").to_svg_string().is_err());
    }

    #[test]
    fn one_point_and_linear_axes_work() {
        let c = LineChart::new("One", "x", "y").series(Series::new("a", vec![(3.0, 2.0)]));
        assert!(c.to_svg_string().unwrap().contains("One"));
    }

    #[test]
    fn save_writes_the_file() {
        let dir = std::env::temp_dir().join(format!("llm-lessons-plot-{}", std::process::id()));
        let path = dir.join("sub").join("chart.svg");
        chart().save_svg(&path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("</svg>"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn log_ticks_one_two_five() {
        assert_eq!(log_ticks(4.8, 90.0), vec![5.0, 10.0, 20.0, 50.0]);
        assert_eq!(log_ticks(0.3, 3000.0)[..4], [0.5, 1.0, 2.0, 5.0]);
        assert_eq!(log_ticks(6.5, 9.5), vec![7.0, 8.0, 9.0]);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(20.000001), "20");
        assert_eq!(tick(0.25), "0.25");
        assert_eq!(tick(1234.6), "1235");
        assert_eq!(tick(3.0), "3");
        assert_eq!(tick(9.87654), "9.88");
    }
}
