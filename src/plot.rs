//! Plots, written as small SVG files. Four kinds: a line chart of a measure against a
//! setting (perplexity against the n-gram order, one line per smoothing method),
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
//! a scatter chart of labelled points (word vectors projected to two dimensions), with
//! arrows from some points to others, so that parallel differences show as parallel arrows:
//!
//! ```
//! use llm_lessons::plot::ScatterChart;
//! let chart = ScatterChart::new("Word vectors, first two principal components", "PC 1", "PC 2")
//!     .equal_aspect()
//!     .group("people", [("man", (0.0, 0.0)), ("woman", (0.2, 1.0))])
//!     .group("royalty", [("king", (2.0, 0.1)), ("queen", (2.1, 1.2))])
//!     .arrow("man", "woman")
//!     .arrow("king", "queen");
//! let svg = chart.to_svg_string()?;
//! assert!(svg.contains("queen") && svg.contains("royalty"));
//! # Ok::<(), llm_lessons::Error>(())
//! ```
//!
//! a heatmap of a matrix, such as attention probabilities with a token on each row and
//! column:
//!
//! ```
//! use llm_lessons::plot::HeatmapChart;
//! let chart = HeatmapChart::new("Attention", "key", "query", vec![vec![1.0, 0.0], vec![0.3, 0.7]])
//!     .row_labels(["the", "cat"])
//!     .col_labels(["the", "cat"]);
//! let svg = chart.to_svg_string()?;
//! assert!(svg.contains("cat") && svg.contains("query"));
//! # Ok::<(), llm_lessons::Error>(())
//! ```
//!
//! and horizontal bars, each with its label and value, such as the likeliest next tokens:
//!
//! ```
//! use llm_lessons::plot::BarChart;
//! let chart = BarChart::new("After \"The capital of France is\"", "probability")
//!     .bars([(" Paris", 0.6), (" a", 0.1)]);
//! let svg = chart.to_svg_string()?;
//! assert!(svg.contains("Paris") && svg.contains("0.6"));
//! # Ok::<(), llm_lessons::Error>(())
//! ```
//!
//! Points that are not finite are left out (the perplexity of an unsmoothed model is often
//! infinite), and so are points at or below 0 on a log axis; a chart with nothing left to
//! draw is an error. Not here: several panels, PNG output (plotters can do both), and
//! moving labels apart when they overlap.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

use crate::{Error, Result};

/// Width and height of a line chart, in pixels.
const SIZE: (u32, u32) = (820, 440);

/// Width and height of a scatter chart, in pixels: taller, for two axes of the same kind.
const SCATTER_SIZE: (u32, u32) = (820, 620);

/// Radius of a scatter chart's dots, in pixels.
const DOT: i32 = 4;

/// Arrows between the points of a scatter chart.
const ARROW_COLOR: RGBAColor = RGBAColor(70, 70, 70, 0.75);

/// What a scatter chart's labels are written on: white, letting a little through.
const LABEL_GROUND: RGBAColor = RGBAColor(255, 255, 255, 0.85);

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

/// A part of an SVG image, in pixels from its top left corner.
type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

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
        save_svg(path.as_ref(), self.render())
    }

    /// Draws the chart as an SVG document.
    pub fn to_svg_string(&self) -> Result<String> {
        svg_string(&self.title, self.render())
    }

    /// Shows the chart inline in an evcxr (Jupyter) notebook cell; prints the error instead
    /// if it cannot be drawn.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        evcxr_display(self.to_svg_string());
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
            let (plot, legend) = split_legend(&body, &entries)?;
            if self.log_y {
                // plotters labels only powers of 10 on a log axis: label 1, 2, 5 of each decade.
                let ticks = log_ticks(y.start, y.end);
                self.draw(&plot, x, y.log_scale().with_key_points(ticks))?;
            } else {
                self.draw(&plot, x, y)?;
            }
            draw_legend(&legend, &entries)?;
            root.present().map_err(err)?;
        }
        Ok(svg)
    }

    /// The legend: each series' name and colour, then the reference line (dashed).
    fn legend_entries(&self) -> Vec<LegendEntry> {
        let mut entries: Vec<LegendEntry> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| LegendEntry {
                name: s.name.clone(),
                color: COLORS[i % COLORS.len()].to_rgba(),
                marker: Marker::Line,
            })
            .collect();
        if let Some((name, _)) = &self.hline {
            entries.push(LegendEntry {
                name: name.clone(),
                color: HLINE_COLOR,
                marker: Marker::Dashed,
            });
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

/// One point of a [`ScatterChart`]: a dot, with its label written to the right of it.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledPoint {
    pub label: String,
    pub x: f64,
    pub y: f64,
    /// Its colour: the chart's group `group` (named in the legend if the chart names it).
    pub group: usize,
}

/// A straight line from one labelled point of a [`ScatterChart`] to another, with or
/// without an arrowhead at `to`.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrow {
    pub from: String,
    pub to: String,
    pub head: bool,
}

/// A scatter chart of labelled points, such as word vectors projected to two dimensions,
/// with optional arrows between pairs of them (man -> woman, king -> queen: if the vectors
/// encode gender the same way, the arrows are parallel and of the same length).
///
/// Points are coloured by group: [`point`](ScatterChart::point) puts a point in group 0,
/// [`point_in`](ScatterChart::point_in) in any group, and [`group`](ScatterChart::group)
/// adds a named group (shown in a legend) with its points. A point whose `x` or `y` is not
/// finite is left out, and so is any arrow to or from it; an arrow naming a label that no
/// point has is an error when the chart is drawn (when several points share a label, an
/// arrow goes from or to the first). Arrows pass under the labels; labels that overlap
/// are drawn overlapping.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<LabeledPoint>,
    /// Names of groups 0, 1, ... for the legend; no legend when empty.
    pub groups: Vec<String>,
    pub arrows: Vec<Arrow>,
    /// The same scale on both axes (one unit of x as long as one unit of y), so that
    /// distances and angles on the chart are those of the points: what a projection such
    /// as PCA needs.
    pub equal_aspect: bool,
}

impl ScatterChart {
    /// An empty chart, each axis scaled to fit its points.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> ScatterChart {
        ScatterChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            points: Vec::new(),
            groups: Vec::new(),
            arrows: Vec::new(),
            equal_aspect: false,
        }
    }

    /// Adds a point in group 0.
    pub fn point(self, label: impl Into<String>, x: f64, y: f64) -> ScatterChart {
        self.point_in(0, label, x, y)
    }

    /// Adds a point in group `group` (its colour; the colours repeat after 10 groups).
    pub fn point_in(
        mut self,
        group: usize,
        label: impl Into<String>,
        x: f64,
        y: f64,
    ) -> ScatterChart {
        self.points.push(LabeledPoint {
            label: label.into(),
            x,
            y,
            group,
        });
        self
    }

    /// Adds a named group, the next one (group 0 first), and its points.
    pub fn group<L: Into<String>>(
        mut self,
        name: impl Into<String>,
        points: impl IntoIterator<Item = (L, (f64, f64))>,
    ) -> ScatterChart {
        let group = self.groups.len();
        self.groups.push(name.into());
        for (label, (x, y)) in points {
            self = self.point_in(group, label, x, y);
        }
        self
    }

    /// Adds an arrow from the point labelled `from` to the point labelled `to`.
    pub fn arrow(mut self, from: impl Into<String>, to: impl Into<String>) -> ScatterChart {
        self.arrows.push(Arrow {
            from: from.into(),
            to: to.into(),
            head: true,
        });
        self
    }

    /// Adds a line, without an arrowhead, between the points labelled `from` and `to`.
    pub fn segment(mut self, from: impl Into<String>, to: impl Into<String>) -> ScatterChart {
        self.arrows.push(Arrow {
            from: from.into(),
            to: to.into(),
            head: false,
        });
        self
    }

    /// Gives both axes the same scale.
    pub fn equal_aspect(mut self) -> ScatterChart {
        self.equal_aspect = true;
        self
    }

    /// Draws the chart and writes it to `path` as SVG, atomically (a reader never sees
    /// half a file).
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        save_svg(path.as_ref(), self.render())
    }

    /// Draws the chart as an SVG document.
    pub fn to_svg_string(&self) -> Result<String> {
        svg_string(&self.title, self.render())
    }

    /// Shows the chart inline in an evcxr (Jupyter) notebook cell; prints the error instead
    /// if it cannot be drawn.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        evcxr_display(self.to_svg_string());
    }

    /// The arrows to draw, as (from, to, head): every label must name a point, and arrows
    /// to or from a point that is not finite are left out.
    #[allow(clippy::type_complexity)]
    fn resolved_arrows(&self) -> std::result::Result<Vec<((f64, f64), (f64, f64), bool)>, String> {
        let find = |label: &str, arrow: &Arrow| {
            self.points
                .iter()
                .find(|p| p.label == label)
                .ok_or_else(|| {
                    format!(
                        "arrow from {:?} to {:?}: no point is labelled {label:?}",
                        arrow.from, arrow.to
                    )
                })
        };
        let mut arrows = Vec::new();
        for arrow in &self.arrows {
            let (a, b) = (find(&arrow.from, arrow)?, find(&arrow.to, arrow)?);
            if is_finite(a) && is_finite(b) {
                arrows.push(((a.x, a.y), (b.x, b.y), arrow.head));
            }
        }
        Ok(arrows)
    }

    /// The axis ranges for a plotting area of `width` x `height` pixels: every point, with
    /// room around it for its dot, and on the right for the widest label (`label_width`
    /// pixels); with equal aspect, the axis that needs more room sets the scale of both
    /// and the other is centred.
    fn ranges(
        &self,
        points: &[&LabeledPoint],
        (width, height): (u32, u32),
        label_width: u32,
    ) -> (Range<f64>, Range<f64>) {
        let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
        let (mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY);
        for p in points {
            (x0, x1) = (x0.min(p.x), x1.max(p.x));
            (y0, y1) = (y0.min(p.y), y1.max(p.y));
        }
        let span = |lo: f64, hi: f64| {
            if hi > lo {
                (lo, hi)
            } else {
                let margin = 0.5 * lo.abs().max(1.0);
                (lo - margin, hi + margin)
            }
        };
        let ((x0, x1), (y0, y1)) = (span(x0, x1), span(y0, y1));
        // Pixels kept free on each side of the outermost points.
        let pad = 2.0 * DOT as f64 + 6.0;
        let (left, right) = (pad, pad.max(DOT as f64 + 4.0 + label_width as f64 + 4.0));
        let (bottom, top) = (pad, pad);
        let (width, height) = (width.max(1) as f64, height.max(1) as f64);
        // Units of the data per pixel, leaving at least half of the area to the points.
        let mut ux = (x1 - x0) / (width - left - right).max(width / 2.0);
        let mut uy = (y1 - y0) / (height - bottom - top).max(height / 2.0);
        if self.equal_aspect {
            ux = ux.max(uy);
            uy = ux;
        }
        let axis = |lo: f64, hi: f64, unit: f64, pixels: f64, before: f64, after: f64| {
            let spare = (pixels * unit - (hi - lo) - (before + after) * unit).max(0.0) / 2.0;
            (lo - before * unit - spare)..(hi + after * unit + spare)
        };
        (
            axis(x0, x1, ux, width, left, right),
            axis(y0, y1, uy, height, bottom, top),
        )
    }

    /// The legend: each named group's name and colour.
    fn legend_entries(&self) -> Vec<LegendEntry> {
        self.groups
            .iter()
            .enumerate()
            .map(|(i, name)| LegendEntry {
                name: name.clone(),
                color: COLORS[i % COLORS.len()].to_rgba(),
                marker: Marker::Dot,
            })
            .collect()
    }

    fn render(&self) -> std::result::Result<String, String> {
        register_font();
        let points: Vec<&LabeledPoint> = self.points.iter().filter(|p| is_finite(p)).collect();
        if points.is_empty() {
            return Err("no point is finite (or there is no point)".into());
        }
        let arrows = self.resolved_arrows()?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SCATTER_SIZE).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| e.to_string();
            root.fill(&WHITE).map_err(err)?;
            let body = root.titled(&self.title, ("sans-serif", 20)).map_err(err)?;
            let entries = self.legend_entries();
            let plot = if entries.is_empty() {
                body
            } else {
                let (plot, legend) = split_legend(&body, &entries)?;
                draw_legend(&legend, &entries)?;
                plot
            };
            let font = small_font();
            let mut sizes = Vec::with_capacity(points.len());
            for p in &points {
                sizes.push(plot.estimate_text_size(&p.label, &font).map_err(err)?);
            }
            let widest = sizes.iter().map(|s| s.0).max().unwrap_or(0);
            let builder = || {
                let mut builder = ChartBuilder::on(&plot);
                builder
                    .margin(12)
                    .x_label_area_size(44)
                    .y_label_area_size(60);
                builder
            };
            // Building a chart draws nothing: the first one only measures the plotting area.
            let pixels = builder()
                .build_cartesian_2d(0.0..1.0, 0.0..1.0)
                .map_err(err)?
                .plotting_area()
                .dim_in_pixel();
            let (x, y) = self.ranges(&points, pixels, widest);
            let mut chart = builder().build_cartesian_2d(x, y).map_err(err)?;
            chart
                .configure_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(10)
                .y_labels(10)
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| tick(*v))
                .light_line_style(TRANSPARENT)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(err)?;
            // Arrows first, under the dots and labels; in pixels, so that the heads keep
            // their shape whatever the scales of the axes.
            for (from, to, head) in arrows {
                let (a, b) = (chart.backend_coord(&from), chart.backend_coord(&to));
                draw_arrow(&root, a, b, head)?;
            }
            // Each label on a white ground, which hides the arrows (not the dots or the
            // other labels: those come after).
            chart
                .draw_series(points.iter().zip(&sizes).map(|(p, &(w, h))| {
                    let (w, h) = (w as i32, h as i32);
                    let corners = [(DOT + 2, -h / 2 - 1), (DOT + 6 + w, h / 2 + 1)];
                    EmptyElement::at((p.x, p.y)) + Rectangle::new(corners, LABEL_GROUND.filled())
                }))
                .map_err(err)?;
            chart
                .draw_series(points.iter().map(|p| {
                    let color = COLORS[p.group % COLORS.len()];
                    EmptyElement::at((p.x, p.y))
                        + Circle::new((0, 0), DOT, color.filled())
                        + Text::new(p.label.clone(), (DOT + 4, 0), font.clone())
                }))
                .map_err(err)?;
            root.present().map_err(err)?;
        }
        Ok(svg)
    }
}

fn is_finite(p: &LabeledPoint) -> bool {
    p.x.is_finite() && p.y.is_finite()
}

/// Width and height of a heatmap, in pixels.
const HEATMAP_SIZE: (u32, u32) = (720, 640);

/// The colour of a heatmap's largest value (its smallest is white).
const HEAT: RGBColor = RGBColor(8, 48, 107);

/// A heatmap: a matrix as a grid of squares, from white (its smallest value, or 0 if
/// that is smaller) to dark blue (its largest), with a colour bar. Rows run from top to
/// bottom, as in the matrix, each named by an optional label on the left, and columns by
/// an optional label underneath (written downwards): attention probabilities, one row per
/// query token and one column per key token. Cells that are not finite are grey.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapChart {
    pub title: String,
    /// What the columns are (written under the grid).
    pub x_label: String,
    /// What the rows are (written left of the grid).
    pub y_label: String,
    /// The rows of the matrix, all of the same length.
    pub values: Vec<Vec<f64>>,
    /// One label per row, or none.
    pub row_labels: Vec<String>,
    /// One label per column, or none.
    pub col_labels: Vec<String>,
}

impl HeatmapChart {
    /// A heatmap of `values` (a list of rows), without labels.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
        values: Vec<Vec<f64>>,
    ) -> HeatmapChart {
        HeatmapChart {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            values,
            row_labels: Vec::new(),
            col_labels: Vec::new(),
        }
    }

    /// Names the rows, top to bottom.
    pub fn row_labels<L: Into<String>>(mut self, labels: impl IntoIterator<Item = L>) -> Self {
        self.row_labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Names the columns, left to right.
    pub fn col_labels<L: Into<String>>(mut self, labels: impl IntoIterator<Item = L>) -> Self {
        self.col_labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// Draws the chart and writes it to `path` as SVG, atomically.
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        save_svg(path.as_ref(), self.render())
    }

    /// Draws the chart as an SVG document.
    pub fn to_svg_string(&self) -> Result<String> {
        svg_string(&self.title, self.render())
    }

    /// Shows the chart inline in an evcxr (Jupyter) notebook cell; prints the error instead
    /// if it cannot be drawn.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        evcxr_display(self.to_svg_string());
    }

    /// `(rows, columns)`, or what is wrong with the matrix or the labels.
    fn shape(&self) -> std::result::Result<(usize, usize), String> {
        let (rows, cols) = (self.values.len(), self.values.first().map_or(0, Vec::len));
        if rows == 0 || cols == 0 {
            return Err("the matrix is empty".into());
        }
        if let Some(i) = self.values.iter().position(|r| r.len() != cols) {
            let n = self.values[i].len();
            return Err(format!("row {i} has {n} values, row 0 has {cols}"));
        }
        for (what, labels, n) in [
            ("row", &self.row_labels, rows),
            ("column", &self.col_labels, cols),
        ] {
            if !labels.is_empty() && labels.len() != n {
                return Err(format!("{} {what} labels for {n} {what}s", labels.len()));
            }
        }
        Ok((rows, cols))
    }

    fn render(&self) -> std::result::Result<String, String> {
        register_font();
        let (rows, cols) = self.shape()?;
        let finite = self.values.iter().flatten().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((0.0f64, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
        let hi = if hi > lo { hi } else { lo + 1.0 };
        let color = |v: f64| -> RGBColor {
            if !v.is_finite() {
                return RGBColor(200, 200, 200);
            }
            let t = ((v - lo) / (hi - lo)).clamp(0.0, 1.0);
            let mix = |c: u8| (255.0 + (c as f64 - 255.0) * t).round() as u8;
            RGBColor(mix(HEAT.0), mix(HEAT.1), mix(HEAT.2))
        };
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, HEATMAP_SIZE).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| e.to_string();
            root.fill(&WHITE).map_err(err)?;
            let body = root.titled(&self.title, ("sans-serif", 20)).map_err(err)?;
            let font = small_font();
            let widest = |labels: &[String]| -> std::result::Result<i32, String> {
                let mut w = 0;
                for l in labels {
                    w = w.max(body.estimate_text_size(l, &font).map_err(err)?.0 as i32);
                }
                Ok(w)
            };
            // Room for the axis names (22 px), the labels, and on the right the colour bar.
            let (left, top) = (22 + widest(&self.row_labels)? + 8, 10);
            let bottom = 22 + widest(&self.col_labels)? + 8;
            let right = 100;
            let (w, h) = body.dim_in_pixel();
            let cell = ((w as i32 - left - right) / cols as i32)
                .min((h as i32 - top - bottom) / rows as i32)
                .max(1);
            let (grid_w, grid_h) = (cell * cols as i32, cell * rows as i32);
            for (r, row) in self.values.iter().enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    let (x, y) = (left + cell * c as i32, top + cell * r as i32);
                    let square = Rectangle::new([(x, y), (x + cell, y + cell)], color(v).filled());
                    body.draw(&square).map_err(err)?;
                }
            }
            let right_aligned = font.pos(Pos::new(HPos::Right, VPos::Center));
            for (r, label) in self.row_labels.iter().enumerate() {
                let at = (left - 6, top + cell * r as i32 + cell / 2);
                body.draw(&Text::new(label.as_str(), at, right_aligned.clone()))
                    .map_err(err)?;
            }
            let downwards = font.transform(FontTransform::Rotate90);
            for (c, label) in self.col_labels.iter().enumerate() {
                let at = (left + cell * c as i32 + cell / 2, top + grid_h + 6);
                body.draw(&Text::new(label.as_str(), at, downwards.clone()))
                    .map_err(err)?;
            }
            let centred = font.pos(Pos::new(HPos::Center, VPos::Center));
            let x_name = (left + grid_w / 2, top + grid_h + bottom - 11);
            body.draw(&Text::new(self.x_label.as_str(), x_name, centred.clone()))
                .map_err(err)?;
            let y_name = (11, top + grid_h / 2);
            let upwards = centred.transform(FontTransform::Rotate270);
            body.draw(&Text::new(self.y_label.as_str(), y_name, upwards))
                .map_err(err)?;
            // The colour bar: 20 bands from the largest value (top) to the smallest.
            let (bar_x, bands) = (left + grid_w + 20, 20);
            for i in 0..bands {
                let (y0, y1) = (top + grid_h * i / bands, top + grid_h * (i + 1) / bands);
                let v = hi - (hi - lo) * (i as f64 + 0.5) / bands as f64;
                let band = Rectangle::new([(bar_x, y0), (bar_x + 16, y1)], color(v).filled());
                body.draw(&band).map_err(err)?;
            }
            for (v, y) in [(hi, top), (lo, top + grid_h)] {
                body.draw(&Text::new(tick(v), (bar_x + 22, y), font.clone()))
                    .map_err(err)?;
            }
            root.present().map_err(err)?;
        }
        Ok(svg)
    }
}

/// Width of a bar chart, in pixels; its height grows with the bars.
const BAR_WIDTH: u32 = 720;

/// Height of one bar of a bar chart and the gap under it, in pixels.
const BAR_ROW: i32 = 26;

/// A horizontal bar chart: one bar per labelled value, drawn from 0 to the value, top to
/// bottom in the order given, with the label on the left and the value written at the
/// bar's end (the ten likeliest next tokens and their probabilities). The values must be
/// finite and at least 0.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    pub title: String,
    /// What the values are (written under the bars).
    pub x_label: String,
    /// `(label, value)`, top to bottom.
    pub bars: Vec<(String, f64)>,
    /// Where the bars start (0 unless [`BarChart::starting_at`] moves it).
    pub origin: f64,
    /// For each bar, a range drawn across it as a line with end ticks (the smallest and
    /// largest of several runs), or none.
    pub ranges: Vec<Option<(f64, f64)>>,
}

impl BarChart {
    /// A chart without bars.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>) -> BarChart {
        BarChart {
            title: title.into(),
            x_label: x_label.into(),
            bars: Vec::new(),
            origin: 0.0,
            ranges: Vec::new(),
        }
    }

    /// Adds bars of a mean each, with the range from `min` to `max` drawn across it (the
    /// spread over seeds), under those already there.
    pub fn ranges<L: Into<String>>(
        mut self,
        bars: impl IntoIterator<Item = (L, f64, f64, f64)>,
    ) -> Self {
        self.ranges.resize(self.bars.len(), None);
        for (label, mean, min, max) in bars {
            self.bars.push((label.into(), mean));
            self.ranges.push(Some((min, max)));
        }
        self
    }

    /// Starts the bars at `origin` rather than 0, so that close values read apart (the
    /// axis then says where it starts).
    pub fn starting_at(mut self, origin: f64) -> Self {
        self.origin = origin;
        self
    }

    /// Adds bars, under those already there.
    pub fn bars<L: Into<String>>(mut self, bars: impl IntoIterator<Item = (L, f64)>) -> Self {
        self.bars
            .extend(bars.into_iter().map(|(label, v)| (label.into(), v)));
        self
    }

    /// Draws the chart and writes it to `path` as SVG, atomically.
    pub fn save_svg(&self, path: impl AsRef<Path>) -> Result<()> {
        save_svg(path.as_ref(), self.render())
    }

    /// Draws the chart as an SVG document.
    pub fn to_svg_string(&self) -> Result<String> {
        svg_string(&self.title, self.render())
    }

    /// Shows the chart inline in an evcxr (Jupyter) notebook cell; prints the error instead
    /// if it cannot be drawn.
    #[cfg(feature = "evcxr")]
    pub fn evcxr_display(&self) {
        evcxr_display(self.to_svg_string());
    }

    /// The largest value, or what is wrong with the bars.
    fn largest(&self) -> std::result::Result<f64, String> {
        if self.bars.is_empty() {
            return Err("the chart has no bars".into());
        }
        let origin = self.origin;
        if let Some((label, v)) = self
            .bars
            .iter()
            .find(|(_, v)| !(v.is_finite() && *v >= origin))
        {
            return Err(format!(
                "bar {label:?} has the value {v}: bars need a finite value of at least {origin}"
            ));
        }
        let tops = self.ranges.iter().flatten().map(|r| r.1);
        Ok(self
            .bars
            .iter()
            .map(|b| b.1)
            .chain(tops)
            .fold(origin, f64::max))
    }

    fn render(&self) -> std::result::Result<String, String> {
        register_font();
        let largest = self.largest()?;
        let origin = self.origin;
        let scale = if largest > origin {
            largest - origin
        } else {
            1.0
        };
        let height = 40 + 10 + BAR_ROW as u32 * self.bars.len() as u32 + 40;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (BAR_WIDTH, height)).into_drawing_area();
            let err = |e: DrawingAreaErrorKind<_>| e.to_string();
            root.fill(&WHITE).map_err(err)?;
            let body = root.titled(&self.title, ("sans-serif", 20)).map_err(err)?;
            let font = small_font();
            let (mut label_w, mut value_w) = (0, 0);
            for (label, v) in &self.bars {
                label_w = label_w.max(body.estimate_text_size(label, &font).map_err(err)?.0);
                value_w = value_w.max(body.estimate_text_size(&tick(*v), &font).map_err(err)?.0);
            }
            let (left, top) = (label_w as i32 + 14, 10);
            let length = (body.dim_in_pixel().0 as i32 - left - value_w as i32 - 20).max(1);
            let right_aligned = font.pos(Pos::new(HPos::Right, VPos::Center));
            for (i, (label, v)) in self.bars.iter().enumerate() {
                let (y, mid) = (top + BAR_ROW * i as i32, top + BAR_ROW * i as i32 + 9);
                let x = |v: f64| left + (length as f64 * (v - origin) / scale).round() as i32;
                let end = x(*v);
                let bar =
                    Rectangle::new([(left, y), (end.max(left + 1), y + 18)], COLORS[0].filled());
                body.draw(&bar).map_err(err)?;
                body.draw(&Text::new(
                    label.as_str(),
                    (left - 6, mid),
                    right_aligned.clone(),
                ))
                .map_err(err)?;
                let mut text_at = end + 5;
                if let Some(Some((lo, hi))) = self.ranges.get(i) {
                    let (a, b) = (x(*lo), x(*hi));
                    for line in [
                        vec![(a, mid), (b, mid)],
                        vec![(a, mid - 6), (a, mid + 6)],
                        vec![(b, mid - 6), (b, mid + 6)],
                    ] {
                        body.draw(&PathElement::new(line, BLACK.stroke_width(2)))
                            .map_err(err)?;
                    }
                    text_at = text_at.max(b + 5);
                }
                body.draw(&Text::new(tick(*v), (text_at, mid), font.clone()))
                    .map_err(err)?;
            }
            let bottom = top + BAR_ROW * self.bars.len() as i32;
            body.draw(&PathElement::new(
                vec![(left, top - 4), (left, bottom)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
            let centred = font.pos(Pos::new(HPos::Center, VPos::Center));
            let at = (left + length / 2, bottom + 16);
            let x_label = if origin != 0.0 {
                format!("{} (the bars start at {})", self.x_label, tick(origin))
            } else {
                self.x_label.clone()
            };
            body.draw(&Text::new(x_label, at, centred)).map_err(err)?;
            root.present().map_err(err)?;
        }
        Ok(svg)
    }
}

/// Draws a line from pixel `a` to pixel `b`, stopping short of the dots at both ends, with
/// an arrowhead at `b` if `head`. Nothing if the two are at the same place.
fn draw_arrow(
    area: &Area,
    a: (i32, i32),
    b: (i32, i32),
    head: bool,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let (ax, ay, bx, by) = (a.0 as f64, a.1 as f64, b.0 as f64, b.1 as f64);
    let length = (bx - ax).hypot(by - ay);
    if length < 1.0 {
        return Ok(());
    }
    let (ux, uy) = ((bx - ax) / length, (by - ay) / length);
    let at = |d: f64| ((ax + ux * d).round() as i32, (ay + uy * d).round() as i32);
    let gap = if length > 4.0 * DOT as f64 + 4.0 {
        DOT as f64 + 2.0
    } else {
        0.0
    };
    let (head_length, head_half_width) = (9.0, 4.0);
    let head = head && length - 2.0 * gap >= head_length + 2.0;
    let tip = length - gap;
    let end = if head { tip - head_length } else { tip };
    area.draw(&PathElement::new(
        vec![at(gap), at(end)],
        ARROW_COLOR.stroke_width(2),
    ))
    .map_err(err)?;
    if head {
        let side = |s: f64| {
            let (x, y) = (ax + ux * end - uy * s, ay + uy * end + ux * s);
            (x.round() as i32, y.round() as i32)
        };
        let triangle = vec![at(tip), side(head_half_width), side(-head_half_width)];
        area.draw(&Polygon::new(triangle, ARROW_COLOR.filled()))
            .map_err(err)?;
    }
    Ok(())
}

/// How a legend entry is marked: a line, a dashed line, or a dot.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Line,
    Dashed,
    Dot,
}

/// One entry of a chart's legend.
#[derive(Debug, Clone, PartialEq)]
struct LegendEntry {
    name: String,
    color: RGBAColor,
    marker: Marker,
}

/// The font of legends and of the labels of points: left-aligned, centred vertically.
fn small_font() -> TextStyle<'static> {
    TextStyle::from(("sans-serif", 13).into_font())
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center))
}

/// Splits `body` into the chart (left) and a column for the legend (right), as wide as
/// the longest name needs, at most half of `body`.
fn split_legend<'a>(
    body: &Area<'a>,
    entries: &[LegendEntry],
) -> std::result::Result<(Area<'a>, Area<'a>), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let font = small_font();
    let mut widest = 0;
    for entry in entries {
        widest = widest.max(body.estimate_text_size(&entry.name, &font).map_err(err)?.0);
    }
    let width = body.dim_in_pixel().0;
    Ok(body.split_horizontally(width - (widest + 56).min(width / 2)))
}

/// Draws the legend's entries one under the other, from the top of `legend`.
fn draw_legend(legend: &Area, entries: &[LegendEntry]) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let font = small_font();
    for (i, entry) in entries.iter().enumerate() {
        let y = 40 + 22 * i as i32;
        let style = entry.color.stroke_width(2);
        let segments: &[(i32, i32)] = match entry.marker {
            Marker::Line => &[(8, 30)],
            Marker::Dashed => &[(8, 16), (22, 30)],
            Marker::Dot => &[],
        };
        for &(a, b) in segments {
            legend
                .draw(&PathElement::new(vec![(a, y), (b, y)], style))
                .map_err(err)?;
        }
        if entry.marker == Marker::Dot {
            legend
                .draw(&Circle::new((19, y), DOT, entry.color.filled()))
                .map_err(err)?;
        }
        legend
            .draw(&Text::new(entry.name.as_str(), (38, y), font.clone()))
            .map_err(err)?;
    }
    Ok(())
}

/// Writes a drawn chart to `path`, or returns the error of drawing it, naming the file.
fn save_svg(path: &Path, svg: std::result::Result<String, String>) -> Result<()> {
    let svg = svg.map_err(|message| Error::Plot {
        path: path.to_path_buf(),
        message,
    })?;
    crate::data::write_atomic(path, svg.as_bytes())
}

/// A drawn chart, or the error of drawing it, naming the chart by its title.
fn svg_string(title: &str, svg: std::result::Result<String, String>) -> Result<String> {
    svg.map_err(|message| Error::Plot {
        path: PathBuf::from(format!("{title:?}")),
        message,
    })
}

/// Prints a drawn chart the way evcxr shows it in the notebook, or the error.
#[cfg(feature = "evcxr")]
fn evcxr_display(svg: Result<String>) {
    match svg {
        Ok(svg) => println!("EVCXR_BEGIN_CONTENT text/html\n{svg}\nEVCXR_END_CONTENT"),
        Err(e) => eprintln!("{e}"),
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
    // a grid line at zero often arrives as a rounding residue such as 5.6e-17
    if v.abs() < 1e-12 {
        return "0".into();
    }
    if !v.is_finite() {
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

    fn words() -> ScatterChart {
        ScatterChart::new("Word vectors", "PC 1", "PC 2")
            .equal_aspect()
            .group(
                "people",
                [
                    ("man", (0.0, 0.0)),
                    ("woman", (0.3, 1.0)),
                    ("<unk>", (1.0, -0.5)),
                ],
            )
            .group("royalty", [("king", (2.0, 0.2)), ("queen", (2.3, 1.2))])
            .point_in(5, "ghost", f64::NAN, 1.0)
            .arrow("man", "woman")
            .arrow("king", "queen")
            .segment("man", "king")
            .arrow("ghost", "queen")
    }

    #[test]
    fn scatter_renders_every_label_and_the_arrowheads() {
        let svg = words().to_svg_string().unwrap();
        for text in [
            "Word vectors",
            "PC 1",
            "PC 2",
            "people",
            "royalty",
            "man",
            "woman",
            "king",
            "queen",
            // Labels are escaped: the SVG stays well formed.
            "&lt;unk&gt;",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // The point that is not finite is left out, and so is the arrow from it: two
        // arrowheads (the segment has none), five dots and two in the legend.
        assert!(!svg.contains("ghost"));
        assert_eq!(svg.matches("<polygon").count(), 2, "{svg}");
        assert_eq!(svg.matches("<circle").count(), 5 + 2, "{svg}");
        assert!(svg.len() < 30_000, "{} bytes", svg.len());
    }

    #[test]
    fn scatter_errors_name_the_problem() {
        let none = ScatterChart::new("Nothing", "x", "y").point("a", f64::INFINITY, 0.0);
        let e = none.to_svg_string().unwrap_err().to_string();
        assert!(
            e.contains("Nothing") && e.contains("no point is finite"),
            "{e}"
        );
        assert!(ScatterChart::new("Empty", "x", "y")
            .to_svg_string()
            .is_err());
        let e = words().arrow("man", "queeen").to_svg_string().unwrap_err();
        assert!(
            e.to_string().contains(r#"no point is labelled "queeen""#),
            "{e}"
        );
    }

    #[test]
    fn scatter_without_groups_or_arrows() {
        let c = ScatterChart::new("One", "x", "y").point("only", 3.0, 2.0);
        let svg = c.to_svg_string().unwrap();
        assert!(svg.contains("only") && !svg.contains("<polygon"));
        // All on one horizontal line: the y axis still gets a range.
        let line = ScatterChart::new("Line", "x", "y")
            .point("alpha", 0.0, 1.0)
            .point("bravo", 5.0, 1.0)
            .equal_aspect();
        assert!(line.to_svg_string().unwrap().contains("bravo"));
    }

    #[test]
    fn equal_aspect_gives_both_axes_one_scale() {
        let chart = ScatterChart::new("t", "x", "y")
            .point("a", 0.0, 0.0)
            .point("b", 10.0, 1.0)
            .point("c", 4.0, -1.0);
        let points: Vec<&LabeledPoint> = chart.points.iter().collect();
        for equal in [false, true] {
            let chart = ScatterChart {
                equal_aspect: equal,
                ..chart.clone()
            };
            let (x, y) = chart.ranges(&points, (600, 400), 30);
            let (ux, uy) = ((x.end - x.start) / 600.0, (y.end - y.start) / 400.0);
            assert_eq!(equal, (ux / uy - 1.0).abs() < 1e-12, "{x:?} {y:?}");
            for p in &points {
                // Every dot is inside, and the widest label fits on the right.
                assert!(x.contains(&p.x) && y.contains(&p.y));
                assert!(p.x + 38.0 * ux < x.end, "{x:?}");
            }
        }
    }

    #[test]
    fn scatter_save_writes_the_file() {
        let dir = std::env::temp_dir().join(format!("llm-lessons-scatter-{}", std::process::id()));
        let path = dir.join("words.svg");
        words().save_svg(&path).unwrap();
        assert!(std::fs::read_to_string(&path).unwrap().contains("queen"));
        std::fs::remove_dir_all(&dir).unwrap();
        let e = ScatterChart::new("t", "x", "y")
            .save_svg(&path)
            .unwrap_err();
        assert!(e.to_string().contains("words.svg"), "{e}");
    }

    #[test]
    fn heatmap_draws_a_square_per_value_and_the_labels() {
        let values = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.5, 0.5, 0.0],
            vec![0.2, 0.3, 0.5],
        ];
        let chart = HeatmapChart::new("Attention, head 0", "key", "query", values)
            .row_labels(["a", "b", "<c>"])
            .col_labels(["a", "b", "<c>"]);
        let svg = chart.to_svg_string().unwrap();
        for text in ["Attention, head 0", "key", "query", "&lt;c&gt;"] {
            assert!(svg.contains(text), "{text} missing");
        }
        // 9 cells, 20 bands of the colour bar, and the white background
        assert_eq!(svg.matches("<rect").count(), 9 + 20 + 1, "{svg}");
        // the largest value is the darkest blue, 0 is white
        assert!(svg.contains("#08306B") && svg.contains("#FFFFFF"), "{svg}");
        assert!(svg.len() < 30_000, "{} bytes", svg.len());
    }

    #[test]
    fn heatmap_errors_name_the_problem() {
        let bad = |chart: HeatmapChart| chart.to_svg_string().unwrap_err().to_string();
        let e = bad(HeatmapChart::new("Empty", "x", "y", vec![]));
        assert!(e.contains("Empty") && e.contains("empty"), "{e}");
        let e = bad(HeatmapChart::new(
            "t",
            "x",
            "y",
            vec![vec![1.0, 2.0], vec![3.0]],
        ));
        assert!(e.contains("row 1 has 1 values"), "{e}");
        let e = bad(HeatmapChart::new("t", "x", "y", vec![vec![1.0]]).row_labels(["a", "b"]));
        assert!(e.contains("2 row labels for 1 rows"), "{e}");
        // Constant and non-finite values still draw (the scale gets a width of 1).
        let flat = HeatmapChart::new("t", "x", "y", vec![vec![0.0, f64::NAN]]);
        assert!(flat.to_svg_string().unwrap().contains("#C8C8C8"));
    }

    #[test]
    fn bar_chart_draws_a_bar_per_value_with_its_label_and_value() {
        let chart = BarChart::new("Next token", "probability")
            .bars([(" Paris", 0.5), (" the", 0.25)])
            .bars([("<a>", 0.0)]);
        let svg = chart.to_svg_string().unwrap();
        for text in [
            "Next token",
            "probability",
            " Paris",
            "0.5",
            "0.25",
            "&lt;a&gt;",
        ] {
            assert!(svg.contains(text), "{text} missing");
        }
        // 3 bars and the white background
        assert_eq!(svg.matches("<rect").count(), 3 + 1, "{svg}");
        // the bars' lengths follow the values: 0.25's is half of 0.5's
        let widths: Vec<f64> = svg
            .split("<rect")
            .skip(2)
            .map(|r| {
                r.split("width=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!((widths[1] / widths[0] - 0.5).abs() < 0.01, "{widths:?}");
        assert!(widths[2] <= 1.0, "{widths:?}");
    }

    #[test]
    fn bar_chart_errors_name_the_problem() {
        let bad = |chart: BarChart| chart.to_svg_string().unwrap_err().to_string();
        let e = bad(BarChart::new("Empty", "p"));
        assert!(e.contains("Empty") && e.contains("no bars"), "{e}");
        let e = bad(BarChart::new("t", "p").bars([("a", 1.0), ("b", -0.5)]));
        assert!(e.contains("bar \"b\" has the value -0.5"), "{e}");
        let e = bad(BarChart::new("t", "p").bars([("c", f64::NAN)]));
        assert!(e.contains("bar \"c\""), "{e}");
        // all zero still draws
        assert!(BarChart::new("t", "p")
            .bars([("z", 0.0)])
            .to_svg_string()
            .is_ok());
    }

    /// Bars from an origin other than 0 with a min-max range across each: the lengths are
    /// measured from the origin, each range is a line with two end ticks, and a value below
    /// the origin is an error.
    #[test]
    fn bar_chart_ranges_and_origin() {
        let chart = BarChart::new("Seeds", "nats")
            .starting_at(1.0)
            .ranges([("a", 2.0, 1.9, 2.1), ("b", 1.5, 1.4, 1.6)]);
        let svg = chart.to_svg_string().unwrap();
        assert!(svg.contains("the bars start at 1"), "{svg}");
        let widths: Vec<f64> = svg
            .split("<rect")
            .skip(2)
            .map(|r| {
                r.split("width=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!((widths[1] / widths[0] - 0.5).abs() < 0.02, "{widths:?}");
        // the axis line, and per bar a range and its two ticks
        assert_eq!(svg.matches("<polyline").count(), 1 + 2 * 3, "{svg}");
        let e = BarChart::new("t", "p")
            .starting_at(1.0)
            .bars([("low", 0.5)])
            .to_svg_string()
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 1"), "{e}");
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
        assert_eq!(tick(5.551115123125783e-17), "0");
        assert_eq!(tick(-0.05), "-0.05");
    }
}
