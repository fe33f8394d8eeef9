//! A progress counter on stderr for long operations.
//!
//! It is shown only when stderr is a terminal and the output is not JSON, so pipes, files and
//! programs never see it. It redraws at most every [`REDRAW_INTERVAL`] and erases itself when
//! done, leaving stdout untouched.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

/// Minimum time between two redraws.
pub const REDRAW_INTERVAL: Duration = Duration::from_millis(100);

const SPINNER: [char; 4] = ['|', '/', '-', '\\'];

/// A spinner with a counter, e.g. `| 1,234,000 keys (56,000/s)`.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    what: &'static str,
    started: Instant,
    last_draw: Option<Instant>,
    frame: usize,
}

impl Progress {
    /// A counter of `what` (e.g. `"keys"`), drawn only if `wanted` and stderr is a terminal.
    pub fn new(what: &'static str, wanted: bool) -> Self {
        Progress {
            enabled: wanted && std::io::stderr().is_terminal(),
            what,
            started: Instant::now(),
            last_draw: None,
            frame: 0,
        }
    }

    /// Reports that `done` items are finished so far.
    pub fn update(&mut self, done: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|at| now.duration_since(at) < REDRAW_INTERVAL)
        {
            return;
        }
        self.last_draw = Some(now);
        self.frame = (self.frame + 1) % SPINNER.len();
        let line = status_line(SPINNER[self.frame], done, self.what, now - self.started);
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }

    /// Erases the counter.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.take().is_some() {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// The text of one redraw.
fn status_line(spinner: char, done: u64, what: &str, elapsed: Duration) -> String {
    let seconds = elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        (done as f64 / seconds).round() as u64
    } else {
        0
    };
    format!(
        "{spinner} {} {what} ({}/s)",
        super::output::group_digits(done),
        super::output::group_digits(rate)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_line_shows_count_and_rate() {
        assert_eq!(
            status_line('|', 12_000, "keys", Duration::from_secs(2)),
            "| 12,000 keys (6,000/s)"
        );
        assert_eq!(
            status_line('-', 5, "keys", Duration::ZERO),
            "- 5 keys (0/s)"
        );
    }

    #[test]
    fn disabled_when_not_wanted() {
        let mut progress = Progress::new("keys", false);
        progress.update(10);
        assert!(!progress.enabled);
        assert!(progress.last_draw.is_none());
    }
}
