//! Progress of a long command: a bar on a terminal, a log line every few
//! seconds otherwise (CI logs, redirected output).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LOG_EVERY: Duration = Duration::from_secs(5);

pub(crate) struct Progress {
    label: &'static str,
    done: AtomicU64,
    bar: Option<ProgressBar>,
    last_log: Mutex<Instant>,
}

impl Progress {
    pub(crate) fn new(label: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:40}] {human_pos}/{human_len} cells ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message(label);
            bar
        });
        Self {
            label,
            done: AtomicU64::new(0),
            bar,
            last_log: Mutex::new(Instant::now()),
        }
    }

    /// `cells` more are done, of `total`.
    pub(crate) fn advance(&self, cells: u64, total: u64) {
        let done = self.done.fetch_add(cells, Ordering::Relaxed) + cells;
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
            }
            None => self.log_now_and_then(done, total),
        }
    }

    fn log_now_and_then(&self, done: u64, total: u64) {
        // A panic elsewhere while logging leaves a usable instant behind.
        let mut last = self.last_log.lock().unwrap_or_else(PoisonError::into_inner);
        if last.elapsed() >= LOG_EVERY {
            *last = Instant::now();
            let percent = 100.0 * done as f64 / total.max(1) as f64;
            tracing::info!("{}: {done}/{total} cells ({percent:.0}%)", self.label);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
