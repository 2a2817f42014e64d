//! Container lifecycle events for `GetContainerEvents` (kubelet's evented PLEG):
//! one broadcast channel, any number of subscribers. A subscriber that falls
//! behind by more than the channel holds loses the oldest events (and is told
//! how many) instead of slowing containers down; kubelet then relists.

use tokio::sync::broadcast;

/// Events kept for a slow subscriber before it starts losing them.
const BACKLOG: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Started,
    Stopped,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub sandbox_id: String,
    pub kind: EventKind,
    /// Unix nanoseconds.
    pub at: i64,
}

pub struct Events {
    sender: broadcast::Sender<ContainerEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events { sender: broadcast::channel(BACKLOG).0 }
    }
}

impl Events {
    pub fn publish(&self, container_id: &str, sandbox_id: &str, kind: EventKind) {
        let event = ContainerEvent {
            container_id: container_id.to_string(),
            sandbox_id: sandbox_id.to_string(),
            kind,
            at: crate::time::now_nanos(),
        };
        // No subscriber is no error: events are for whoever listens now.
        let _ = self.sender.send(event);
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription { receiver: self.sender.subscribe() }
    }
}

pub struct Subscription {
    receiver: broadcast::Receiver<ContainerEvent>,
}

impl Subscription {
    /// The next event; `None` once berth shuts the channel.
    pub async fn next(&mut self) -> Option<ContainerEvent> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::warn!(lost, "a container event subscriber fell behind; events dropped");
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_subscriber_gets_every_event_in_order() {
        let events = Events::default();
        let (mut a, mut b) = (events.subscribe(), events.subscribe());
        events.publish("c1", "p1", EventKind::Created);
        events.publish("c1", "p1", EventKind::Started);
        for subscription in [&mut a, &mut b] {
            assert_eq!(subscription.next().await.unwrap().kind, EventKind::Created);
            assert_eq!(subscription.next().await.unwrap().kind, EventKind::Started);
        }
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_the_oldest_events_and_never_blocks_publishing() {
        let events = Events::default();
        let mut slow = events.subscribe();
        for i in 0..BACKLOG + 10 {
            events.publish(&format!("c{i}"), "p", EventKind::Created);
        }
        assert_eq!(slow.next().await.unwrap().container_id, "c10", "the 10 oldest are gone");
    }
}
