//! A sink that refuses to grow past a limit: what a registry sends for a blob
//! berth keeps in memory (an image config) is bounded while it arrives, not
//! checked after it has all been buffered.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;

pub struct CappedBuffer {
    bytes: Vec<u8>,
    limit: usize,
}

impl CappedBuffer {
    pub fn new(limit: usize) -> Self {
        CappedBuffer { bytes: Vec::new(), limit }
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.bytes
    }
}

impl AsyncWrite for CappedBuffer {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            let limit = self.limit;
            return Poll::Ready(Err(std::io::Error::other(format!("more than the {limit} bytes expected"))));
        }
        self.bytes.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn refuses_the_byte_past_its_limit() {
        let mut buffer = CappedBuffer::new(4);
        buffer.write_all(b"abcd").await.expect("up to the limit");
        let err = buffer.write_all(b"e").await.expect_err("past the limit");
        assert!(err.to_string().contains("4 bytes"), "{err}");
        assert_eq!(buffer.into_inner(), b"abcd");
    }
}
