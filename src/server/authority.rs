//! Any `:authority` a gRPC client sends on the unix socket is accepted.
//!
//! Old grpc-go (kubelet and crictl up to about 1.26) and gRPC stacks in other
//! languages send the socket's path as the HTTP/2 `:authority`
//! (`/run/berth/berth.sock`, or percent-encoded), some send none at all; newer
//! grpc-go sends `localhost`. h2, under tonic, refuses every request whose
//! authority is not a valid URI authority with a stream error
//! (PROTOCOL_ERROR), and its maintainers keep it that way. On a unix socket the
//! authority names nothing, so berth mends it at the transport edge: the bytes
//! the client sends pass through [`AuthorityTolerant`], which re-encodes each
//! request's header block without an `:authority` h2 would refuse. Everything
//! else, and everything berth sends, passes through untouched.
//!
//! Header blocks are HPACK-compressed against a table both ends keep in step,
//! so every block is decoded here (keeping the client's table) and encoded
//! afresh with static-table references and literals only (keeping h2's table
//! empty of anything berth did not send it).

use std::borrow::Cow;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
const PRIORITY_LEN: usize = 5;
/// The HTTP/2 default SETTINGS_MAX_FRAME_SIZE, which tonic's server keeps:
/// re-encoded blocks are cut into frames no larger.
const MAX_FRAME_PAYLOAD: usize = 16_384;
/// A request's header block, after CONTINUATIONs: kubelet's are well under a
/// KiB; a client sending more is cut off rather than buffered without end.
const MAX_HEADER_BLOCK: usize = 1 << 20;
const READ_CHUNK: usize = 16 * 1024;
/// The HPACK table size h2 advertises (the HTTP/2 default): the most a client
/// may ask its decoder for, which bounds what one connection's table holds.
const HEADER_TABLE_SIZE: usize = 4096;

/// A server-side connection whose inbound HTTP/2 header blocks are rewritten
/// so that h2 accepts any `:authority`.
pub struct AuthorityTolerant<S> {
    inner: S,
    inbound: Inbound,
    eof: bool,
}

impl<S> AuthorityTolerant<S> {
    pub fn new(inner: S) -> Self {
        AuthorityTolerant { inner, inbound: Inbound::new(), eof: false }
    }
}

impl<S: Connected> Connected for AuthorityTolerant<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityTolerant<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.inbound.out.is_empty() {
                let n = this.inbound.out.len().min(buf.remaining());
                buf.put_slice(&this.inbound.out[..n]);
                this.inbound.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut chunk_buf = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk_buf))?;
            let filled = chunk_buf.filled();
            if filled.is_empty() {
                // What is left unparsed is a frame cut short; h2 finds the
                // connection closed either way.
                this.eof = true;
                continue;
            }
            this.inbound.raw.extend_from_slice(filled);
            this.inbound.process()?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityTolerant<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Where the parser stands in the client's byte stream.
enum State {
    Preface {
        left: usize,
    },
    FrameHeader,
    /// A frame copied as it arrives, without being held whole.
    PassThrough {
        left: usize,
    },
}

/// A request's header block being gathered from HEADERS and CONTINUATIONs.
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    fragment: Vec<u8>,
}

/// The client-to-server direction: raw bytes in, rewritten bytes out.
struct Inbound {
    state: State,
    raw: BytesMut,
    out: BytesMut,
    pending: Option<PendingBlock>,
    decoder: loona_hpack::Decoder<'static>,
    encoder: loona_hpack::Encoder<'static>,
}

impl Inbound {
    fn new() -> Self {
        let mut encoder = loona_hpack::Encoder::new();
        // A table of size 0 is never referenced: the blocks berth sends need
        // nothing from h2's dynamic table, which the client's filled.
        encoder.set_max_table_size(0);
        let mut decoder = loona_hpack::Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Inbound {
            state: State::Preface { left: PREFACE_LEN },
            raw: BytesMut::new(),
            out: BytesMut::new(),
            pending: None,
            decoder,
            encoder,
        }
    }

    /// Moves every complete unit from `raw` to `out`.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Preface { left } | State::PassThrough { left } => {
                    let n = left.min(self.raw.len());
                    self.out.extend_from_slice(&self.raw.split_to(n));
                    if n < left {
                        self.state = match self.state {
                            State::Preface { .. } => State::Preface { left: left - n },
                            _ => State::PassThrough { left: left - n },
                        };
                        return Ok(());
                    }
                    self.state = State::FrameHeader;
                }
                State::FrameHeader => {
                    if self.raw.len() < FRAME_HEADER_LEN {
                        return Ok(());
                    }
                    let header = &self.raw[..FRAME_HEADER_LEN];
                    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
                    let kind = header[3];
                    if kind != HEADERS && kind != CONTINUATION {
                        if self.pending.is_some() {
                            return Err(invalid("a frame other than CONTINUATION inside a header block"));
                        }
                        self.out.extend_from_slice(&self.raw.split_to(FRAME_HEADER_LEN));
                        self.state = State::PassThrough { left: length };
                        continue;
                    }
                    // h2 would refuse a frame this large anyway; it is not held meanwhile.
                    if length > MAX_HEADER_BLOCK {
                        return Err(invalid("header frame larger than 1 MiB"));
                    }
                    if self.raw.len() < FRAME_HEADER_LEN + length {
                        return Ok(());
                    }
                    let frame = self.raw.split_to(FRAME_HEADER_LEN + length);
                    self.header_frame(&frame[..FRAME_HEADER_LEN], &frame[FRAME_HEADER_LEN..])?;
                }
            }
        }
    }

    fn header_frame(&mut self, header: &[u8], payload: &[u8]) -> io::Result<()> {
        let (kind, flags) = (header[3], header[4]);
        let stream_id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
        if kind == HEADERS {
            if self.pending.is_some() {
                return Err(invalid("HEADERS inside another header block"));
            }
            let (priority, fragment) = split_headers_payload(flags, payload)?;
            self.pending =
                Some(PendingBlock { stream_id, end_stream: flags & END_STREAM != 0, priority, fragment: Vec::new() });
            self.append(fragment)?;
        } else {
            match &self.pending {
                Some(block) if block.stream_id == stream_id => self.append(payload)?,
                _ => return Err(invalid("CONTINUATION outside a header block")),
            }
        }
        if flags & END_HEADERS != 0
            && let Some(block) = self.pending.take()
        {
            self.emit(block)?;
        }
        Ok(())
    }

    fn append(&mut self, fragment: &[u8]) -> io::Result<()> {
        if let Some(block) = &mut self.pending {
            if block.fragment.len() + fragment.len() > MAX_HEADER_BLOCK {
                return Err(invalid("header block larger than 1 MiB"));
            }
            block.fragment.extend_from_slice(fragment);
        }
        Ok(())
    }

    /// Decodes the block against the client's table and writes it again as
    /// one HEADERS frame (and CONTINUATIONs past the frame size).
    fn emit(&mut self, block: PendingBlock) -> io::Result<()> {
        let mut fields: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        self.decoder
            .decode_with_cb(&block.fragment, |name: Cow<[u8]>, value: Cow<[u8]>| {
                let refused = name.as_ref() == b":authority" && !is_valid_authority(&value);
                if !refused {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| invalid(&format!("undecodable header block: {e:?}")))?;
        let encoded = self.encoder.encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));

        let mut first = Vec::with_capacity(PRIORITY_LEN + encoded.len().min(MAX_FRAME_PAYLOAD));
        let mut flags = if block.end_stream { END_STREAM } else { 0 };
        if let Some(priority) = block.priority {
            first.extend_from_slice(&priority);
            flags |= PRIORITY;
        }
        let room = MAX_FRAME_PAYLOAD - first.len();
        let (head, mut rest) = encoded.split_at(encoded.len().min(room));
        first.extend_from_slice(head);
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        self.put_frame(HEADERS, flags, block.stream_id, &first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
            let flags = if after.is_empty() { END_HEADERS } else { 0 };
            self.put_frame(CONTINUATION, flags, block.stream_id, chunk);
            rest = after;
        }
        Ok(())
    }

    fn put_frame(&mut self, kind: u8, flags: u8, stream_id: u32, payload: &[u8]) {
        let length = payload.len() as u32;
        self.out.put_slice(&length.to_be_bytes()[1..]);
        self.out.put_u8(kind);
        self.out.put_u8(flags);
        self.out.put_u32(stream_id);
        self.out.put_slice(payload);
    }
}

/// A HEADERS payload without its padding: the priority fields, if flagged, and
/// the header block fragment.
fn split_headers_payload(flags: u8, payload: &[u8]) -> io::Result<(Option<[u8; PRIORITY_LEN]>, &[u8])> {
    let mut body = payload;
    if flags & PADDED != 0 {
        let (&pad, rest) = body.split_first().ok_or_else(|| invalid("PADDED HEADERS without a pad length"))?;
        body = rest
            .get(..rest.len().saturating_sub(pad as usize))
            .filter(|_| (pad as usize) <= rest.len())
            .ok_or_else(|| invalid("HEADERS padding longer than the frame"))?;
    }
    if flags & PRIORITY == 0 {
        return Ok((None, body));
    }
    match (body.get(..PRIORITY_LEN), body.get(PRIORITY_LEN..)) {
        (Some(priority), Some(rest)) => {
            let mut fields = [0u8; PRIORITY_LEN];
            fields.copy_from_slice(priority);
            Ok((Some(fields), rest))
        }
        _ => Err(invalid("PRIORITY HEADERS shorter than its priority fields")),
    }
}

/// What h2 takes as an `:authority`: the same check it makes.
fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2 from client: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream_id.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// A literal with incremental indexing and an indexed name, as grpc-go
    /// sends `:authority` (static index 1): it enters both tables.
    fn indexed_literal(name_index: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x40 | name_index, value.len() as u8];
        out.extend_from_slice(value);
        out
    }

    fn request_block(authority: &[u8]) -> Vec<u8> {
        // :method POST (static 3), :scheme http (6), :path /x (literal, name 4).
        let mut block = vec![0x83, 0x86];
        block.extend_from_slice(&indexed_literal(4, b"/runtime.v1.RuntimeService/Version"));
        block.extend_from_slice(&indexed_literal(1, authority));
        block
    }

    /// Feeds `input` through the adapter and parses the frames h2 would read.
    async fn rewrite(input: Vec<u8>) -> io::Result<Vec<(u8, u8, u32, Vec<u8>)>> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut adapter = AuthorityTolerant::new(server);
        client.write_all(&input).await?;
        client.shutdown().await?;
        let mut out = Vec::new();
        adapter.read_to_end(&mut out).await?;
        assert_eq!(&out[..PREFACE_LEN], PREFACE);
        let mut frames = Vec::new();
        let mut rest = &out[PREFACE_LEN..];
        while !rest.is_empty() {
            let length = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]);
            frames.push((rest[3], rest[4], stream, rest[9..9 + length].to_vec()));
            rest = &rest[9 + length..];
        }
        Ok(frames)
    }

    fn decode(decoder: &mut loona_hpack::Decoder<'_>, block: &[u8]) -> Vec<(String, String)> {
        decoder
            .decode(block)
            .unwrap()
            .into_iter()
            .map(|(n, v)| (String::from_utf8(n).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    }

    fn authority(fields: &[(String, String)]) -> Option<&str> {
        fields.iter().find(|(n, _)| n == ":authority").map(|(_, v)| v.as_str())
    }

    #[tokio::test]
    async fn invalid_authorities_are_dropped_and_the_client_table_is_followed() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(HEADERS, END_HEADERS, 1, &request_block(b"/run/berth/berth.sock")));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        // The second request refers to the first one's entries by index, as
        // grpc-go's encoder does: :authority is the newest entry (62).
        input.extend(frame(HEADERS, END_HEADERS, 3, &[0x83, 0x86, 0xbf, 0xbe]));
        input.extend(frame(HEADERS, END_HEADERS, 5, &request_block(b"%2Frun%2Fberth.sock")));
        input.extend(frame(HEADERS, END_HEADERS, 7, &request_block(b"")));
        input.extend(frame(HEADERS, END_HEADERS, 9, &request_block(b"localhost")));
        let frames = rewrite(input).await.unwrap();

        let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.2)).collect();
        assert_eq!(kinds, [(0x4, 0), (HEADERS, 1), (0x0, 1), (HEADERS, 3), (HEADERS, 5), (HEADERS, 7), (HEADERS, 9)]);
        assert_eq!(frames[2].3, b"\0\0\0\0\0", "DATA passes untouched");
        // h2's decoder sees only what berth encoded.
        let mut h2_decoder = loona_hpack::Decoder::new();
        let blocks: Vec<_> = frames.iter().filter(|f| f.0 == HEADERS).map(|f| decode(&mut h2_decoder, &f.3)).collect();
        for fields in &blocks {
            assert!(fields.contains(&(":path".into(), "/runtime.v1.RuntimeService/Version".into())), "{fields:?}");
            assert!(fields.contains(&(":method".into(), "POST".into())), "{fields:?}");
        }
        let authorities: Vec<_> = blocks.iter().map(|b| authority(b)).collect();
        assert_eq!(authorities, [None, None, None, None, Some("localhost")]);
    }

    #[tokio::test]
    async fn padding_priority_and_continuations_are_reassembled() {
        let block = request_block(b"/run/berth/berth.sock");
        let (head, tail) = block.split_at(3);
        let mut headers_payload = vec![4u8]; // pad length
        headers_payload.extend_from_slice(&[0x80, 0, 0, 0, 15]); // exclusive dependency on 0, weight 15
        headers_payload.extend_from_slice(head);
        headers_payload.extend_from_slice(&[0; 4]);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &headers_payload));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, tail));
        let frames = rewrite(input).await.unwrap();

        assert_eq!(frames.len(), 1);
        let (kind, flags, stream, payload) = &frames[0];
        assert_eq!((*kind, *flags, *stream), (HEADERS, END_STREAM | PRIORITY | END_HEADERS, 1));
        assert_eq!(&payload[..PRIORITY_LEN], &[0x80, 0, 0, 0, 15]);
        let fields = decode(&mut loona_hpack::Decoder::new(), &payload[PRIORITY_LEN..]);
        assert_eq!(authority(&fields), None);
        assert_eq!(fields.len(), 3, "{fields:?}");
    }

    #[tokio::test]
    async fn large_blocks_are_split_at_the_frame_size() {
        let mut block = request_block(b"localhost");
        let big = vec![b'a'; 40_000];
        // A literal without indexing with a new name: 0x00, name, value (long lengths).
        block.push(0x00);
        block.extend_from_slice(&[0x05]);
        block.extend_from_slice(b"x-big");
        block.extend_from_slice(&loona_hpack::encoder::encode_integer(big.len(), 7));
        block.extend_from_slice(&big);
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS, 1, &block));
        let frames = rewrite(input).await.unwrap();
        let kinds: Vec<_> = frames.iter().map(|f| (f.0, f.1 & END_HEADERS != 0, f.3.len())).collect();
        assert_eq!(kinds[0], (HEADERS, false, MAX_FRAME_PAYLOAD));
        assert_eq!(kinds.last().map(|k| (k.0, k.1)), Some((CONTINUATION, true)));
        let joined: Vec<u8> = frames.iter().flat_map(|f| f.3.clone()).collect();
        let fields = decode(&mut loona_hpack::Decoder::new(), &joined);
        assert!(fields.contains(&("x-big".into(), "a".repeat(40_000))));
    }

    #[tokio::test]
    async fn broken_framing_ends_the_connection() {
        for bad in [
            frame(CONTINUATION, END_HEADERS, 1, b"\x82"),
            [frame(HEADERS, 0, 1, b"\x82"), frame(0x0, 0, 1, b"x")].concat(),
            frame(HEADERS, END_HEADERS | PADDED, 1, &[9, 0x82]),
            frame(HEADERS, END_HEADERS, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            // A table size update past what h2 advertised: a client's way to grow
            // the table without bound.
            frame(HEADERS, END_HEADERS, 1, &[&[0x3f, 0xe2, 0x1f][..], &[0x82]].concat()),
        ] {
            let mut input = PREFACE.to_vec();
            input.extend(bad);
            let err = rewrite(input).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        }
    }

    #[tokio::test]
    async fn oversized_header_frames_are_refused_before_they_are_buffered() {
        let mut input = PREFACE.to_vec();
        // Only the frame header of a 16 MiB HEADERS frame is sent.
        input.extend_from_slice(&frame(HEADERS, END_HEADERS, 1, &[])[..FRAME_HEADER_LEN]);
        input[PREFACE_LEN..PREFACE_LEN + 3].copy_from_slice(&[0xff, 0xff, 0xff]);
        let err = rewrite(input).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    }

    #[test]
    fn random_header_blocks_never_panic() {
        // Header blocks are a client's input: whatever they hold, the outcome
        // is a rewritten block or an error.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut inbound = Inbound::new();
            let len = (next() % 64) as usize;
            let block: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = inbound.emit(PendingBlock { stream_id: 1, end_stream: false, priority: None, fragment: block });
        }
    }

    #[tokio::test]
    async fn frames_split_across_reads_pass_intact() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x0, 0, 1, &vec![7u8; 50_000]));
        input.extend(frame(HEADERS, END_HEADERS, 3, &request_block(b"localhost")));
        let frames = rewrite(input).await.unwrap();
        assert_eq!(frames[0].3, vec![7u8; 50_000]);
        assert_eq!(frames[1].0, HEADERS);
    }
}
