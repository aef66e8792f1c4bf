//! Line charts drawn with `plotters` into PNG bytes. Labels use a small embedded font (DejaVu
//! Sans cut to Latin-1, see `scripts/make-chart-font`), so charts look the same everywhere and
//! need no system fonts.

use std::io::Cursor;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../../../assets/chart-font.ttf");
const FAMILY: &str = "sans-serif";

/// One named line: `(step, value)` points.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart: an id (file and HTML anchor), a title, the y axis and its lines.
#[derive(Debug, Clone)]
pub struct Chart {
    pub id: &'static str,
    pub title: &'static str,
    pub y_label: &'static str,
    pub series: Vec<Series>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded chart font is a valid TrueType font"));
    });
}

/// `lo..hi` covering `values` with a margin (a flat line gets a band around it).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.1 * lo.abs().max(1e-3)
    };
    (lo - pad, hi + pad)
}

impl Chart {
    /// Whether any series has a point to draw.
    pub fn has_data(&self) -> bool {
        self.series.iter().any(|s| !s.points.is_empty())
    }

    /// The chart as a PNG image of `width`×`height` pixels.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>> {
        register_font();
        let mut rgb = vec![0u8; (width * height * 3) as usize];
        self.draw(&mut rgb, width, height)
            .map_err(|e| anyhow!("drawing the {} chart: {e}", self.id))?;
        let image = image::RgbImage::from_raw(width, height, rgb)
            .ok_or_else(|| anyhow!("chart buffer has the wrong size"))?;
        let mut png = Vec::new();
        image.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)?;
        Ok(png)
    }

    fn draw(
        &self,
        rgb: &mut [u8],
        width: u32,
        height: u32,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let points = || {
            self.series
                .iter()
                .flat_map(|s| s.points.iter())
                .filter(|(x, y)| x.is_finite() && y.is_finite())
        };
        let (x0, x1) = padded_range(points().map(|p| p.0));
        let (y0, y1) = padded_range(points().map(|p| p.1));
        let root = BitMapBackend::with_buffer(rgb, (width, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, (FAMILY, 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(self.y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 15))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()?;
        for (i, series) in self.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = series
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .collect();
            let few = pts.len() <= 40;
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(series.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            if few {
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_a_png_of_the_asked_size_with_its_lines_drawn() {
        let chart = Chart {
            id: "loss",
            title: "Loss",
            y_label: "nats",
            series: vec![Series {
                name: "train".into(),
                points: (1..=50).map(|s| (s as f64, 3.0 / s as f64)).collect(),
            }],
        };
        let png = chart.png(640, 320).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (640, 320));
        // The line's colour appears; a blank white image would fail.
        let line = Palette99::pick(0).to_rgba();
        let drawn = img
            .pixels()
            .filter(|p| p.0 == [line.0, line.1, line.2])
            .count();
        assert!(drawn > 200, "only {drawn} pixels of the line");
    }

    #[test]
    fn ranges_pad_flat_and_empty_data() {
        assert_eq!(padded_range([].into_iter()), (0.0, 1.0));
        let (lo, hi) = padded_range([2.0, 2.0].into_iter());
        assert!(lo < 2.0 && hi > 2.0);
        let (lo, hi) = padded_range([0.0, 10.0].into_iter());
        assert!((lo + 0.5).abs() < 1e-12 && (hi - 10.5).abs() < 1e-12);
    }
}
