//! `docs/bench.svg`: one panel per benchmark group, a horizontal bar per
//! entry (time per call or per operation, shorter is better), keel's bars
//! in the accent colour, each panel on its own scale.

use std::path::Path;

use plotters::prelude::*;

/// One group: its title and (entry, nanoseconds) bars.
pub(crate) struct Panel {
    pub(crate) title: String,
    pub(crate) bars: Vec<(String, f64)>,
}

const WIDTH: u32 = 960;
const ROW: i32 = 18;
const TITLE: i32 = 26;
const LABEL: i32 = 300;

pub(crate) fn write(path: &Path, panels: &[Panel]) -> Result<(), String> {
    let rows: usize = panels.iter().map(|p| p.bars.len()).sum();
    let height = u32::try_from(panels.len() * 40 + rows * 18 + 20).unwrap_or(u32::MAX);
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    let mut y = 10;
    for panel in panels {
        root.draw(&Text::new(
            format!("{} (ns, shorter is better)", panel.title),
            (10, y),
            ("sans-serif", 15).into_font().style(FontStyle::Bold),
        ))
        .map_err(|e| fail(&e))?;
        y += TITLE;
        let max = panel
            .bars
            .iter()
            .map(|(_, ns)| *ns)
            .fold(0.0_f64, f64::max)
            .max(1e-9);
        let mut bars = panel.bars.clone();
        bars.sort_by(|a, b| a.1.total_cmp(&b.1));
        for (name, ns) in bars {
            let keel = name.starts_with("keel");
            let span = f64::from(i32::try_from(WIDTH).unwrap_or(960) - LABEL - 110);
            #[expect(clippy::cast_possible_truncation, reason = "a pixel length")]
            let length = ((ns / max) * span).round() as i32;
            root.draw(&Text::new(
                name.clone(),
                (10, y + 2),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(|e| fail(&e))?;
            let colour = if keel {
                RGBColor(9, 105, 218)
            } else {
                RGBColor(150, 150, 150)
            };
            root.draw(&Rectangle::new(
                [(LABEL, y + 1), (LABEL + length.max(1), y + ROW - 3)],
                colour.filled(),
            ))
            .map_err(|e| fail(&e))?;
            root.draw(&Text::new(
                format!("{ns:.1}"),
                (LABEL + length.max(1) + 6, y + 2),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(|e| fail(&e))?;
            y += ROW;
        }
        y += 14;
    }
    root.present().map_err(|e| fail(&e))
}
