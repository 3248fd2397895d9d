//! Batched lookups: every key asked for while one request's resolvers are being polled
//! becomes one SQL statement.
//!
//! async-graphql's own DataLoader gathers keys for a fixed delay (1 ms by default) on
//! another task: every batched lookup waits that long, and a pass over many resolvers
//! that takes longer than the delay (a busy two-core machine, a debug build) splits the
//! batch. Here the first resolver to ask opens a batch and yields once to the scheduler;
//! Tokio defers that wake-up until the current poll of the request has returned, by
//! which time every sibling resolver polled in that same pass (all of `_entities`, every
//! item of a list) has added its key. The
//! batch then runs once for all of them. Keys that arrive from other requests while a
//! batch is open simply join it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::ApiError;

/// Fetches many values by key in one go.
pub trait BatchFetch: Send + Sync + 'static {
    type Key: Clone + Eq + Hash + Send + Sync + 'static;
    type Value: Clone + Send + Sync + 'static;

    fn fetch(
        &self,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<HashMap<Self::Key, Self::Value>, ApiError>> + Send;
}

type BatchResult<K, V> = Option<Result<Arc<HashMap<K, V>>, ApiError>>;

struct OpenBatch<K, V> {
    keys: Vec<K>,
    result: watch::Receiver<BatchResult<K, V>>,
}

pub struct BatchLoader<F: BatchFetch> {
    fetcher: F,
    open: Mutex<Option<OpenBatch<F::Key, F::Value>>>,
}

impl<F: BatchFetch> BatchLoader<F> {
    pub fn new(fetcher: F) -> Self {
        Self { fetcher, open: Mutex::new(None) }
    }

    /// The value for `key`, or `None` when there is none.
    pub async fn load_one(&self, key: F::Key) -> Result<Option<F::Value>, ApiError> {
        // Decide under the lock, but never hold it across an await.
        let joined = {
            let mut open = self.open.lock().expect("batch lock poisoned");
            match open.as_mut() {
                Some(batch) => {
                    batch.keys.push(key.clone());
                    Ok(batch.result.clone())
                }
                None => {
                    let (sender, result) = watch::channel(None);
                    *open = Some(OpenBatch { keys: vec![key.clone()], result });
                    Err(sender)
                }
            }
        };
        let joined = match joined {
            Ok(receiver) => receiver,
            Err(sender) => return self.lead(sender, key).await,
        };
        let mut result = joined;
        let outcome =
            result.wait_for(Option::is_some).await.map_err(|_| ApiError::internal("a batched lookup was abandoned"))?;
        let values = outcome.clone().expect("waited for a result")?;
        Ok(values.get(&key).cloned())
    }

    async fn lead(
        &self,
        sender: watch::Sender<BatchResult<F::Key, F::Value>>,
        key: F::Key,
    ) -> Result<Option<F::Value>, ApiError> {
        tokio::task::yield_now().await;
        let batch = self.open.lock().expect("batch lock poisoned").take().expect("the leader's batch is open");
        let mut keys = batch.keys;
        dedupe(&mut keys);
        let outcome = self.fetcher.fetch(&keys).await.map(Arc::new);
        let own = outcome.as_ref().map(|values| values.get(&key).cloned()).map_err(Clone::clone);
        // Nobody waiting is fine: the followers' requests may have been cancelled.
        let _ = sender.send(Some(outcome));
        own
    }
}

fn dedupe<K: Eq + Hash + Clone>(keys: &mut Vec<K>) {
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    keys.retain(|key| seen.insert(key.clone()));
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct Squares(Arc<AtomicUsize>);

    impl BatchFetch for Squares {
        type Key = u32;
        type Value = u64;

        async fn fetch(&self, keys: &[u32]) -> Result<HashMap<u32, u64>, ApiError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            // A slow fetch: keys arriving meanwhile start a new batch.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            Ok(keys.iter().filter(|key| **key != 7).map(|&key| (key, u64::from(key) * u64::from(key))).collect())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_in_one_task_become_one_fetch() {
        let fetches = Arc::new(AtomicUsize::new(0));
        let loader = BatchLoader::new(Squares(fetches.clone()));
        let results = futures::future::try_join_all((0..100u32).map(|key| loader.load_one(key))).await.expect("loaded");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        assert_eq!(results[3], Some(9));
        assert_eq!(results[7], None, "a missing key reads as None");
        assert_eq!(results[99], Some(9801));

        // The loader is reusable: the next round is a new batch.
        assert_eq!(loader.load_one(12).await.expect("loaded"), Some(144));
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
    }
}
