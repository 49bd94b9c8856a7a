//! Where a data source lives: a file as given, or built-in problems generated into the cache
//! first.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::arith::{self, Split};
use crate::error::user_error;
use crate::recipe::{DataFormat, DataSource, Limit, Recipe};
use crate::rng;
use crate::store::write_atomic;

/// The file behind a data source; built-in data is generated into the cache first.
pub fn local_path(source: &DataSource, key: &str, recipe: &Recipe) -> Result<PathBuf> {
    let name = match source {
        DataSource::File(p) if p.is_file() => return Ok(p.clone()),
        DataSource::File(p) => {
            return Err(user_error(format!(
                "{key} = \"{}\": {}",
                p.display(),
                crate::error::not_a_file(p)
            )));
        }
        DataSource::Builtin(name) => name.as_str(),
    };
    let count_of = |limit: Limit, default: usize| match limit {
        Limit::First(n) => n,
        Limit::All => default,
    };
    let (split, count) = match name {
        "arith" => (Split::Train, count_of(recipe.data.limit, 4096)),
        "arith-eval" => (Split::Eval, count_of(recipe.eval.limit, 2000)),
        other => {
            return Err(user_error(format!(
                "{key} = \"builtin:{other}\": unknown built-in data (arith, arith-eval)"
            )));
        }
    };
    if recipe.data.format != DataFormat::Gsm8k {
        return Err(user_error(format!(
            "{key} = \"builtin:{name}\" needs data.format = \"gsm8k\""
        )));
    }
    let seed = recipe.sft.data_seed;
    let stream = match split {
        Split::Train => rng::derive(seed, &[rng::hash_str("questions")]),
        Split::Eval => seed,
    };
    let path = recipe.run.cache.join("data").join(format!(
        "{name}-v{}-{seed}-{count}.jsonl",
        arith::GENERATOR_VERSION
    ));
    if !path.is_file() {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let text = arith::to_jsonl(&arith::generate(count, split, stream));
        write_atomic(&path, text.as_bytes())?;
    }
    Ok(path)
}
