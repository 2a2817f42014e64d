//! SPDY/3 frame layout: reading raw frames off the wire, decoding and
//! encoding them. Header blocks go through the session's zlib contexts.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::error::{Error, RstStatus};
use super::header_block::{HeaderDecoder, HeaderEncoder};
use super::headers::Headers;

pub(crate) const VERSION: u16 = 3;

/// The length field has 24 bits, so no frame can be larger than this.
pub(crate) const MAX_FRAME_LEN: usize = (1 << 24) - 1;

/// Control frames carry at most a header block; anything near this size is
/// abuse, and refusing it early bounds the allocation for one frame.
pub(crate) const MAX_CONTROL_FRAME_LEN: usize = 1 << 20;

pub(crate) const MAX_STREAM_ID: u32 = 0x7fff_ffff;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;
const FLAG_SETTINGS_CLEAR: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const fn is_known_control(kind: u16) -> bool {
    matches!(
        kind,
        TYPE_SYN_STREAM
            | TYPE_SYN_REPLY
            | TYPE_RST_STREAM
            | TYPE_SETTINGS
            | TYPE_PING
            | TYPE_GOAWAY
            | TYPE_HEADERS
            | TYPE_WINDOW_UPDATE
    )
}

/// GOAWAY status codes.
pub(crate) const GOAWAY_OK: u32 = 0;
pub(crate) const GOAWAY_PROTOCOL_ERROR: u32 = 1;
pub(crate) const GOAWAY_INTERNAL_ERROR: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    SynStream { id: u32, associated_to: u32, priority: u8, fin: bool, unidirectional: bool, headers: Headers },
    SynReply { id: u32, fin: bool, headers: Headers },
    RstStream { id: u32, status: RstStatus },
    Settings { clear: bool, entries: Vec<Setting> },
    Ping { id: u32 },
    GoAway { last_good: u32, status: u32 },
    Headers { id: u32, fin: bool, headers: Headers },
    WindowUpdate { id: u32, delta: u32 },
    Data { id: u32, fin: bool, data: Bytes },
}

/// The fixed 8-byte prefix of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Head {
    Control { version: u16, kind: u16, flags: u8, len: usize },
    Data { id: u32, flags: u8, len: usize },
}

impl Head {
    pub(crate) fn parse(b: [u8; 8]) -> Self {
        let first = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let flags = b[4];
        let len = u32::from_be_bytes([0, b[5], b[6], b[7]]) as usize;
        if first & 0x8000_0000 != 0 {
            Head::Control { version: ((first >> 16) & 0x7fff) as u16, kind: (first & 0xffff) as u16, flags, len }
        } else {
            Head::Data { id: first & MAX_STREAM_ID, flags, len }
        }
    }

    fn len(&self) -> usize {
        match *self {
            Head::Control { len, .. } | Head::Data { len, .. } => len,
        }
    }
}

/// A frame as read off the wire, before its payload is interpreted.
#[derive(Debug)]
pub(crate) struct RawFrame {
    pub head: Head,
    /// Empty for control frames of unknown type: those are skipped unread.
    pub payload: Bytes,
}

/// The most of a DATA frame's payload held at once. A DATA frame may be 16 MiB;
/// its bytes are only stream bytes, so it is handed on as consecutive DATA
/// frames of at most this size (the FIN on the last), each through the stream's
/// bounded buffer before the next is read.
pub(crate) const MAX_DATA_PIECE: usize = 64 * 1024;

/// Reads frames off one connection, remembering how much of a DATA frame is
/// still to come.
#[derive(Default)]
pub(crate) struct FrameReader {
    data_left: Option<DataLeft>,
}

#[derive(Clone, Copy)]
struct DataLeft {
    id: u32,
    flags: u8,
    len: usize,
}

impl FrameReader {
    /// The next frame, or the next piece of a DATA frame. `Ok(None)` is a clean
    /// end of input between frames.
    pub(crate) async fn next<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Option<RawFrame>, Error> {
        if let Some(left) = self.data_left.take() {
            return self.data_piece(r, left).await.map(Some);
        }
        let Some(head) = read_head(r).await? else { return Ok(None) };
        match head {
            Head::Data { id, flags, len } => self.data_piece(r, DataLeft { id, flags, len }).await.map(Some),
            Head::Control { .. } => read_control(r, head).await.map(Some),
        }
    }

    async fn data_piece<R: AsyncRead + Unpin>(&mut self, r: &mut R, left: DataLeft) -> Result<RawFrame, Error> {
        let len = left.len.min(MAX_DATA_PIECE);
        let payload = read_payload(r, len).await?;
        let last = len == left.len;
        if !last {
            self.data_left = Some(DataLeft { len: left.len - len, ..left });
        }
        let flags = if last { left.flags } else { left.flags & !FLAG_FIN };
        Ok(RawFrame { head: Head::Data { id: left.id, flags, len }, payload })
    }
}

/// Reads one whole frame (a test's peer, which trusts its input).
#[cfg(test)]
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<RawFrame>, Error> {
    let Some(head) = read_head(r).await? else { return Ok(None) };
    match head {
        Head::Data { len, .. } => Ok(Some(RawFrame { head, payload: read_payload(r, len).await? })),
        Head::Control { .. } => read_control(r, head).await.map(Some),
    }
}

/// The 8-byte frame head; `Ok(None)` at a clean end of input.
async fn read_head<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Head>, Error> {
    let mut prefix = [0u8; 8];
    let mut filled = 0;
    while filled < prefix.len() {
        let n = r.read(&mut prefix[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(Error::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
        }
        filled += n;
    }
    Ok(Some(Head::parse(prefix)))
}

async fn read_control<R: AsyncRead + Unpin>(r: &mut R, head: Head) -> Result<RawFrame, Error> {
    let len = head.len();
    if let Head::Control { version, kind, .. } = head {
        if version != VERSION {
            return Err(Error::protocol(format!("unsupported SPDY version {version}")));
        }
        if !is_known_control(kind) {
            // Unknown control frames are skipped, as the draft asks, without
            // buffering their payload.
            let skipped = tokio::io::copy(&mut r.take(len as u64), &mut tokio::io::sink()).await?;
            if skipped != len as u64 {
                return Err(Error::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
            }
            return Ok(RawFrame { head, payload: Bytes::new() });
        }
        if len > MAX_CONTROL_FRAME_LEN {
            return Err(Error::protocol(format!("control frame of {len} bytes exceeds {MAX_CONTROL_FRAME_LEN}")));
        }
    }
    Ok(RawFrame { head, payload: read_payload(r, len).await? })
}

/// Exactly `len` bytes. The buffer grows as bytes arrive rather than being sized
/// from the length field, so a peer announcing a large frame and then stalling
/// does not pin that much memory.
async fn read_payload<R: AsyncRead + Unpin>(r: &mut R, len: usize) -> Result<Bytes, Error> {
    let mut payload = Vec::with_capacity(len.min(MAX_DATA_PIECE));
    r.take(len as u64).read_to_end(&mut payload).await?;
    if payload.len() != len {
        return Err(Error::from(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
    }
    Ok(Bytes::from(payload))
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Result<u32, Error> {
        let Some((head, tail)) = self.0.split_first_chunk::<4>() else {
            return Err(Error::protocol("truncated control frame"));
        };
        self.0 = tail;
        Ok(u32::from_be_bytes(*head))
    }

    fn u8(&mut self) -> Result<u8, Error> {
        let Some((&b, tail)) = self.0.split_first() else {
            return Err(Error::protocol("truncated control frame"));
        };
        self.0 = tail;
        Ok(b)
    }

    fn rest(&self) -> &'a [u8] {
        self.0
    }
}

fn expect_len(kind: &str, len: usize, want: usize) -> Result<(), Error> {
    if len != want {
        return Err(Error::protocol(format!("{kind} frame of {len} bytes, expected {want}")));
    }
    Ok(())
}

fn nonzero_stream(kind: &str, id: u32) -> Result<u32, Error> {
    if id == 0 {
        return Err(Error::protocol(format!("{kind} frame on stream 0")));
    }
    Ok(id)
}

/// Interprets a raw frame. `Ok(None)` for a skipped control frame.
pub(crate) fn decode(raw: RawFrame, headers: &mut HeaderDecoder) -> Result<Option<Frame>, Error> {
    let (kind, flags) = match raw.head {
        Head::Data { id, flags, .. } => {
            let id = nonzero_stream("DATA", id)?;
            return Ok(Some(Frame::Data { id, fin: flags & FLAG_FIN != 0, data: raw.payload }));
        }
        Head::Control { kind, flags, .. } => (kind, flags),
    };
    let len = raw.payload.len();
    let mut c = Cursor(&raw.payload);
    let fin = flags & FLAG_FIN != 0;
    let frame = match kind {
        TYPE_SYN_STREAM => {
            let id = c.u32()? & MAX_STREAM_ID;
            let associated_to = c.u32()? & MAX_STREAM_ID;
            let priority = c.u8()? >> 5;
            let _slot = c.u8()?;
            // Inflate before validating the id: the zlib context is shared
            // with every later block, so skipping this one would desync it.
            let block = headers.decode(c.rest())?;
            let id = nonzero_stream("SYN_STREAM", id)?;
            Frame::SynStream {
                id,
                associated_to,
                priority,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: block,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let id = c.u32()? & MAX_STREAM_ID;
            let block = headers.decode(c.rest())?;
            if kind == TYPE_SYN_REPLY {
                Frame::SynReply { id: nonzero_stream("SYN_REPLY", id)?, fin, headers: block }
            } else {
                Frame::Headers { id: nonzero_stream("HEADERS", id)?, fin, headers: block }
            }
        }
        TYPE_RST_STREAM => {
            expect_len("RST_STREAM", len, 8)?;
            let id = nonzero_stream("RST_STREAM", c.u32()? & MAX_STREAM_ID)?;
            let status = c.u32()?;
            if status == 0 {
                return Err(Error::protocol("RST_STREAM with status 0"));
            }
            Frame::RstStream { id, status: RstStatus(status) }
        }
        TYPE_SETTINGS => {
            let count = c.u32()? as usize;
            let body = len.saturating_sub(4);
            if body % 8 != 0 || body / 8 != count {
                return Err(Error::protocol(format!("SETTINGS frame of {len} bytes claims {count} entries")));
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let flag_id = c.u32()?;
                let value = c.u32()?;
                entries.push(Setting { flags: (flag_id >> 24) as u8, id: flag_id & 0x00ff_ffff, value });
            }
            Frame::Settings { clear: flags & FLAG_SETTINGS_CLEAR != 0, entries }
        }
        TYPE_PING => {
            expect_len("PING", len, 4)?;
            Frame::Ping { id: c.u32()? }
        }
        TYPE_GOAWAY => {
            expect_len("GOAWAY", len, 8)?;
            let last_good = c.u32()? & MAX_STREAM_ID;
            Frame::GoAway { last_good, status: c.u32()? }
        }
        TYPE_WINDOW_UPDATE => {
            expect_len("WINDOW_UPDATE", len, 8)?;
            let id = c.u32()? & MAX_STREAM_ID;
            Frame::WindowUpdate { id, delta: c.u32()? & 0x7fff_ffff }
        }
        _ => return Ok(None),
    };
    Ok(Some(frame))
}

fn put_control_head(out: &mut BytesMut, kind: u16, flags: u8, len: usize) -> Result<(), Error> {
    if len > MAX_FRAME_LEN {
        return Err(Error::protocol(format!("control frame of {len} bytes is too large to send")));
    }
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32((u32::from(flags) << 24) | len as u32);
    Ok(())
}

/// Appends the wire form of `frame` to `out`.
pub(crate) fn encode(frame: &Frame, headers: &mut HeaderEncoder, out: &mut BytesMut) -> Result<(), Error> {
    match frame {
        Frame::Data { id, fin, data } => {
            if data.len() > MAX_FRAME_LEN {
                return Err(Error::protocol(format!("DATA frame of {} bytes is too large to send", data.len())));
            }
            out.reserve(8 + data.len());
            out.put_u32(id & MAX_STREAM_ID);
            out.put_u32((u32::from(flag(*fin, FLAG_FIN)) << 24) | data.len() as u32);
            out.extend_from_slice(data);
        }
        Frame::SynStream { id, associated_to, priority, fin, unidirectional, headers: h } => {
            let mut body = BytesMut::new();
            body.put_u32(id & MAX_STREAM_ID);
            body.put_u32(associated_to & MAX_STREAM_ID);
            body.put_u8((priority & 0x7) << 5);
            body.put_u8(0);
            headers.encode(h, &mut body)?;
            let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
            put_control_head(out, TYPE_SYN_STREAM, flags, body.len())?;
            out.extend_from_slice(&body);
        }
        Frame::SynReply { id, fin, headers: h } | Frame::Headers { id, fin, headers: h } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) { TYPE_SYN_REPLY } else { TYPE_HEADERS };
            let mut body = BytesMut::new();
            body.put_u32(id & MAX_STREAM_ID);
            headers.encode(h, &mut body)?;
            put_control_head(out, kind, flag(*fin, FLAG_FIN), body.len())?;
            out.extend_from_slice(&body);
        }
        Frame::RstStream { id, status } => {
            put_control_head(out, TYPE_RST_STREAM, 0, 8)?;
            out.put_u32(id & MAX_STREAM_ID);
            out.put_u32(status.0);
        }
        Frame::Settings { clear, entries } => {
            put_control_head(out, TYPE_SETTINGS, flag(*clear, FLAG_SETTINGS_CLEAR), 4 + 8 * entries.len())?;
            out.put_u32(entries.len() as u32);
            for s in entries {
                out.put_u32((u32::from(s.flags) << 24) | (s.id & 0x00ff_ffff));
                out.put_u32(s.value);
            }
        }
        Frame::Ping { id } => {
            put_control_head(out, TYPE_PING, 0, 4)?;
            out.put_u32(*id);
        }
        Frame::GoAway { last_good, status } => {
            put_control_head(out, TYPE_GOAWAY, 0, 8)?;
            out.put_u32(last_good & MAX_STREAM_ID);
            out.put_u32(*status);
        }
        Frame::WindowUpdate { id, delta } => {
            put_control_head(out, TYPE_WINDOW_UPDATE, 0, 8)?;
            out.put_u32(id & MAX_STREAM_ID);
            out.put_u32(delta & 0x7fff_ffff);
        }
    }
    Ok(())
}

fn flag(set: bool, bit: u8) -> u8 {
    if set { bit } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer's 16 MiB DATA frame costs one piece of memory at a time: it comes
    /// out as pieces of at most MAX_DATA_PIECE, the FIN on the last only, then
    /// the next frame as usual.
    #[tokio::test]
    async fn a_large_data_frame_is_read_in_bounded_pieces() {
        let data: Vec<u8> = (0..MAX_FRAME_LEN).map(|i| (i % 251) as u8).collect();
        let mut headers = HeaderEncoder::new().expect("encoder");
        let mut wire = BytesMut::new();
        encode(&Frame::Data { id: 1, fin: true, data: Bytes::from(data.clone()) }, &mut headers, &mut wire).unwrap();
        encode(&Frame::Ping { id: 7 }, &mut headers, &mut wire).unwrap();
        let mut wire = &wire[..];
        let mut decoder = HeaderDecoder::new();
        let mut reader = FrameReader::default();
        let mut received = Vec::new();
        loop {
            let raw = reader.next(&mut wire).await.unwrap().expect("a frame");
            assert!(raw.payload.len() <= MAX_DATA_PIECE, "a piece of {} bytes", raw.payload.len());
            match decode(raw, &mut decoder).unwrap() {
                Some(Frame::Data { id: 1, fin, data }) => {
                    received.extend_from_slice(&data);
                    assert_eq!(fin, received.len() == MAX_FRAME_LEN, "FIN on the last piece only");
                    if fin {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(received == data, "the pieces make the frame");
        assert_eq!(decode(reader.next(&mut wire).await.unwrap().unwrap(), &mut decoder).unwrap(), Some(Frame::Ping { id: 7 }));
        assert!(reader.next(&mut wire).await.unwrap().is_none());
    }

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                unidirectional: false,
                headers: Headers::from([("streamtype", "stdin")]),
            },
            Frame::SynStream {
                id: 3,
                associated_to: 1,
                priority: 0,
                fin: true,
                unidirectional: true,
                headers: Headers::new(),
            },
            Frame::SynReply { id: 1, fin: false, headers: Headers::new() },
            Frame::SynReply { id: 1, fin: true, headers: Headers::from([("a", "b")]) },
            Frame::Headers { id: 5, fin: true, headers: Headers::from([("x", "y")]) },
            Frame::RstStream { id: 7, status: RstStatus::CANCEL },
            Frame::Settings {
                clear: true,
                entries: vec![Setting { flags: 1, id: 7, value: 65536 }, Setting { flags: 0, id: 4, value: 100 }],
            },
            Frame::Settings { clear: false, entries: vec![] },
            Frame::Ping { id: 0xffff_fffe },
            Frame::GoAway { last_good: 9, status: GOAWAY_PROTOCOL_ERROR },
            Frame::WindowUpdate { id: 0, delta: 32768 },
            Frame::Data { id: 3, fin: false, data: Bytes::from_static(b"hello") },
            Frame::Data { id: 3, fin: true, data: Bytes::new() },
        ]
    }

    async fn read_all(mut wire: &[u8]) -> Vec<Frame> {
        let mut dec = HeaderDecoder::new();
        let mut frames = Vec::new();
        while let Some(raw) = read_frame(&mut wire).await.unwrap() {
            if let Some(f) = decode(raw, &mut dec).unwrap() {
                frames.push(f);
            }
        }
        frames
    }

    #[tokio::test]
    async fn roundtrip_every_frame() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut wire = BytesMut::new();
        let frames = all_frames();
        for f in &frames {
            encode(f, &mut enc, &mut wire).unwrap();
        }
        assert_eq!(read_all(&wire).await, frames);
    }

    #[test]
    fn fixed_layouts() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut out = BytesMut::new();
        encode(&Frame::RstStream { id: 5, status: RstStatus::CANCEL }, &mut enc, &mut out).unwrap();
        assert_eq!(&out[..], b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x05\x00\x00\x00\x05");
        out.clear();
        encode(&Frame::Data { id: 2, fin: true, data: Bytes::from_static(b"ab") }, &mut enc, &mut out).unwrap();
        assert_eq!(&out[..], b"\x00\x00\x00\x02\x01\x00\x00\x02ab");
        out.clear();
        encode(&Frame::GoAway { last_good: 3, status: 0 }, &mut enc, &mut out).unwrap();
        assert_eq!(&out[..], b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00");
    }

    #[tokio::test]
    async fn unknown_control_frames_are_skipped() {
        let mut wire = Vec::new();
        // Type 0x00ff, 3 bytes of payload.
        wire.extend_from_slice(b"\x80\x03\x00\xff\x00\x00\x00\x03xyz");
        wire.extend_from_slice(b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01");
        assert_eq!(read_all(&wire).await, vec![Frame::Ping { id: 1 }]);
    }

    async fn decode_one(wire: &[u8]) -> Result<Option<Frame>, Error> {
        let mut r = wire;
        let raw = read_frame(&mut r).await?.ok_or_else(|| Error::protocol("eof"))?;
        decode(raw, &mut HeaderDecoder::new())
    }

    #[tokio::test]
    async fn malformed_frames_are_errors() {
        let cases: &[&[u8]] = &[
            // PING with length 5.
            b"\x80\x03\x00\x06\x00\x00\x00\x05\x00\x00\x00\x01\x00",
            // RST_STREAM too short.
            b"\x80\x03\x00\x03\x00\x00\x00\x04\x00\x00\x00\x01",
            // RST_STREAM status 0.
            b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00",
            // RST_STREAM on stream 0.
            b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x05",
            // SETTINGS claiming two entries with room for one.
            b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x02\x00\x00\x00\x07\x00\x01\x00\x00",
            // SETTINGS with a huge count and no body.
            b"\x80\x03\x00\x04\x00\x00\x00\x04\xff\xff\xff\xff",
            // GOAWAY of the SPDY/2 size.
            b"\x80\x03\x00\x07\x00\x00\x00\x04\x00\x00\x00\x01",
            // WINDOW_UPDATE too long.
            b"\x80\x03\x00\x09\x00\x00\x00\x0c\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x00",
            // SYN_STREAM shorter than its fixed part.
            b"\x80\x03\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01",
            // SYN_STREAM with garbage instead of a zlib block.
            b"\x80\x03\x00\x01\x00\x00\x00\x0e\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00junk",
            // SYN_REPLY with an empty block.
            b"\x80\x03\x00\x02\x00\x00\x00\x04\x00\x00\x00\x01",
            // DATA on stream 0.
            b"\x00\x00\x00\x00\x00\x00\x00\x01x",
            // SPDY/2.
            b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01",
            // Control frame over the cap.
            b"\x80\x03\x00\x01\x00\xff\xff\xff",
            // Truncated payload.
            b"\x00\x00\x00\x01\x00\x00\x00\x09abc",
            // Truncated prefix.
            b"\x00\x00\x00",
        ];
        for case in cases {
            assert!(decode_one(case).await.is_err(), "accepted {case:x?}");
        }
    }

    #[tokio::test]
    async fn reserved_bits_are_masked() {
        let frame = decode_one(b"\x80\x03\x00\x09\x00\x00\x00\x08\x80\x00\x00\x03\x80\x00\x00\x10").await.unwrap();
        assert_eq!(frame, Some(Frame::WindowUpdate { id: 3, delta: 16 }));
    }

    #[tokio::test]
    async fn announced_length_does_not_preallocate() {
        // A DATA frame announcing 16 MiB followed by end of input: an error,
        // reached without allocating the announced size up front.
        let err = decode_one(b"\x00\x00\x00\x01\x00\xff\xff\xff").await.unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err}");
    }
}
