//! Progress bars for long stages: drawn on stderr when it is a terminal; otherwise (a cluster
//! job's log, a pipe) the same line goes to the log every [`LOG_EVERY`].

use std::fmt;
use std::io::{self, IsTerminal};
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::style::ProgressTracker;
use indicatif::{
    HumanDuration, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike,
};

/// How often a bar writes a log line when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A progress bar whose ETA counts only the work done in this process: steps restored from a
/// cache go through [`Bar::skip`]. Derefs to the indicatif bar for `inc`, `set_message`, ….
pub struct Bar {
    bar: ProgressBar,
    skipped: Arc<AtomicU64>,
}

impl Deref for Bar {
    type Target = ProgressBar;
    fn deref(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Bar {
    /// Advances by `n` steps that cost nothing (restored from a cache), out of the ETA's rate.
    pub fn skip(&self, n: u64) {
        self.skipped.fetch_add(n, Ordering::Relaxed);
        self.bar.inc(n);
    }
}

/// A bar of `len` steps labelled `label`.
pub fn bar(len: u64, label: &str) -> Bar {
    let target = if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like_with_hz(Box::new(LogLines::default()), 1)
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let skipped = Arc::new(AtomicU64::new(0));
    let eta = LiveEta {
        skipped: skipped.clone(),
        started: Instant::now(),
        last: None,
    };
    let style = ProgressStyle::with_template(
        "{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {live_eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key("live_eta", eta)
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    Bar { bar, skipped }
}

/// The ETA at the mean rate of this process's own steps. indicatif's `{eta}` weighs the last
/// 15 seconds, so a stage that advances one 20-second batch at a time showed ETAs of 40–80 minutes
/// for a 6-minute stage, and cached steps would look like instant progress.
#[derive(Clone)]
struct LiveEta {
    skipped: Arc<AtomicU64>,
    started: Instant,
    /// The last position that moved, and when.
    last: Option<(u64, Instant)>,
}

impl ProgressTracker for LiveEta {
    fn clone_box(&self) -> Box<dyn ProgressTracker> {
        Box::new(self.clone())
    }

    fn tick(&mut self, state: &ProgressState, now: Instant) {
        let pos = state.pos();
        if self.last.is_none_or(|(p, _)| pos > p) {
            self.last = Some((pos, now));
        }
    }

    fn reset(&mut self, _: &ProgressState, now: Instant) {
        self.started = now;
        self.last = None;
        self.skipped.store(0, Ordering::Relaxed);
    }

    fn write(&self, state: &ProgressState, w: &mut dyn fmt::Write) {
        let live = self.last.map(|(pos, at)| Progress {
            len: state.len().unwrap_or(pos),
            pos,
            skipped: self.skipped.load(Ordering::Relaxed),
            busy: at.saturating_duration_since(self.started),
            idle: at.elapsed(),
        });
        let _ = match live.and_then(|p| p.eta()) {
            Some(eta) => write!(w, "{:#}", HumanDuration(eta)),
            None => w.write_str("?"),
        };
    }
}

/// Where a bar stands: `pos` of `len` steps (`skipped` of them cached) reached `busy` after the
/// start, `idle` ago.
struct Progress {
    len: u64,
    pos: u64,
    skipped: u64,
    busy: Duration,
    idle: Duration,
}

impl Progress {
    /// The time left at the mean rate of the live steps, less the time since the last one;
    /// `None` before the first live step.
    fn eta(&self) -> Option<Duration> {
        let live = self.pos.saturating_sub(self.skipped);
        if live == 0 {
            return None;
        }
        let per_step = self.busy.as_secs_f64() / live as f64;
        let left = per_step * self.len.saturating_sub(self.pos) as f64 - self.idle.as_secs_f64();
        Some(Duration::from_secs_f64(left.max(0.0)))
    }
}

/// A "terminal" that turns the bar's redraws into a log line at most every [`LOG_EVERY`].
struct LogLines {
    state: Mutex<(String, Instant)>,
}

impl Default for LogLines {
    fn default() -> Self {
        LogLines {
            state: Mutex::new((String::new(), Instant::now())),
        }
    }
}

impl fmt::Debug for LogLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogLines")
    }
}

impl LogLines {
    fn with<R>(&self, f: impl FnOnce(&mut (String, Instant)) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl TermLike for LogLines {
    fn width(&self) -> u16 {
        120
    }

    fn move_cursor_up(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> io::Result<()> {
        Ok(())
    }

    fn write_line(&self, s: &str) -> io::Result<()> {
        self.write_str(s)
    }

    fn write_str(&self, s: &str) -> io::Result<()> {
        self.with(|(line, _)| line.push_str(s));
        Ok(())
    }

    fn clear_line(&self) -> io::Result<()> {
        self.with(|(line, _)| line.clear());
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        self.with(|(line, last)| {
            let text = line.trim();
            if !text.is_empty() && last.elapsed() >= LOG_EVERY {
                tracing::info!("{text}");
                *last = Instant::now();
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(pos: u64, skipped: u64, busy: u64, idle: u64) -> Option<Duration> {
        let secs = Duration::from_secs;
        Progress {
            len: 512,
            pos,
            skipped,
            busy: secs(busy),
            idle: secs(idle),
        }
        .eta()
    }

    /// The sampling stage of `configs/smollm2-arith.toml`: 32 completions every ~21 s, which
    /// indicatif's own estimate showed as "eta 41m" … "79m" for a stage of about 6 minutes.
    #[test]
    fn a_stage_moving_in_batches_gets_the_eta_of_its_mean_rate() {
        assert_eq!(at(32, 0, 20, 0), Some(Duration::from_secs(300)));
        assert_eq!(at(32, 0, 20, 15), Some(Duration::from_secs(285)));
        assert_eq!(at(512, 0, 320, 0), Some(Duration::ZERO));
        assert_eq!(at(0, 0, 0, 5), None, "no rate before the first step");
    }

    #[test]
    fn steps_restored_from_a_cache_do_not_count_as_progress() {
        assert_eq!(at(256, 256, 0, 3), None);
        assert_eq!(at(288, 256, 20, 0), Some(Duration::from_secs(140)));
    }
}
