use std::fmt;
use std::io;
use std::sync::Arc;

/// Everything that can go wrong in the SPDY module.
///
/// `Clone` because one session failure is reported to every stream and every
/// `closed()` waiter; the I/O error is shared behind an `Arc` for that reason.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("SPDY connection i/o: {0}")]
    Io(#[source] Arc<io::Error>),

    /// The peer broke the protocol; the session is torn down with GOAWAY.
    #[error("SPDY protocol error: {0}")]
    Protocol(String),

    /// The zlib context of the header blocks failed. The context is shared by
    /// every frame of the session, so this is fatal to the whole session.
    #[error("SPDY header compression: {0}")]
    Compression(String),

    #[error("SPDY stream {id} reset by peer ({status})")]
    Reset { id: u32, status: RstStatus },

    #[error("SPDY stream {id} was reset locally")]
    LocallyReset { id: u32 },

    #[error("SPDY stream {id} is closed for writing")]
    StreamClosed { id: u32 },

    /// The peer sent GOAWAY: it accepts no new streams.
    #[error("SPDY peer sent GOAWAY")]
    GoneAway,

    /// The session is closed (locally, or the peer went away) and can no
    /// longer carry data.
    #[error("SPDY session closed")]
    SessionClosed,

    /// The connection ended without the peer closing this stream first.
    #[error("SPDY peer closed the connection")]
    PeerClosed,

    #[error("SPDY stream ids exhausted")]
    StreamIdsExhausted,
}

impl Error {
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        Error::Protocol(msg.into())
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Io(inner) => inner.kind(),
            Error::Protocol(_) | Error::Compression(_) => io::ErrorKind::InvalidData,
            Error::Reset { .. } | Error::LocallyReset { .. } => io::ErrorKind::ConnectionReset,
            Error::StreamClosed { .. } => io::ErrorKind::BrokenPipe,
            Error::GoneAway | Error::SessionClosed | Error::PeerClosed | Error::StreamIdsExhausted => {
                io::ErrorKind::ConnectionAborted
            }
        };
        io::Error::new(kind, e)
    }
}

/// RST_STREAM status code. A newtype rather than an enum so that codes this
/// module does not know still round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RstStatus(pub u32);

impl RstStatus {
    pub const PROTOCOL_ERROR: RstStatus = RstStatus(1);
    pub const INVALID_STREAM: RstStatus = RstStatus(2);
    pub const REFUSED_STREAM: RstStatus = RstStatus(3);
    pub const UNSUPPORTED_VERSION: RstStatus = RstStatus(4);
    pub const CANCEL: RstStatus = RstStatus(5);
    pub const INTERNAL_ERROR: RstStatus = RstStatus(6);
    pub const FLOW_CONTROL_ERROR: RstStatus = RstStatus(7);
    pub const STREAM_IN_USE: RstStatus = RstStatus(8);
    pub const STREAM_ALREADY_CLOSED: RstStatus = RstStatus(9);
    pub const FRAME_TOO_LARGE: RstStatus = RstStatus(11);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "PROTOCOL_ERROR",
            2 => "INVALID_STREAM",
            3 => "REFUSED_STREAM",
            4 => "UNSUPPORTED_VERSION",
            5 => "CANCEL",
            6 => "INTERNAL_ERROR",
            7 => "FLOW_CONTROL_ERROR",
            8 => "STREAM_IN_USE",
            9 => "STREAM_ALREADY_CLOSED",
            10 => "INVALID_CREDENTIALS",
            11 => "FRAME_TOO_LARGE",
            _ => return None,
        })
    }
}

impl fmt::Display for RstStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "status {}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_kinds() {
        let e: io::Error = Error::Reset { id: 1, status: RstStatus::CANCEL }.into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
        assert!(e.to_string().contains("CANCEL"));
        let e: io::Error = Error::SessionClosed.into();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionAborted);
    }

    #[test]
    fn unknown_status_displays_number() {
        assert_eq!(RstStatus(42).to_string(), "status 42");
        assert_eq!(RstStatus::REFUSED_STREAM.to_string(), "REFUSED_STREAM");
    }
}
