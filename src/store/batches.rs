//! The resumable batch loop, written once: a keyed cache of finished items backed by a checksummed
//! log, and the loop that cuts a list of work into fixed batches, skips the batches the cache
//! already holds, and keeps every finished batch before starting the next. Sampling (local and on
//! a server), the reference pass and the evals all go through it, so a killed stage loses at most
//! the batch in flight and a rerun forms the same batches as an uninterrupted run.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;

use anyhow::Result;
use indicatif::ProgressBar;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::jsonl_log::JsonlLog;

/// Finished items by key, and the log they are appended to (none for an uncached run).
pub struct Resumable<K, T> {
    done: HashMap<K, T>,
    log: Option<JsonlLog>,
    key: fn(&T) -> K,
}

impl<K: Eq + Hash + Clone, T: Serialize + DeserializeOwned> Resumable<K, T> {
    /// Opens the cache at `path` (created when absent; a torn tail is cut off), or an in-memory
    /// one when `path` is `None`. `key` names an item; the first record of a key wins.
    pub fn open(path: Option<&Path>, key: fn(&T) -> K) -> Result<Self> {
        let (old, log) = match path {
            Some(path) => {
                let (old, log) = JsonlLog::open::<T>(path)?;
                (old, Some(log))
            }
            None => (Vec::new(), None),
        };
        let mut done = HashMap::with_capacity(old.len());
        for item in old {
            done.entry(key(&item)).or_insert(item);
        }
        Ok(Self { done, log, key })
    }

    /// Whether the item `key` is finished.
    pub fn has(&self, key: &K) -> bool {
        self.done.contains_key(key)
    }

    /// How many items are finished.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.done.is_empty()
    }

    /// Keeps a finished item (appended to the log, buffered until [`flush`](Self::flush)); an
    /// item whose key is already there is dropped. Returns whether it was new.
    pub fn keep(&mut self, item: T) -> Result<bool> {
        let key = (self.key)(&item);
        if self.done.contains_key(&key) {
            return Ok(false);
        }
        if let Some(log) = self.log.as_mut() {
            log.append(&item)?;
        }
        self.done.insert(key, item);
        Ok(true)
    }

    /// Writes the kept items to the disk.
    pub fn flush(&mut self) -> Result<()> {
        match self.log.as_mut() {
            Some(log) => log.flush(),
            None => Ok(()),
        }
    }

    /// Takes the finished item `key` out of the cache.
    pub fn take(&mut self, key: &K) -> Option<T> {
        self.done.remove(key)
    }

    /// Runs `batches.work` on every batch of `items` that holds an unfinished item and keeps what
    /// it returns, flushing after each batch. Batches are cut at fixed multiples of
    /// `batches.size` over the whole list, whatever the cache holds. Stops between batches after
    /// Ctrl-C or SIGTERM. Returns the number of new items.
    pub fn fill<I>(
        &mut self,
        items: &[I],
        key: impl Fn(&I) -> K,
        batches: Batches<'_>,
        mut work: impl FnMut(&[I], &ProgressBar) -> Result<Vec<T>>,
    ) -> Result<usize> {
        let size = batches.size.max(1);
        let bar = crate::progress::bar(items.len() as u64, batches.label);
        let count = items.len().div_ceil(size);
        let mut new = 0;
        for (b, chunk) in items.chunks(size).enumerate() {
            if chunk.iter().all(|item| self.has(&key(item))) {
                bar.skip(chunk.len() as u64);
                continue;
            }
            crate::interrupt::check(batches.label, || format!("batch {} of {count}", b + 1))?;
            for item in work(chunk, &bar)? {
                new += usize::from(self.keep(item)?);
            }
            self.flush()?;
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(new)
    }
}

/// How [`Resumable::fill`] cuts its work: items per batch, and the stage name its progress bar
/// and interruption message show.
#[derive(Debug, Clone, Copy)]
pub struct Batches<'a> {
    pub size: usize,
    pub label: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(item: &(u32, String)) -> u32 {
        item.0
    }

    #[test]
    fn a_rerun_works_only_on_unfinished_batches_cut_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.jsonl");
        let items: Vec<u32> = (0..7).collect();
        let batches = Batches {
            size: 3,
            label: "test",
        };
        {
            let mut cache = Resumable::open(Some(&path), key).unwrap();
            // The first batch finishes, then the work fails in the second.
            let mut calls = 0;
            let err = cache.fill(
                &items,
                |&i| i,
                batches,
                |chunk, _| {
                    calls += 1;
                    anyhow::ensure!(calls == 1, "killed");
                    Ok(chunk.iter().map(|&i| (i, format!("v{i}"))).collect())
                },
            );
            assert!(err.is_err());
        }
        let mut cache = Resumable::open(Some(&path), key).unwrap();
        assert_eq!(cache.len(), 3);
        let mut seen = Vec::new();
        let new = cache
            .fill(
                &items,
                |&i| i,
                batches,
                |chunk, _| {
                    seen.push(chunk.to_vec());
                    Ok(chunk.iter().map(|&i| (i, format!("v{i}"))).collect())
                },
            )
            .unwrap();
        assert_eq!(seen, vec![vec![3, 4, 5], vec![6]]);
        assert_eq!(new, 4);
        assert_eq!(cache.take(&6), Some((6, "v6".to_string())));
    }

    #[test]
    fn an_item_already_kept_is_not_kept_twice() {
        let mut cache: Resumable<u32, (u32, String)> = Resumable::open(None, key).unwrap();
        assert!(cache.keep((1, "a".into())).unwrap());
        assert!(!cache.keep((1, "b".into())).unwrap());
        assert_eq!(cache.take(&1), Some((1, "a".to_string())));
    }
}
