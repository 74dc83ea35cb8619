//! The live terminal dashboard, when stdout is a terminal: throughput,
//! latency, the pool, the breaker, retries and sessions, redrawn every
//! second on the alternate screen (the summary prints after it closes).

use std::io::{self, Stdout};

use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Style, Stylize as _};
use ratatui::text::Line;
use ratatui::widgets::{Block, Gauge, Paragraph, Sparkline};

use super::report::Sample;

pub(crate) struct Dashboard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

/// What the header says.
pub(crate) struct Header<'a> {
    pub(crate) url: &'a str,
    pub(crate) address: &'a str,
    pub(crate) clients: u16,
    pub(crate) duration_s: u64,
    pub(crate) max_size: usize,
}

impl Dashboard {
    /// Switches to the alternate screen (left again on drop).
    pub(crate) fn start() -> io::Result<Self> {
        let mut stdout = io::stdout();
        execute!(stdout, terminal::EnterAlternateScreen, cursor::Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        Ok(Self { terminal })
    }

    pub(crate) fn draw(&mut self, header: &Header<'_>, samples: &[Sample]) -> io::Result<()> {
        let Some(now) = samples.last() else {
            return Ok(());
        };
        let ops: Vec<u64> = samples.iter().map(|s| s.ops_per_s).collect();
        let p99: Vec<u64> = samples
            .iter()
            .map(|s| u64::try_from(s.p99.as_micros()).unwrap_or(u64::MAX))
            .collect();
        self.terminal.draw(|frame| {
            let [top, throughput, latency, pool, state] = Layout::vertical([
                Constraint::Length(3),
                Constraint::Length(7),
                Constraint::Length(7),
                Constraint::Length(3),
                Constraint::Min(4),
            ])
            .areas(frame.area());
            let title = format!(
                " keel demo  {}  {} clients  t={}s/{}s  http://{}/  Ctrl-C stops ",
                header.url, header.clients, now.second, header.duration_s, header.address
            );
            frame.render_widget(
                Paragraph::new(if now.chaos {
                    Line::from("faults injected now").red().bold()
                } else {
                    Line::from("no faults injected").green()
                })
                .block(Block::bordered().title(title)),
                top,
            );
            frame.render_widget(
                Sparkline::default()
                    .block(Block::bordered().title(format!(
                        " throughput {} ops/s, failed {} /s ",
                        now.ops_per_s, now.failed_per_s
                    )))
                    .data(&ops)
                    .style(Style::default().fg(Color::Cyan)),
                throughput,
            );
            frame.render_widget(
                Sparkline::default()
                    .block(Block::bordered().title(format!(
                        " latency p50 {:.2} ms  p99 {:.2} ms (p99 drawn) ",
                        now.p50.as_secs_f64() * 1e3,
                        now.p99.as_secs_f64() * 1e3
                    )))
                    .data(&p99)
                    .style(Style::default().fg(Color::Yellow)),
                latency,
            );
            #[expect(clippy::cast_precision_loss, reason = "a share for display")]
            let used = now.in_use as f64 / header.max_size.max(1) as f64;
            frame.render_widget(
                Gauge::default()
                    .block(Block::bordered().title(format!(
                        " pool in use {}  idle {}  waiting {}  (max {}) ",
                        now.in_use, now.idle, now.waiting, header.max_size
                    )))
                    .ratio(used.clamp(0.0, 1.0))
                    .gauge_style(Style::default().fg(Color::Green)),
                pool,
            );
            let breaker = match now.breaker {
                "closed" | "disabled" => Line::from(format!("breaker {}", now.breaker)).green(),
                "half_open" => Line::from(format!("breaker {}", now.breaker)).yellow(),
                _ => Line::from(format!("breaker {}", now.breaker)).red().bold(),
            };
            frame.render_widget(
                Paragraph::new(vec![
                    breaker,
                    Line::from(format!("retries {}", now.retries)),
                    Line::from(format!("sessions {}", now.sessions)),
                ])
                .block(Block::bordered().title(" resilience ")),
                state,
            );
        })?;
        Ok(())
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = execute!(
            self.terminal.backend_mut(),
            cursor::Show,
            terminal::LeaveAlternateScreen
        );
    }
}
