//! The number of compute threads, fixed once per process.
//!
//! candle asks for the number of physical cores on every matrix product; without
//! `RAYON_NUM_THREADS` that means parsing `/proc/cpuinfo` thousands of times per training step
//! (measured: 3,819 opens in one small bench run). Setting the variable once makes it a cheap
//! lookup and pins the count for the whole run.

use std::sync::Once;

static INIT: Once = Once::new();

/// Sets `RAYON_NUM_THREADS` to the available parallelism unless the user set it.
pub fn init() {
    INIT.call_once(|| {
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            let n = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            // SAFETY: called before any compute thread starts; every later read of the variable goes
            // through std::env, which serialises access with this write.
            unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
        }
    });
}
