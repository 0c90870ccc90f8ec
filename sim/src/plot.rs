//! Plots of simulation results (SVG, through plotters).

use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

/// Draws the propagation CDF (`(ms, share of nodes)` points) to an SVG file.
pub fn propagation_cdf(path: &Path, points: &[(f64, f64)], title: &str) -> anyhow::Result<()> {
    let max_ms = points.iter().map(|(ms, _)| *ms).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..max_ms * 1.05, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_desc("milliseconds after publish")
            .y_desc("share of nodes with the manifest")
            .draw()?;
        let mut series = vec![(0.0, 0.0)];
        series.extend(points.iter().copied());
        chart.draw_series(LineSeries::new(series, &BLUE))?;
        root.present()?;
        Ok(())
    };
    draw()
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("cannot write the plot {}", path.display()))
}
