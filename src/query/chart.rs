//! Line charts of per-minute series as SVG, drawn on the server (plotters' SVG backend), so the
//! results page needs no JavaScript and nothing from the network.

use plotters::prelude::*;

/// One line: a name for the legend, and (window start in µs, value) points in time order.
pub struct Series {
    pub name: String,
    pub points: Vec<(i64, f64)>,
}

/// `HH:MM` for an axis label given in minutes since the epoch; with the date when the range
/// spans days.
fn minute_label(minutes: &f64, with_date: bool) -> String {
    let t = chrono::DateTime::from_timestamp((*minutes * 60.0).round() as i64, 0);
    t.map(|t| {
        if with_date {
            t.format("%m-%d %H:%M").to_string()
        } else {
            t.format("%H:%M").to_string()
        }
    })
    .unwrap_or_default()
}

/// A line chart of `series` (at least one point in all), `id` its element id, `y_desc` the
/// unit of the y axis. Times are UTC minutes.
pub fn line_chart(id: &str, y_desc: &str, series: &[Series]) -> Result<String, String> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let minutes = |us: i64| us as f64 / 60e6;
    let lo = points().map(|p| minutes(p.0)).fold(f64::INFINITY, f64::min);
    let mut hi = points()
        .map(|p| minutes(p.0))
        .fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() {
        return Err("nothing to draw".into());
    }
    if hi <= lo {
        hi = lo + 1.0;
    }
    let top = points().map(|p| p.1).fold(0.0, f64::max).max(1e-9) * 1.1;
    let with_date = hi - lo > 24.0 * 60.0;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 300)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| e.to_string();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(6)
            .x_label_formatter(&|m| minute_label(m, with_date))
            .x_desc("window start (UTC)")
            .y_desc(y_desc)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        for (i, s) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let line = s.points.iter().map(|&(us, v)| (minutes(us), v));
            chart
                .draw_series(LineSeries::new(line, color.stroke_width(2)))
                .map_err(e)?
                .label(s.name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(e)?;
        root.present().map_err(e)?;
    }
    // An id and a role, so the page (and its test) can find each chart.
    Ok(svg.replacen("<svg ", &format!("<svg id=\"{id}\" role=\"img\" "), 1))
}
