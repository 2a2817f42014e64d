//! Slow creates handed to the retry: kubelet gives CreateContainer and
//! RunPodSandbox a deadline (2 min by default) and, when it expires, retries the
//! same request with the same name. Cancelling the work would waste it and the
//! name would often stay reserved by a half-made object; finishing it and then
//! refusing the retry ("name is reserved") loops forever. So the work runs in a
//! task of its own: a retry that arrives while it runs waits for it, and one that
//! arrives after it finished unclaimed gets its result (cri-o does the same).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::Instrument;

/// How long a result nobody claimed is kept for a retry. kubelet retries within
/// seconds; past this, the object is just listed, and kubelet's garbage
/// collection removes it if it is not wanted.
const UNCLAIMED_FOR: Duration = Duration::from_secs(10 * 60);

type Outcome<T, E> = Option<Result<T, Arc<E>>>;

enum Slot<T, E> {
    Running { outcome: watch::Receiver<Outcome<T, E>>, waiters: usize },
    Unclaimed { result: T, since: Instant },
}

pub struct Handoff<T, E> {
    slots: Arc<Mutex<HashMap<String, Slot<T, E>>>>,
}

impl<T, E> Default for Handoff<T, E> {
    fn default() -> Self {
        Handoff { slots: Arc::new(Mutex::new(HashMap::new())) }
    }
}

type Slots<T, E> = Arc<Mutex<HashMap<String, Slot<T, E>>>>;

fn lock<T, E>(slots: &Slots<T, E>) -> std::sync::MutexGuard<'_, HashMap<String, Slot<T, E>>> {
    slots.lock().unwrap_or_else(|p| p.into_inner())
}

/// A caller waiting on a slot. Dropped before it saw the outcome (kubelet's
/// deadline), it leaves a success behind for the retry.
struct Waiter<T: Clone, E> {
    slots: Slots<T, E>,
    key: String,
    outcome: watch::Receiver<Outcome<T, E>>,
    done: bool,
}

impl<T: Clone, E> Drop for Waiter<T, E> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut slots = lock(&self.slots);
        match slots.get_mut(&self.key) {
            Some(Slot::Running { waiters, .. }) => *waiters -= 1,
            // The work finished while this caller was leaving: its result is unclaimed.
            None => {
                if let Some(Ok(result)) = self.outcome.borrow().clone() {
                    slots.insert(self.key.clone(), Slot::Unclaimed { result, since: Instant::now() });
                }
            }
            Some(Slot::Unclaimed { .. }) => {}
        }
    }
}

/// The error a waiter gets when the work's task died without an outcome.
pub trait WorkLost {
    fn lost() -> Self;
}

impl<T, E> Handoff<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: WorkLost + Send + Sync + 'static,
{
    /// Runs `work` for `key` to completion, whether or not this caller waits
    /// that long; a call with the same key gets the same outcome.
    pub async fn run<Fut>(&self, key: String, work: impl FnOnce() -> Fut) -> Result<T, Arc<E>>
    where
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let outcome = {
            let mut slots = lock(&self.slots);
            slots.retain(|_, slot| !matches!(slot, Slot::Unclaimed { since, .. } if since.elapsed() > UNCLAIMED_FOR));
            if let Some(Slot::Unclaimed { .. }) = slots.get(&key)
                && let Some(Slot::Unclaimed { result, .. }) = slots.remove(&key)
            {
                tracing::info!(name = %key, "handing a create finished after its caller left to the retry");
                return Ok(result);
            }
            match slots.get_mut(&key) {
                Some(Slot::Unclaimed { .. }) => None,
                Some(Slot::Running { outcome, waiters }) => {
                    *waiters += 1;
                    Some(outcome.clone())
                }
                None => {
                    let (send, outcome) = watch::channel(None);
                    slots.insert(key.clone(), Slot::Running { outcome: outcome.clone(), waiters: 1 });
                    let (slots, key, work) = (self.slots.clone(), key.clone(), work());
                    // In the caller's span: the work's steps count under its RPC.
                    let work = work.in_current_span();
                    tokio::spawn(async move {
                        let result = work.await.map_err(Arc::new);
                        let mut slots = lock(&slots);
                        let waiters = match slots.remove(&key) {
                            Some(Slot::Running { waiters, .. }) => waiters,
                            _ => 0,
                        };
                        match &result {
                            Ok(value) if waiters == 0 => {
                                tracing::info!(name = %key, "create finished after its caller left; kept for the retry");
                                slots.insert(key, Slot::Unclaimed { result: value.clone(), since: Instant::now() });
                            }
                            _ => {}
                        }
                        let _ = send.send(Some(result));
                    });
                    Some(outcome)
                }
            }
        };
        let Some(outcome) = outcome else { return Err(Arc::new(E::lost())) };
        let mut waiter = Waiter { slots: self.slots.clone(), key, outcome, done: false };
        let result = match waiter.outcome.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or_else(|| Err(Arc::new(E::lost()))),
            Err(_) => Err(Arc::new(E::lost())),
        };
        waiter.done = true;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Lost;
    impl WorkLost for Lost {
        fn lost() -> Self {
            Lost
        }
    }

    #[tokio::test]
    async fn a_result_its_caller_left_goes_to_the_retry() {
        let handoff: Handoff<u32, Lost> = Handoff::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = handoff.run("pod/app/0".into(), || async move {
            let _ = released.await;
            Ok(7)
        });
        // The caller gives up (kubelet's deadline) before the work is done.
        assert!(tokio::time::timeout(Duration::from_millis(20), first).await.is_err());
        release.send(()).unwrap();
        let retry = handoff.run("pod/app/0".into(), || async { Ok(8) }).await;
        assert_eq!(retry.unwrap(), 7, "the retry gets the first work's result, not new work");
        let fresh = handoff.run("pod/app/0".into(), || async { Ok(9) }).await;
        assert_eq!(fresh.unwrap(), 9, "a result is handed over once");
    }

    #[tokio::test]
    async fn a_retry_during_the_work_waits_for_it() {
        let handoff: Arc<Handoff<u32, Lost>> = Arc::new(Handoff::default());
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn({
            let handoff = handoff.clone();
            async move {
                handoff
                    .run("k".into(), || async move {
                        let _ = released.await;
                        Ok(1)
                    })
                    .await
            }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let handoff = handoff.clone();
            async move { handoff.run("k".into(), || async { Ok(2) }).await }
        });
        tokio::task::yield_now().await;
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(second.await.unwrap().unwrap(), 1);
        assert_eq!(handoff.run("k".into(), || async { Ok(3) }).await.unwrap(), 3, "nothing left unclaimed");
    }

    #[tokio::test]
    async fn failures_are_not_kept() {
        let handoff: Handoff<u32, Lost> = Handoff::default();
        assert!(handoff.run("k".into(), || async { Err(Lost) }).await.is_err());
        assert_eq!(handoff.run("k".into(), || async { Ok(1) }).await.unwrap(), 1);
    }
}
