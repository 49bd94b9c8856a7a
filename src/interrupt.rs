//! Ctrl-C and SIGTERM: the handler only raises a flag; the stages look at it between items
//! (a sampling batch, a reference batch, a training step, an eval batch), save what resuming needs
//! and stop with [`Interrupted`], which `main` turns into one line and exit code 130. A second
//! signal takes the default action (the process ends at once; every file is still whole).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};

static REQUESTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_signal: libc::c_int) {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT and SIGTERM to the flag (once per signal; the handler then resets to the default).
pub fn install() -> Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `sigaction` is given a zeroed struct with a handler that only stores to an
        // atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "installing the signal handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Whether Ctrl-C or SIGTERM has arrived.
pub fn requested() -> bool {
    REQUESTED.load(Ordering::SeqCst)
}

/// A run stopped by a signal at an item boundary, with everything before it saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interrupted {
    /// The stage, e.g. `train`.
    pub stage: String,
    /// The item that was about to start, e.g. `step 4 of 12`.
    pub item: String,
}

impl fmt::Display for Interrupted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "interrupted at {} {}; rerun the same command to resume",
            self.stage, self.item
        )
    }
}

impl std::error::Error for Interrupted {}

/// The error that stops `stage` before `item`.
pub fn interrupted(stage: &str, item: String) -> anyhow::Error {
    anyhow::Error::new(Interrupted {
        stage: stage.to_string(),
        item,
    })
}

/// Stops with [`Interrupted`] when a signal has arrived; `item` names what would start next.
pub fn check(stage: &str, item: impl FnOnce() -> String) -> Result<()> {
    if requested() {
        return Err(interrupted(stage, item()));
    }
    Ok(())
}

/// The interruption anywhere in `err`'s chain, if that is what stopped the run.
pub fn find(err: &anyhow::Error) -> Option<&Interrupted> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Interrupted>())
}
