//! What the trainer keeps on disk and how: atomic writes, checksummed append-only logs, content
//! hashes and keys, and the resumable batch loop that fills a keyed cache.

mod atomic;
mod batches;
mod hash;
mod jsonl_log;
mod tensorboard;

pub use atomic::{
    check_output_file, remove_dir_atomic, temp_sibling, write_atomic, write_atomic_with,
    write_dir_atomic, write_json_atomic,
};
pub use batches::{Batches, Resumable};
pub use hash::{Hasher, content_key, hex, sha256_bytes, sha256_file, sha256_path, trainer_version};
pub use jsonl_log::{JsonlLog, read_log};
pub use tensorboard::{EVENT_FILE, append_scalars};
