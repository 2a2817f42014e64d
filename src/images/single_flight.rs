//! Shares one piece of async work among every caller that asks for the same key
//! while it runs: identical concurrent pulls download each layer once.
//!
//! The work runs in its own task, so a caller that goes away does not cancel it
//! for the others; when the last waiting caller goes away, the work is aborted.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio::task::AbortHandle;
use tracing::Instrument;

type Outcome<T, E> = Option<Result<T, Arc<E>>>;

struct Flight<T, E> {
    outcome: watch::Receiver<Outcome<T, E>>,
    waiters: usize,
    abort: AbortHandle,
}

pub struct SingleFlight<K, T, E> {
    flights: Arc<Mutex<HashMap<K, Flight<T, E>>>>,
}

impl<K, T, E> Default for SingleFlight<K, T, E> {
    fn default() -> Self {
        SingleFlight { flights: Arc::new(Mutex::new(HashMap::new())) }
    }
}

/// Leaves a flight when the waiting caller is dropped, aborting it if it was the last.
struct Waiter<K: Eq + Hash + Clone, T, E> {
    flights: Arc<Mutex<HashMap<K, Flight<T, E>>>>,
    key: K,
    done: bool,
}

impl<K: Eq + Hash + Clone, T, E> Drop for Waiter<K, T, E> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = flights.get_mut(&self.key) {
            flight.waiters -= 1;
            if flight.waiters == 0 {
                flight.abort.abort();
                flights.remove(&self.key);
            }
        }
    }
}

/// The error a waiter gets when its flight's task died without an outcome.
pub trait FlightLost {
    fn lost() -> Self;
}

impl<K, T, E> SingleFlight<K, T, E>
where
    K: Eq + Hash + Clone + Send + 'static,
    T: Clone + Send + Sync + 'static,
    E: FlightLost + Send + Sync + 'static,
{
    /// Runs `work` unless a flight for `key` is already running, then waits for
    /// its outcome. `work` is only called (and spawned) when a new flight starts.
    pub async fn run<F, Fut>(&self, key: K, work: F) -> Result<T, Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let mut outcome = {
            let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
            match flights.get_mut(&key) {
                Some(flight) => {
                    flight.waiters += 1;
                    // Says when calls were merged (and lets tests wait for it).
                    tracing::debug!(waiters = flight.waiters, "joining the flight already under way");
                    flight.outcome.clone()
                }
                None => {
                    let (tx, rx) = watch::channel(None);
                    // In the first caller's span: the pull's steps count under its RPC.
                    let future = work().in_current_span();
                    let registry = self.flights.clone();
                    let task_key = key.clone();
                    let task = tokio::spawn(async move {
                        let result = future.await.map_err(Arc::new);
                        // Remove the flight before publishing, so a caller that
                        // arrives after completion starts afresh rather than
                        // joining a finished flight.
                        registry.lock().unwrap_or_else(|p| p.into_inner()).remove(&task_key);
                        let _ = tx.send(Some(result));
                    });
                    flights.insert(key.clone(), Flight { outcome: rx.clone(), waiters: 1, abort: task.abort_handle() });
                    rx
                }
            }
        };
        let mut waiter = Waiter { flights: self.flights.clone(), key, done: false };
        let result = loop {
            if let Some(result) = outcome.borrow_and_update().clone() {
                break result;
            }
            if outcome.changed().await.is_err() {
                // The task ended without publishing: it panicked (it is only
                // aborted when no waiter is left, and we are still here).
                waiter.done = true;
                return Err(Arc::new(E::lost()));
            }
        };
        waiter.done = true;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Debug, PartialEq)]
    struct Lost;
    impl FlightLost for Lost {
        fn lost() -> Self {
            Lost
        }
    }

    // The tests run on paused time: a sleep ends only once every other task
    // is idle, at a virtual instant, so the sleeps below order events exactly
    // however slow the machine is.

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_run() {
        let flights: Arc<SingleFlight<&str, u32, Lost>> = Arc::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let (release, gate) = watch::channel(false);
        let mut callers = Vec::new();
        for _ in 0..5 {
            let (flights, runs, mut gate) = (flights.clone(), runs.clone(), gate.clone());
            callers.push(tokio::spawn(async move {
                flights
                    .run("layer", move || async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.wait_for(|open| *open).await;
                        Ok(7)
                    })
                    .await
            }));
        }
        // Every caller has joined (or started) the flight and waits on it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(true).unwrap();
        for caller in callers {
            assert_eq!(caller.await.unwrap().unwrap(), 7);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn work_is_aborted_when_the_last_caller_leaves() {
        let flights: Arc<SingleFlight<&str, u32, Lost>> = Arc::default();
        let finished = Arc::new(AtomicUsize::new(0));
        let done = finished.clone();
        let caller = tokio::spawn({
            let flights = flights.clone();
            async move {
                flights
                    .run("layer", move || async move {
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        done.fetch_add(1, Ordering::SeqCst);
                        Ok(1)
                    })
                    .await
            }
        });
        // At 50 ms the work is under way; it would finish at 300 ms.
        tokio::time::sleep(Duration::from_millis(50)).await;
        caller.abort();
        let _ = caller.await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(finished.load(Ordering::SeqCst), 0, "the work kept running with nobody waiting");
        // A new caller starts afresh.
        assert_eq!(flights.run("layer", || async { Ok(2) }).await.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leaving_caller_does_not_cancel_the_others() {
        let flights: Arc<SingleFlight<&str, u32, Lost>> = Arc::default();
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(3)
        };
        let leaver = tokio::spawn({
            let flights = flights.clone();
            async move { flights.run("k", slow).await }
        });
        // At 20 ms the leaver's flight runs; at 40 ms the stayer has joined it,
        // and the work still has 160 ms to go.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let stayer = tokio::spawn({
            let flights = flights.clone();
            async move { flights.run("k", || async { Ok(99) }).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        leaver.abort();
        assert_eq!(stayer.await.unwrap().unwrap(), 3, "joined the running flight, which went on");
    }
}
