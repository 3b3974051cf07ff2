//! Loss and accuracy curves as a PNG (plotters' bitmap backend, pure Rust).
//!
//! Text needs a TrueType font: `$PERCEIVER_FONT` or a common system font (DejaVu Sans,
//! Liberation Sans, Arial) is loaded at run time. Without one the curves are drawn without
//! labels, so the plot never needs fontconfig or freetype.

use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

/// One epoch's point of the curves.
#[derive(Clone, Copy, Debug)]
pub struct EpochPoint {
    /// Epoch (1-based).
    pub epoch: f64,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy.
    pub train_acc: f64,
    /// Test loss (NaN without a test split).
    pub test_loss: f64,
    /// Test accuracy (NaN without a test split).
    pub test_acc: f64,
}

const FONT_FILES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font under the name `sans-serif` once; true when one was found.
fn font() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let env = std::env::var("PERCEIVER_FONT").ok();
        let candidates = env
            .iter()
            .map(String::as_str)
            .chain(FONT_FILES.iter().copied());
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws `points` (and the per-step training losses `steps`, as `(epoch fraction, loss)`) into
/// `path` (PNG, 1000x420: loss on the left, accuracy on the right).
pub fn write_curves(
    path: &Path,
    title: &str,
    points: &[EpochPoint],
    steps: &[(f64, f64)],
) -> DrawResult {
    let text = font();
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = if text {
        root.titled(title, ("sans-serif", 18))?
    } else {
        root
    };
    let (left, right) = root.split_horizontally(500);
    let max_epoch = points
        .iter()
        .map(|p| p.epoch)
        .chain(steps.iter().map(|s| s.0))
        .fold(1.0f64, f64::max);
    let max_loss = points
        .iter()
        .flat_map(|p| [p.train_loss, p.test_loss])
        .chain(steps.iter().map(|s| s.1))
        .filter(|v| v.is_finite())
        .fold(0.1f64, f64::max)
        * 1.05;
    let lo = points
        .iter()
        .flat_map(|p| [p.train_acc, p.test_acc])
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::min)
        .clamp(0.0, 0.9);
    let lo = (lo * 10.0).floor() / 10.0;
    let loss = Panel {
        caption: "loss",
        y: 0.0..max_loss,
        curves: |p| [p.train_loss, p.test_loss],
        steps,
        legend: None,
    };
    let accuracy = Panel {
        caption: "accuracy",
        y: lo..1.0,
        curves: |p| [p.train_acc, p.test_acc],
        steps: &[],
        legend: Some(SeriesLabelPosition::LowerRight),
    };
    draw_panel(&left, text, max_epoch, points, loss)?;
    draw_panel(&right, text, max_epoch, points, accuracy)?;
    root.present()?;
    Ok(())
}

/// One panel of the curves.
struct Panel<'a> {
    /// Its title.
    caption: &'a str,
    /// The range of the vertical axis.
    y: Range<f64>,
    /// The training and the test value of an epoch.
    curves: fn(&EpochPoint) -> [f64; 2],
    /// Per-step values `(epoch fraction, value)` drawn lightly behind the curves.
    steps: &'a [(f64, f64)],
    /// Where the legend goes (`None`: plotters' default place).
    legend: Option<SeriesLabelPosition>,
}

/// Draws `panel` into `area`: the training curve, the test curve with its points marked, and
/// (with `text`) the labels and legend; the horizontal axis runs over epochs `0..x_max`.
fn draw_panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    text: bool,
    x_max: f64,
    points: &[EpochPoint],
    panel: Panel<'_>,
) -> DrawResult {
    let mut b = ChartBuilder::on(area);
    b.margin(10);
    if text {
        b.caption(panel.caption, ("sans-serif", 16))
            .x_label_area_size(30)
            .y_label_area_size(45);
    }
    let mut chart = b.build_cartesian_2d(0f64..x_max, panel.y)?;
    let mut mesh = chart.configure_mesh();
    if text {
        mesh.x_desc("epoch");
    } else {
        mesh.disable_x_axis().disable_y_axis();
    }
    mesh.draw()?;
    let light = RGBColor(150, 170, 230);
    // Non-finite values (a run without a test split has NaN test values) are left out.
    let finite = |&(x, y): &(f64, f64)| x.is_finite() && y.is_finite();
    chart.draw_series(LineSeries::new(
        panel.steps.iter().copied().filter(finite),
        &light,
    ))?;
    for (which, colour, label) in [(0, BLUE, "train"), (1, RED, "test")] {
        let series = chart.draw_series(LineSeries::new(
            points
                .iter()
                .map(|p| (p.epoch, (panel.curves)(p)[which]))
                .filter(finite),
            colour.stroke_width(2),
        ))?;
        if text {
            series
                .label(label)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 15, y)], colour));
        }
    }
    chart.draw_series(
        points
            .iter()
            .map(|p| (p.epoch, (panel.curves)(p)[1]))
            .filter(finite)
            .map(|xy| Circle::new(xy, 3, RED.filled())),
    )?;
    if text {
        let mut labels = chart.configure_series_labels();
        if let Some(position) = panel.legend {
            labels.position(position);
        }
        labels
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .label_font(("sans-serif", 13))
            .draw()?;
    }
    Ok(())
}
