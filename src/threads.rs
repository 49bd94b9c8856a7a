//! Process-wide compute settings, fixed once: the number of compute threads and the allocator's
//! reuse of freed memory.
//!
//! candle asks for the number of physical cores on every matrix product; without
//! `RAYON_NUM_THREADS` that means parsing `/proc/cpuinfo` thousands of times per training step
//! (measured: 3,819 opens in one small bench run). Setting the variable once makes it a cheap
//! lookup and pins the count for the whole run.

use std::sync::Once;

static INIT: Once = Once::new();

/// candle's elementwise kernels hand work to a pool whose idle workers spin this many times
/// before parking (candle's default: 25,000). On a 2-core machine the spinning worker takes the
/// core that rayon and gemm need next; `trainer bench --pairs 1,4` on SmolLM2, alternating the
/// setting on an idle machine: DPO step at 4 pairs 6.27 / 6.79 s with the default, 5.96 / 5.73 s
/// with 1,000 (sampling unchanged within noise). The user's own value wins.
const SPIN_LIMIT: u32 = 1_000;
const SPIN_LIMIT_VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";

/// candle splits elementwise ops of 64 Ki elements or more over a pool of its own
/// (`CANDLE_NUM_THREADS`, else `RAYON_NUM_THREADS`), the pool its quantized matmuls use too. On
/// 2 cores handing a few hundred microseconds of elementwise work to the pool's second thread
/// costs more than it saves: 200 SFT steps of the built-in model took 20.3–24.1 s with the pool
/// and 16.7–19.6 s without (five alternating runs each, the same losses to the bit); on SmolLM2
/// (`trainer bench --pairs 4,4x512 --batches 8,32`, two runs each) the f32 step and sampling rows
/// moved within their ±10 % noise. Quantized sampling needs the pool: 12.8–14.2 new tokens/s at
/// batch 1 with it, 7.5–7.6 without (`trainer bench --quantized --pairs '' --batches 1,8`).
const SERIAL_ELEMENTWISE_MAX_CORES: usize = 2;
const ELEMENTWISE_THREADS_VAR: &str = "CANDLE_NUM_THREADS";

static POOL: Once = Once::new();

/// Sets `RAYON_NUM_THREADS` to the available parallelism and candle's spin limit to
/// [`SPIN_LIMIT`] unless the user set them, and tunes the allocator (see [`keep_freed_memory`]).
pub fn init() {
    INIT.call_once(|| {
        keep_freed_memory();
        let defaults = [
            (SPIN_LIMIT_VAR, SPIN_LIMIT.to_string()),
            ("RAYON_NUM_THREADS", cores().to_string()),
        ];
        for (var, value) in defaults {
            if std::env::var_os(var).is_none() {
                // SAFETY: called before any compute thread starts; every later read of the
                // variable goes through std::env, which serialises access with this write.
                unsafe { std::env::set_var(var, value) };
            }
        }
    });
}

/// Sizes candle's elementwise pool, before the first op that would start it: one thread on
/// machines of at most [`SERIAL_ELEMENTWISE_MAX_CORES`] cores unless the work will run quantized
/// matmuls (or the user set `CANDLE_NUM_THREADS`); candle's default otherwise. Only the first
/// call of a process counts: the pool, once started, keeps its size.
pub fn size_elementwise_pool(quantized_matmuls: bool) {
    POOL.call_once(|| {
        let user_set = std::env::var_os(ELEMENTWISE_THREADS_VAR).is_some();
        if serial_elementwise(cores(), quantized_matmuls, user_set) {
            // SAFETY: called before any candle op; candle reads the variable through std::env,
            // which serialises access with this write.
            unsafe { std::env::set_var(ELEMENTWISE_THREADS_VAR, "1") };
        }
    });
}

/// Whether candle's elementwise pool should get one thread (see [`size_elementwise_pool`]).
fn serial_elementwise(cores: usize, quantized_matmuls: bool, user_set: bool) -> bool {
    cores <= SERIAL_ELEMENTWISE_MAX_CORES && !quantized_matmuls && !user_set
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Every candle op allocates its output; with glibc's defaults, buffers above 128 KiB are fresh
/// `mmap`s and freed memory at the top of the heap goes back to the kernel, so each training step
/// page-faults its working set in again. Measured on the built-in model (150 SFT steps, 2 threads):
/// 21.2 s with 14.8 s of system time before, 12.4 s with 1.0 s after. Every buffer now comes from
/// the heap (no `mmap`s: above 32 MiB glibc would map each one afresh — SmolLM2's gradients and
/// logits), and freed heap memory is never trimmed but kept for the next step. SmolLM2's DPO step
/// at 4 pairs (`trainer bench --pairs 4 --batches '' --reps 3`, five alternating runs on a 2-core
/// Zen 4): 157.3–174.7 policy tokens/s with buffers above 32 MiB mapped, 176.4–185.4 without,
/// peak RSS 3.37–3.38 → 3.40–3.48 GiB.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::serial_elementwise;

    /// The measured case (2 cores, f32) goes serial; quantized matmuls, a user's own
    /// CANDLE_NUM_THREADS and bigger machines keep candle's pool.
    #[test]
    fn elementwise_ops_run_on_one_thread_only_on_small_machines_without_quantized_matmuls() {
        assert!(serial_elementwise(2, false, false));
        assert!(serial_elementwise(1, false, false));
        assert!(!serial_elementwise(2, true, false));
        assert!(!serial_elementwise(2, false, true));
        assert!(!serial_elementwise(4, false, false));
    }
}
