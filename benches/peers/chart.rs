//! The concurrency curve of `cargo bench --bench peers` drawn as an SVG (plotters): pairs/s
//! against concurrency on a log scale, one line per contender. Included by `peers.rs`.

use std::path::Path;

use plotters::prelude::*;

/// The lines' colours in order (dark grey, blue, red): distinct on white, unlike plotters'
/// palette's third colour (yellow).
const COLORS: [RGBColor; 3] = [
    RGBColor(70, 70, 70),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
];

/// One contender's line: its label and `(concurrency, pairs/s)` points.
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Writes the chart of `lines` to `path` (an SVG file, replaced if it exists).
pub fn draw(path: &Path, title: &str, lines: &[Line]) -> Result<(), Box<dyn std::error::Error>> {
    let all = || lines.iter().flat_map(|l| l.points.iter().copied());
    let x_max = all().map(|(x, _)| x).fold(1.0, f64::max);
    let y_max = all().map(|(_, y)| y).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        // A little room on both sides of the log axis, so the end points are not on the frame.
        .build_cartesian_2d((0.8..x_max * 1.25).log_scale(), 0.0..y_max * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("concurrency (tasks; log scale)")
        .y_desc("lock+unlock pairs/s")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()?;
    for (i, line) in lines.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(2)));
        chart.draw_series(
            line.points
                .iter()
                .map(|&point| Circle::new(point, 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        // Throughput is lowest at c=1, so the upper left is where the lines are not.
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
