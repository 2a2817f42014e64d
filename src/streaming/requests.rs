//! The requests behind the URLs Exec, Attach and PortForward hand out: each
//! URL carries a random token that may be used once, within a minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::container::StreamChoice;

/// containerd's and kubelet's streaming servers give a token a minute.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// More outstanding tokens than any kubelet has: past it, the oldest go first.
const MAX_PENDING: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    Exec {
        container_id: String,
        cmd: Vec<String>,
        choice: StreamChoice,
    },
    /// `close_stdin_on_end`: the container's stdin closes when the client's ends
    /// (a `stdin_once` container without a tty); otherwise that end detaches.
    Attach {
        container_id: String,
        choice: StreamChoice,
        close_stdin_on_end: bool,
    },
    /// `ports` are for WebSocket clients, which name no port per stream.
    PortForward {
        sandbox_id: String,
        ports: Vec<u16>,
    },
}

impl StreamRequest {
    /// The URL path's first segment for this kind of request.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamRequest::Exec { .. } => "exec",
            StreamRequest::Attach { .. } => "attach",
            StreamRequest::PortForward { .. } => "portforward",
        }
    }
}

#[derive(Default)]
pub struct PendingRequests {
    pending: Mutex<HashMap<String, (Instant, StreamRequest)>>,
}

impl PendingRequests {
    /// Keeps `request` and returns its new token.
    pub fn insert(&self, request: StreamRequest) -> String {
        // 256 random bits: the token is all that guards the session.
        let token = crate::ids::new_id();
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, (issued, _)| now.duration_since(*issued) < TOKEN_TTL);
        if pending.len() >= MAX_PENDING {
            let oldest = pending.iter().min_by_key(|(_, (issued, _))| *issued).map(|(token, _)| token.clone());
            if let Some(oldest) = oldest {
                pending.remove(&oldest);
            }
        }
        pending.insert(token.clone(), (now, request));
        token
    }

    /// The request of `token`, if the token is known and fresh; it is spent either way.
    pub fn take(&self, token: &str) -> Option<StreamRequest> {
        let (issued, request) = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(token)?;
        (issued.elapsed() < TOKEN_TTL).then_some(request)
    }

    #[cfg(test)]
    fn age(&self, token: &str, by: Duration) {
        if let Some((issued, _)) = self.pending.lock().unwrap().get_mut(token) {
            *issued -= by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec() -> StreamRequest {
        let choice = StreamChoice { stdin: false, stdout: true, stderr: true, tty: false };
        StreamRequest::Exec { container_id: "c".into(), cmd: vec!["true".into()], choice }
    }

    #[test]
    fn tokens_are_single_use_and_expire() {
        let pending = PendingRequests::default();
        let token = pending.insert(exec());
        assert_eq!(token.len(), 64);
        assert_eq!(pending.take(&token), Some(exec()));
        assert_eq!(pending.take(&token), None, "used once");

        let stale = pending.insert(exec());
        pending.age(&stale, TOKEN_TTL);
        assert_eq!(pending.take(&stale), None, "expired");
        assert_eq!(pending.take("made-up"), None);
        assert_ne!(pending.insert(exec()), pending.insert(exec()));
    }
}
