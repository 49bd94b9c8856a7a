//! Progress bars for long stages: drawn on stderr when it is a terminal; otherwise (a cluster
//! job's log, a pipe) the same line goes to the log every [`LOG_EVERY`].

use std::fmt;
use std::io::{self, IsTerminal};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// How often a bar writes a log line when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// A bar of `len` steps labelled `label`.
pub fn bar(len: u64, label: &str) -> ProgressBar {
    let target = if io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::term_like_with_hz(Box::new(LogLines::default()), 1)
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    let style = ProgressStyle::with_template(
        "{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(label.to_string());
    pb
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
