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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Tells this batch from a later one, so an abandoned leader clears only its own.
    generation: u64,
    keys: Vec<K>,
    result: watch::Receiver<BatchResult<K, V>>,
}

pub struct BatchLoader<F: BatchFetch> {
    fetcher: F,
    open: Mutex<Option<OpenBatch<F::Key, F::Value>>>,
    generations: AtomicU64,
}

impl<F: BatchFetch> BatchLoader<F> {
    pub fn new(fetcher: F) -> Self {
        Self { fetcher, open: Mutex::new(None), generations: AtomicU64::new(0) }
    }

    /// The value for `key`, or `None` when there is none.
    ///
    /// Whatever happens to the request that opened a batch (a client hanging up, a
    /// timeout) the batch either completes or is cleared: a leader dropped before its
    /// batch ran takes the batch with it, and the followers that had joined it, seeing
    /// their leader gone, simply ask again.
    pub async fn load_one(&self, key: F::Key) -> Result<Option<F::Value>, ApiError> {
        loop {
            // Decide under the lock, but never hold it across an await.
            let joined = {
                let mut open = self.lock();
                match open.as_mut() {
                    Some(batch) => {
                        batch.keys.push(key.clone());
                        Ok(batch.result.clone())
                    }
                    None => {
                        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
                        let (sender, result) = watch::channel(None);
                        *open = Some(OpenBatch { generation, keys: vec![key.clone()], result });
                        Err((sender, generation))
                    }
                }
            };
            let mut result = match joined {
                Ok(receiver) => receiver,
                Err((sender, generation)) => return self.lead(sender, generation, key).await,
            };
            match result.wait_for(Option::is_some).await {
                Ok(outcome) => {
                    let values = outcome.clone().expect("waited for a result")?;
                    return Ok(values.get(&key).cloned());
                }
                // The leader was dropped before its batch produced anything: try again,
                // in a new batch.
                Err(_) => continue,
            }
        }
    }

    async fn lead(
        &self,
        sender: watch::Sender<BatchResult<F::Key, F::Value>>,
        generation: u64,
        key: F::Key,
    ) -> Result<Option<F::Value>, ApiError> {
        let mut abandon = AbandonGuard { open: &self.open, generation, armed: true };
        tokio::task::yield_now().await;
        // Only a batch's leader (or, once the leader is gone, its guard) removes it, so
        // the open batch is this one.
        let batch = self.lock().take().expect("the leader's batch is open");
        debug_assert_eq!(batch.generation, generation);
        abandon.armed = false;
        let mut keys = batch.keys;
        dedupe(&mut keys);
        let outcome = self.fetcher.fetch(&keys).await.map(Arc::new);
        let own = outcome.as_ref().map(|values| values.get(&key).cloned()).map_err(Clone::clone);
        // Nobody waiting is fine: the followers' requests may have been cancelled.
        let _ = sender.send(Some(outcome));
        own
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<OpenBatch<F::Key, F::Value>>> {
        // The lock guards no invariant a panic could break halfway.
        self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Clears its leader's open batch if the leader is dropped before taking it.
struct AbandonGuard<'a, K, V> {
    open: &'a Mutex<Option<OpenBatch<K, V>>>,
    generation: u64,
    armed: bool,
}

impl<K, V> Drop for AbandonGuard<'_, K, V> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.as_ref().is_some_and(|batch| batch.generation == self.generation) {
            *open = None;
        }
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

    /// A fetch that waits until the test lets it finish.
    struct Gated {
        gate: Arc<tokio::sync::Semaphore>,
        fetches: Arc<AtomicUsize>,
    }

    impl BatchFetch for Gated {
        type Key = u32;
        type Value = u32;

        async fn fetch(&self, keys: &[u32]) -> Result<HashMap<u32, u32>, ApiError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            let _permit = self.gate.acquire().await.expect("gate open");
            Ok(keys.iter().map(|&key| (key, key + 1)).collect())
        }
    }

    fn gated() -> (BatchLoader<Gated>, Arc<tokio::sync::Semaphore>, Arc<AtomicUsize>) {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let fetches = Arc::new(AtomicUsize::new(0));
        (BatchLoader::new(Gated { gate: gate.clone(), fetches: fetches.clone() }), gate, fetches)
    }

    /// Polls a future once, as the executor would before the request is cancelled.
    async fn poll_once<T>(future: &mut std::pin::Pin<Box<impl Future<Output = T>>>) -> Option<T> {
        match futures::poll!(future.as_mut()) {
            std::task::Poll::Ready(value) => Some(value),
            std::task::Poll::Pending => None,
        }
    }

    #[tokio::test]
    async fn a_leader_cancelled_while_it_gathers_keys_breaks_nothing() {
        let (loader, gate, _) = gated();
        gate.add_permits(100);
        let mut leader = Box::pin(loader.load_one(1));
        let mut follower = Box::pin(loader.load_one(2));
        assert!(poll_once(&mut leader).await.is_none(), "the leader yields to gather keys");
        assert!(poll_once(&mut follower).await.is_none(), "the follower joins the open batch");
        // The leader's request goes away at its first await point.
        drop(leader);
        assert_eq!(follower.await.expect("the follower asks again"), Some(3));
        // And the loader is as good as new for later requests.
        assert_eq!(loader.load_one(7).await.expect("loaded"), Some(8));
    }

    #[tokio::test]
    async fn a_leader_cancelled_while_it_fetches_breaks_nothing() {
        let (loader, gate, fetches) = gated();
        let mut leader = Box::pin(loader.load_one(1));
        let mut follower = Box::pin(loader.load_one(2));
        assert!(poll_once(&mut leader).await.is_none());
        assert!(poll_once(&mut follower).await.is_none());
        assert!(poll_once(&mut leader).await.is_none(), "the leader is now inside the fetch");
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
        drop(leader);
        gate.add_permits(100);
        assert_eq!(follower.await.expect("the follower asks again"), Some(3));
        assert_eq!(loader.load_one(7).await.expect("loaded"), Some(8));
    }

    #[tokio::test]
    async fn leaders_cancelled_at_every_await_point_under_concurrency_break_nothing() {
        let (loader, gate, _) = gated();
        gate.add_permits(10_000);
        let loader = Arc::new(loader);
        for round in 0..50u32 {
            // Some requests time out at once, some after a little while, some never.
            let requests = (0..20u32).map(|index| {
                let loader = loader.clone();
                async move {
                    let limit = std::time::Duration::from_micros(u64::from((index * 7 + round) % 5) * 50);
                    let lookup = loader.load_one(index);
                    if index % 3 == 0 { Some(lookup.await) } else { tokio::time::timeout(limit, lookup).await.ok() }
                }
            });
            for (index, outcome) in futures::future::join_all(requests).await.into_iter().enumerate() {
                if let Some(outcome) = outcome {
                    assert_eq!(outcome.expect("no batch is ever abandoned"), Some(index as u32 + 1));
                }
            }
        }
        assert_eq!(loader.load_one(99).await.expect("loaded after all that"), Some(100));
    }
}
