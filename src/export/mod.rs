//! Exported recipes: one self-contained TOML file (`trainer recipe --export F.toml`) holding the
//! resolved recipe, the text of every script it uses and the content hashes of its model and data,
//! and the checks that run it as the same experiment (`trainer --config F.toml`).

mod fingerprint;
mod open;
mod table;
mod write;

pub use fingerprint::{Fingerprint, fingerprints};
pub use open::{Exported, load_recipe};
pub use table::{EXPORT_FORMAT, ExportTable, ExportedInput, ExportedScript, read_export_table};
pub use write::{write_export, write_run_export};
