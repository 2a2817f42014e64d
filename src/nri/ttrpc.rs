//! ttrpc, the small RPC protocol NRI speaks inside its multiplexer: unary
//! calls only, which is all NRI uses.
//!
//! A message is a 10-byte big-endian header (payload length, stream ID, type,
//! flags) and its payload. A call is a `Request` on a new odd stream ID; the
//! answer is a `Response` on the same ID. Both are protobuf messages, written
//! here by hand (three small messages) rather than generated.

/// The largest payload ttrpc accepts (its Go implementation's limit).
pub const MAX_PAYLOAD: usize = 4 << 20;

pub const HEADER_LEN: usize = 10;

/// `type` of a message.
pub const REQUEST: u8 = 1;
pub const RESPONSE: u8 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a ttrpc message of {0} bytes is larger than the {MAX_PAYLOAD} bytes allowed")]
    TooLarge(usize),
}

/// One ttrpc message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub stream_id: u32,
    pub kind: u8,
    pub flags: u8,
    pub payload: Vec<u8>,
}

impl Message {
    /// Header and payload, as they go on the wire.
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        if self.payload.len() > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(self.payload.len()));
        }
        let mut bytes = Vec::with_capacity(HEADER_LEN + self.payload.len());
        bytes.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&self.stream_id.to_be_bytes());
        bytes.push(self.kind);
        bytes.push(self.flags);
        bytes.extend_from_slice(&self.payload);
        Ok(bytes)
    }
}

/// Messages out of a byte stream that arrives in pieces of any size.
#[derive(Debug, Default)]
pub struct Decoder {
    buffer: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived; an oversized one is an
    /// error (the connection cannot be resynchronised after it).
    pub fn next_message(&mut self) -> Result<Option<Message>, FrameError> {
        let Some(header) = self.buffer.get(..HEADER_LEN) else { return Ok(None) };
        let length = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        if length > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(length));
        }
        if self.buffer.len() < HEADER_LEN + length {
            return Ok(None);
        }
        let stream_id = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        let (kind, flags) = (header[8], header[9]);
        let payload = self.buffer[HEADER_LEN..HEADER_LEN + length].to_vec();
        self.buffer.drain(..HEADER_LEN + length);
        Ok(Some(Message { stream_id, kind, flags, payload }))
    }
}

/// A call: which method, its encoded argument, and how long the caller waits.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, tag = "1")]
    pub service: String,
    #[prost(string, tag = "2")]
    pub method: String,
    #[prost(bytes = "vec", tag = "3")]
    pub payload: Vec<u8>,
    /// Nanoseconds; 0 is no deadline. The Go server makes it the handler's deadline.
    #[prost(int64, tag = "4")]
    pub timeout_nano: i64,
    #[prost(message, repeated, tag = "5")]
    pub metadata: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// An answer: a status (absent or code 0 is success) and the encoded result.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    #[prost(bytes = "vec", tag = "2")]
    pub payload: Vec<u8>,
}

/// `google.rpc.Status`, without its details (NRI sends none).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// The gRPC codes berth answers with or reads.
pub mod code {
    pub const OK: i32 = 0;
    pub const UNKNOWN: i32 = 2;
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const UNAVAILABLE: i32 = 14;
    pub const UNIMPLEMENTED: i32 = 12;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_pieces_of_any_size() {
        let first = Message { stream_id: 1, kind: REQUEST, flags: 0, payload: b"hello".to_vec() };
        let second = Message { stream_id: 3, kind: RESPONSE, flags: 0, payload: vec![7; 5000] };
        let mut bytes = first.encode().unwrap();
        bytes.extend(second.encode().unwrap());
        assert_eq!(&bytes[..10], [0, 0, 0, 5, 0, 0, 0, 1, 1, 0], "length, stream, type, flags: big-endian");
        let mut decoder = Decoder::default();
        let mut got = Vec::new();
        for piece in bytes.chunks(7) {
            decoder.push(piece);
            while let Some(message) = decoder.next_message().unwrap() {
                got.push(message);
            }
        }
        assert_eq!(got, [first, second]);
    }

    #[test]
    fn an_oversized_message_is_refused_both_ways() {
        let huge = Message { stream_id: 1, kind: REQUEST, flags: 0, payload: vec![0; MAX_PAYLOAD + 1] };
        assert_eq!(huge.encode(), Err(FrameError::TooLarge(MAX_PAYLOAD + 1)));
        let mut decoder = Decoder::default();
        decoder.push(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 1, 1, 0]);
        assert!(decoder.next_message().is_err(), "a lying length is not waited for");
    }
}
