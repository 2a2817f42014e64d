//! A tower layer around every RPC: logs it at debug level with its duration and
//! gRPC code, records its latency in berth's metrics, runs it in the span that
//! names the RPC of its steps (`metrics::RPC_SPAN`), asks the allocator to hand
//! back free memory after the calls that free much, and counts calls in flight
//! so shutdown can wait for exactly those (not for idle client connections,
//! which kubelet keeps open forever).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::sync::Notify;

use crate::metrics::Metrics;
use tower::{Layer, Service};

/// The number of RPCs whose handler has not answered yet.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    inner: Arc<InFlightInner>,
}

#[derive(Debug, Default)]
struct InFlightInner {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn enter(&self) -> InFlightGuard {
        self.inner.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard { inner: self.inner.clone() }
    }

    /// Resolves once no RPC is in flight.
    pub async fn idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.inner.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug)]
struct InFlightGuard {
    inner: Arc<InFlightInner>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.inner.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.inner.idle.notify_waiters();
        }
    }
}

#[derive(Clone)]
pub struct RpcLayer {
    in_flight: InFlight,
    metrics: Arc<Metrics>,
}

impl RpcLayer {
    pub fn new(in_flight: InFlight, metrics: Arc<Metrics>) -> Self {
        RpcLayer { in_flight, metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = Rpc<S>;

    fn layer(&self, inner: S) -> Rpc<S> {
        Rpc { inner, in_flight: self.in_flight.clone(), metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Rpc<S> {
    inner: S,
    in_flight: InFlight,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<http::Request<B>> for Rpc<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = RpcFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default().to_string();
        let guard = self.in_flight.enter();
        let span = tracing::debug_span!(target: crate::metrics::STEP_TARGET, crate::metrics::RPC_SPAN, what = %method);
        let inner = span.in_scope(|| self.inner.call(request));
        RpcFuture { inner, span, method, started: Instant::now(), metrics: self.metrics.clone(), _guard: guard }
    }
}

pin_project_lite::pin_project! {
    pub struct RpcFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        method: String,
        started: Instant,
        metrics: Arc<Metrics>,
        _guard: InFlightGuard,
    }
}

impl<F, R, E> Future for RpcFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        let elapsed = this.started.elapsed();
        match &result {
            // A failed unary call carries its status in the headers (a
            // "trailers-only" response); a successful one in the trailers, which
            // this layer does not wait for: no status header means OK.
            Ok(response) => {
                let code = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(tonic::Code::from_i32)
                    .unwrap_or(tonic::Code::Ok);
                tracing::debug!(rpc = %this.method, ?code, ?elapsed, "rpc");
                this.metrics.observe_rpc(this.method, code_name(code), elapsed.as_secs_f64());
                if FREES_MUCH.contains(&this.method.as_str()) {
                    crate::allocator::trim_soon();
                }
            }
            Err(_) => tracing::debug!(rpc = %this.method, code = "transport error", ?elapsed, "rpc"),
        }
        Poll::Ready(result)
    }
}

/// The calls after which much memory is free (a pod's, a container's, an
/// image's, a pull's buffers): the allocator is asked to hand it back.
const FREES_MUCH: [&str; 4] = ["RemovePodSandbox", "RemoveContainer", "RemoveImage", "PullImage"];

/// The code's name as gRPC's own libraries spell it, which dashboards match on.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_resolves_only_when_the_last_call_ends() {
        let in_flight = InFlight::default();
        in_flight.idle().await; // nothing in flight yet
        let first = in_flight.enter();
        let second = in_flight.enter();
        let waiter = tokio::spawn({
            let in_flight = in_flight.clone();
            async move { in_flight.idle().await }
        });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        waiter.await.unwrap();
    }
}
