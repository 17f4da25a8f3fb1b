//! Progress on the terminal: a bar when stdout is a terminal, a plain line
//! every few seconds otherwise (logs and CI keep readable output).

use std::{
    io::IsTerminal,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain progress lines are printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

/// Bytes and rows moved so far.
pub struct Progress {
    bar: Option<ProgressBar>,
    verb: &'static str,
    total: Option<u64>,
    bytes: u64,
    rows: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Progress towards `total` bytes (unknown: `None`).
    pub fn new(verb: &'static str, total: Option<u64>) -> Self {
        let bar = std::io::stdout().is_terminal().then(|| {
            let (bar, template) = match total {
                Some(total) => (
                    ProgressBar::new(total),
                    "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {msg} {bytes_per_sec}, ETA {eta}",
                ),
                None => (
                    ProgressBar::new_spinner(),
                    "{spinner} [{elapsed_precise}] {bytes} {msg} {bytes_per_sec}",
                ),
            };
            bar.set_draw_target(ProgressDrawTarget::stdout());
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            verb,
            total,
            bytes: 0,
            rows: 0,
            started: now,
            last_line: now,
        }
    }

    /// `bytes` more bytes moved; `rows` rows in all so far.
    pub fn advance(&mut self, bytes: u64, rows: u64) {
        self.bytes += bytes;
        self.rows = rows;
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.bytes);
                bar.set_message(format!("{} rows", self.rows));
            }
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                println!("{}", self.line());
            }
            None => {}
        }
    }

    fn line(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.bytes as f64 / secs;
        let mut line = format!(
            "{} {} rows, {:.1} MB in {:.0} s ({:.1} MB/s, {:.0} rows/s)",
            self.verb,
            self.rows,
            self.bytes as f64 / 1e6,
            secs,
            rate / 1e6,
            self.rows as f64 / secs
        );
        if let Some(total) = self.total.filter(|t| *t > 0) {
            let left = total.saturating_sub(self.bytes) as f64 / rate.max(1.0);
            line.push_str(&format!(
                ", {:.0}% of {:.1} MB, ETA {:.0} s",
                self.bytes as f64 * 100.0 / total as f64,
                total as f64 / 1e6,
                left
            ));
        }
        line
    }

    /// Removes the bar, or prints the last plain line.
    pub fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => println!("{}", self.line()),
        }
    }
}
