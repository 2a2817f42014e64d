//! gRPC deadlines as the spec has them: a call still running when the
//! client's `grpc-timeout` passes is ended, and answered DEADLINE_EXCEEDED.
//!
//! tonic's server ends such a call too, but answers CANCELLED; a Go client
//! that reads that answer before its own timer fires reports Canceled
//! (critest's "should timeout if requested" spec failed that way on a busy
//! host). This layer sits inside tonic's, and its timer is set
//! [`AHEAD_OF_TONIC`] earlier: on the same instant tokio may fire tonic's
//! entry first, and another worker poll the call before this one's is marked.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

/// Enough for this layer's timer to land in an earlier millisecond slot of
/// tokio's timer wheel than tonic's, whatever the rounding.
const AHEAD_OF_TONIC: Duration = Duration::from_millis(2);

#[derive(Clone, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline { inner }
    }
}

#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
}

impl<S, B, R> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let timeout = request.headers().get("grpc-timeout").and_then(|v| parse_grpc_timeout(v.as_bytes()));
        DeadlineFuture {
            expiry: timeout.map(|t| tokio::time::sleep(t.saturating_sub(AHEAD_OF_TONIC))),
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        expiry: Option<tokio::time::Sleep>,
    }
}

impl<F, R, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    R: Default,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let ready @ Poll::Ready(_) = this.inner.poll(cx) {
            return ready;
        }
        let Some(expiry) = this.expiry.as_pin_mut() else { return Poll::Pending };
        std::task::ready!(expiry.poll(cx));
        // The handler's future is dropped with this one: the call is
        // cancelled where it stands, as a client going away cancels it.
        Poll::Ready(Ok(tonic::Status::deadline_exceeded("the client's deadline passed").into_http()))
    }
}

/// A `grpc-timeout` value: at most 8 digits and a unit (gRPC over HTTP/2).
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        assert_eq!(parse_grpc_timeout(b"300m"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout(b"300000u"), Some(Duration::from_millis(300)));
        assert_eq!(parse_grpc_timeout(b"2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout(b"99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [&b""[..], b"m", b"123456789m", b"10x", b"-1S", b"1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    fn request(timeout: Option<&str>) -> http::Request<()> {
        let mut request = http::Request::new(());
        if let Some(timeout) = timeout {
            request.headers_mut().insert("grpc-timeout", timeout.parse().unwrap());
        }
        request
    }

    /// A handler that never answers, as a pull stuck on a registry.
    fn stuck()
    -> Deadline<impl Service<http::Request<()>, Response = http::Response<tonic::body::Body>, Error = Infallible>> {
        DeadlineLayer.layer(tower::service_fn(|_: http::Request<()>| {
            std::future::pending::<Result<http::Response<tonic::body::Body>, Infallible>>()
        }))
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_past_its_deadline_is_answered_deadline_exceeded() {
        let response = stuck().call(request(Some("300m"))).await.unwrap();
        let status = tonic::Status::from_header_map(response.headers()).unwrap();
        assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_deadline_a_call_runs_on_and_an_answer_passes_through() {
        let waited = tokio::time::timeout(Duration::from_secs(3600), stuck().call(request(None))).await;
        assert!(waited.is_err(), "no grpc-timeout, no deadline");
        let mut quick = DeadlineLayer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(tonic::body::Body::default()))
        }));
        let response = quick.call(request(Some("1S"))).await.unwrap();
        assert!(response.headers().get("grpc-status").is_none(), "the handler's answer, untouched");
    }
}
