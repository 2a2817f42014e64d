//! Property tests of the frame and header-block decoders against generated
//! input: arbitrary bytes, frame-shaped junk, and valid frames mutated on the
//! wire. The decoders face an untrusted peer, so whatever arrives they must
//! not panic, must keep what they hold within the module's caps, and must
//! either decode or fail.

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config as ProptestConfig;

use super::dictionary::DICTIONARY;
use super::error::{Error, RstStatus};
use super::frame::{self, Frame, Head, MAX_CONTROL_FRAME_LEN, MAX_FRAME_LEN, MAX_STREAM_ID, Setting};
use super::header_block::{self, HeaderDecoder, HeaderEncoder};
use super::headers::{Headers, MAX_HEADER_BLOCK};

/// A failure is kept as a named regression test below rather than in a file
/// beside the sources; shrinking is bounded so a failure reports quickly.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 2048, ..ProptestConfig::default() }
}

// ---- the invariants -------------------------------------------------------------------------

/// The bytes a decoded block makes us hold (names are repeated per value).
fn held_bytes(headers: &Headers) -> usize {
    headers.iter().map(|(name, value)| name.len() + value.len()).sum()
}

fn check_headers(headers: &Headers) {
    assert!(
        held_bytes(headers) <= MAX_HEADER_BLOCK,
        "a decoded header block holds {} bytes, over the {MAX_HEADER_BLOCK}-byte cap",
        held_bytes(headers)
    );
    assert!(headers.iter().all(|(name, _)| !name.is_empty()), "empty header name accepted");
}

fn check_frame(frame: &Frame) {
    match frame {
        Frame::SynStream { id, headers, .. }
        | Frame::SynReply { id, headers, .. }
        | Frame::Headers { id, headers, .. } => {
            assert!(*id != 0 && *id <= MAX_STREAM_ID, "stream id {id}");
            check_headers(headers);
        }
        Frame::Data { id, data, .. } => {
            assert!(*id != 0 && *id <= MAX_STREAM_ID, "stream id {id}");
            assert!(data.len() <= MAX_FRAME_LEN);
        }
        Frame::RstStream { id, status } => assert!(*id != 0 && status.0 != 0),
        Frame::Settings { entries, .. } => assert!(entries.len() * 8 + 4 <= MAX_CONTROL_FRAME_LEN),
        Frame::WindowUpdate { id, delta } => assert!(*id <= MAX_STREAM_ID && *delta <= 0x7fff_ffff),
        Frame::GoAway { last_good, .. } => assert!(*last_good <= MAX_STREAM_ID),
        Frame::Ping { .. } => {}
    }
}

/// Reads and decodes frames as the session's reader does, through one header
/// context, until the input ends or the first error (which ends a session).
fn decode_wire(wire: &[u8]) -> (Vec<Frame>, Option<Error>) {
    futures::executor::block_on(async {
        let mut reader = wire;
        let mut headers = HeaderDecoder::new();
        let mut frames = Vec::new();
        loop {
            let raw = match frame::read_frame(&mut reader).await {
                Ok(Some(raw)) => raw,
                Ok(None) => return (frames, None),
                Err(e) => return (frames, Some(e)),
            };
            match raw.head {
                Head::Control { len, .. } => {
                    assert!(raw.payload.is_empty() || raw.payload.len() == len, "payload differs from its length");
                    assert!(raw.payload.len() <= MAX_CONTROL_FRAME_LEN, "control payload over the cap");
                }
                Head::Data { len, .. } => assert!(raw.payload.len() == len && len <= MAX_FRAME_LEN),
            }
            match frame::decode(raw, &mut headers) {
                Ok(Some(frame)) => {
                    check_frame(&frame);
                    frames.push(frame);
                }
                Ok(None) => {}
                Err(e) => return (frames, Some(e)),
            }
        }
    })
}

// ---- generating frames and header blocks ----------------------------------------------------

fn header_name() -> impl Strategy<Value = String> {
    "[a-z0-9:_.-]{1,12}"
}

fn header_value() -> impl Strategy<Value = String> {
    // Any text but NUL, which separates values on the wire.
    "[^\u{0}]{0,24}"
}

fn headers() -> impl Strategy<Value = Headers> {
    vec((header_name(), header_value()), 0..6).prop_map(|pairs| pairs.into_iter().collect())
}

fn stream_id() -> impl Strategy<Value = u32> {
    prop_oneof![1..=8u32, 1..=MAX_STREAM_ID]
}

fn valid_frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (stream_id(), 0..=MAX_STREAM_ID, 0..8u8, any::<bool>(), any::<bool>(), headers()).prop_map(
            |(id, associated_to, priority, fin, unidirectional, headers)| Frame::SynStream {
                id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers
            }
        ),
        (stream_id(), any::<bool>(), headers()).prop_map(|(id, fin, headers)| Frame::SynReply { id, fin, headers }),
        (stream_id(), any::<bool>(), headers()).prop_map(|(id, fin, headers)| Frame::Headers { id, fin, headers }),
        (stream_id(), 1..=u32::MAX).prop_map(|(id, status)| Frame::RstStream { id, status: RstStatus(status) }),
        (any::<bool>(), vec((any::<u8>(), 0..=0x00ff_ffffu32, any::<u32>()), 0..6)).prop_map(|(clear, entries)| {
            let entries = entries.into_iter().map(|(flags, id, value)| Setting { flags, id, value }).collect();
            Frame::Settings { clear, entries }
        }),
        any::<u32>().prop_map(|id| Frame::Ping { id }),
        (0..=MAX_STREAM_ID, any::<u32>()).prop_map(|(last_good, status)| Frame::GoAway { last_good, status }),
        (0..=MAX_STREAM_ID, 0..=0x7fff_ffffu32).prop_map(|(id, delta)| Frame::WindowUpdate { id, delta }),
        (stream_id(), any::<bool>(), vec(any::<u8>(), 0..64)).prop_map(|(id, fin, data)| Frame::Data {
            id,
            fin,
            data: Bytes::from(data)
        }),
    ]
}

/// The wire groups values by name in order of first appearance, so that is
/// the order a block comes back in.
fn as_received(frame: &Frame) -> Frame {
    let regroup = |headers: &Headers| -> Headers {
        headers.grouped().into_iter().flat_map(|(name, values)| values.into_iter().map(move |v| (name, v))).collect()
    };
    match frame.clone() {
        Frame::SynStream { id, associated_to, priority, fin, unidirectional, headers } => {
            Frame::SynStream { id, associated_to, priority, fin, unidirectional, headers: regroup(&headers) }
        }
        Frame::SynReply { id, fin, headers } => Frame::SynReply { id, fin, headers: regroup(&headers) },
        Frame::Headers { id, fin, headers } => Frame::Headers { id, fin, headers: regroup(&headers) },
        other => other,
    }
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut encoder = HeaderEncoder::new().unwrap();
    let mut wire = BytesMut::new();
    for frame in frames {
        frame::encode(frame, &mut encoder, &mut wire).unwrap();
    }
    wire.to_vec()
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Insert(Index, Vec<u8>),
    Remove(Index, usize),
    Truncate(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        3 => (any::<Index>(), prop_oneof![Just(0u8), Just(0xff), Just(0x80), any::<u8>()])
            .prop_map(|(at, byte)| Mutation::SetByte(at, byte)),
        1 => (any::<Index>(), vec(any::<u8>(), 1..16)).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        1 => (any::<Index>(), 1..16usize).prop_map(|(at, len)| Mutation::Remove(at, len)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        if bytes.is_empty() {
            break;
        }
        match mutation {
            Mutation::FlipBit(at, bit) => {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            Mutation::SetByte(at, byte) => {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            Mutation::Insert(at, inserted) => {
                let i = at.index(bytes.len() + 1);
                bytes.splice(i..i, inserted.iter().copied());
            }
            Mutation::Remove(at, len) => {
                let i = at.index(bytes.len());
                let end = (i + len).min(bytes.len());
                bytes.drain(i..end);
            }
            Mutation::Truncate(at) => bytes.truncate(at.index(bytes.len())),
        }
    }
    bytes
}

/// A frame-shaped chunk: a prefix whose fields and length may lie, then junk.
fn frame_like() -> impl Strategy<Value = Vec<u8>> {
    let control = (
        prop_oneof![4 => Just(3u16), 1 => 0..=0x7fffu16],
        prop_oneof![4 => 0..=10u16, 1 => any::<u16>()],
        any::<u8>(),
        vec(any::<u8>(), 0..48),
        prop_oneof![3 => Just(None), 1 => (0..=0x00ff_ffffu32).prop_map(Some)],
    )
        .prop_map(|(version, kind, flags, payload, lie)| {
            let len = lie.unwrap_or(payload.len() as u32);
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&(0x8000 | version).to_be_bytes());
            bytes.extend_from_slice(&kind.to_be_bytes());
            bytes.extend_from_slice(&((u32::from(flags) << 24) | len).to_be_bytes());
            bytes.extend_from_slice(&payload);
            bytes
        });
    let data = (any::<u32>(), any::<u8>(), vec(any::<u8>(), 0..48), prop_oneof![Just(None), (0..64u32).prop_map(Some)])
        .prop_map(|(id, flags, payload, lie)| {
            let len = lie.unwrap_or(payload.len() as u32);
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&(id & MAX_STREAM_ID).to_be_bytes());
            bytes.extend_from_slice(&((u32::from(flags) << 24) | len).to_be_bytes());
            bytes.extend_from_slice(&payload);
            bytes
        });
    prop_oneof![3 => control, 2 => data, 1 => vec(any::<u8>(), 0..32)]
}

/// An uncompressed header block whose counts and lengths may lie and whose
/// fields may hold NULs and invalid UTF-8.
fn plain_block() -> impl Strategy<Value = Vec<u8>> {
    let field_bytes = vec(prop_oneof![4 => b'a'..=b'e', 1 => Just(0u8), 1 => Just(b'A'), 1 => any::<u8>()], 0..24);
    let field = (field_bytes, prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)]);
    (
        vec((field.clone(), field), 0..6),
        prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)],
        vec(any::<u8>(), 0..2),
    )
        .prop_map(|(pairs, count_lie, trailer)| {
            let mut block = Vec::new();
            block.extend_from_slice(&count_lie.unwrap_or(pairs.len() as u32).to_be_bytes());
            for ((name, name_lie), (value, value_lie)) in pairs {
                block.extend_from_slice(&name_lie.unwrap_or(name.len() as u32).to_be_bytes());
                block.extend_from_slice(&name);
                block.extend_from_slice(&value_lie.unwrap_or(value.len() as u32).to_be_bytes());
                block.extend_from_slice(&value);
            }
            block.extend_from_slice(&trailer);
            block
        })
}

/// The compressing side of a peer: SPDY's dictionary, one sync-flushed block per call.
struct Deflater(Compress);

impl Deflater {
    fn new() -> Self {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&DICTIONARY).unwrap();
        Deflater(z)
    }

    fn block(&mut self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(plain.len() + 1024);
        let start = self.0.total_in();
        loop {
            let consumed = (self.0.total_in() - start) as usize;
            out.reserve(1024);
            self.0.compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync).unwrap();
            if (self.0.total_in() - start) as usize == plain.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// A block of `len` serialised bytes: one name, one value of the rest.
fn block_of_len(len: usize) -> Headers {
    Headers::from([("a", "v".repeat(len - 13))])
}

// ---- the properties -------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn arbitrary_bytes_decode_or_fail(wire in vec(any::<u8>(), 0..512)) {
        decode_wire(&wire);
    }

    #[test]
    fn frame_shaped_junk_decodes_or_fails(chunks in vec(frame_like(), 0..8)) {
        decode_wire(&chunks.concat());
    }

    #[test]
    fn plain_blocks_parse_or_fail(block in plain_block()) {
        if let Ok(headers) = header_block::parse(&block) {
            check_headers(&headers);
        }
    }

    #[test]
    fn arbitrary_bytes_as_a_compressed_block_fail_cleanly(input in vec(any::<u8>(), 0..256)) {
        if let Ok(headers) = HeaderDecoder::new().decode(&input) {
            check_headers(&headers);
        }
    }
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn valid_frames_round_trip(frames in vec(valid_frame(), 1..8)) {
        let (decoded, error) = decode_wire(&encode_all(&frames));
        prop_assert!(error.is_none(), "{error:?}");
        let expected: Vec<Frame> = frames.iter().map(as_received).collect();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn mutated_valid_frames_decode_or_fail(
        frames in vec(valid_frame(), 1..8),
        mutations in vec(mutation(), 1..6),
    ) {
        decode_wire(&mutate(encode_all(&frames), &mutations));
    }

    /// Inflating is checked against parsing the same bytes uncompressed, block
    /// after block through one context: a parse error leaves the context in step.
    #[test]
    fn compressed_blocks_decode_as_their_plain_form(blocks in vec(plain_block(), 1..6)) {
        let mut deflater = Deflater::new();
        let mut decoder = HeaderDecoder::new();
        for plain in &blocks {
            let decoded = decoder.decode(&deflater.block(plain));
            match (header_block::parse(plain), decoded) {
                (Ok(want), Ok(got)) => {
                    check_headers(&got);
                    prop_assert_eq!(got, want);
                }
                (Err(_), Err(_)) => {}
                (want, got) => prop_assert!(false, "plain {want:?}, inflated {got:?}"),
            }
        }
    }

    #[test]
    fn mutated_compressed_blocks_decode_or_fail(
        blocks in vec(plain_block(), 1..4),
        mutations in vec(mutation(), 1..4),
    ) {
        let mut deflater = Deflater::new();
        let compressed: Vec<Vec<u8>> = blocks.iter().map(|plain| deflater.block(plain)).collect();
        let mut decoder = HeaderDecoder::new();
        for (i, block) in compressed.into_iter().enumerate() {
            // One mutated block among intact ones: later blocks then meet a broken context.
            let block = if i == mutations.len() % blocks.len() { mutate(block, &mutations) } else { block };
            match decoder.decode(&block) {
                Ok(headers) => check_headers(&headers),
                Err(_) => break,
            }
        }
    }
}

proptest! {
    // Blocks near the cap cost a quarter MiB each to deflate and inflate.
    #![proptest_config(config(64))]

    /// A block the encoder sends, the decoder takes back, up to just under the cap.
    #[test]
    fn blocks_under_the_cap_round_trip(len in prop_oneof![13..4096usize, (MAX_HEADER_BLOCK - 4096)..MAX_HEADER_BLOCK]) {
        let headers = block_of_len(len);
        prop_assert!(headers.validate().is_ok());
        let mut out = BytesMut::new();
        HeaderEncoder::new().unwrap().encode(&headers, &mut out).unwrap();
        prop_assert_eq!(HeaderDecoder::new().decode(&out).unwrap(), headers);
    }

    /// Inflating stops at the cap, however well the block compresses.
    #[test]
    fn blocks_over_the_cap_are_refused(extra in prop_oneof![1..64usize, 64..(4 * MAX_HEADER_BLOCK)], fill in any::<u8>()) {
        let mut plain = Vec::new();
        header_block::serialize(&Headers::from([("a", "")]), &mut plain).unwrap();
        let value_len = MAX_HEADER_BLOCK + extra - plain.len();
        plain.truncate(plain.len() - 4);
        plain.extend_from_slice(&(value_len as u32).to_be_bytes());
        plain.resize(MAX_HEADER_BLOCK + extra, fill);
        let err = HeaderDecoder::new().decode(&Deflater::new().block(&plain)).unwrap_err();
        prop_assert!(err.to_string().contains("inflates past"), "{}", err);
    }
}

// ---- regressions found by the properties above ----------------------------------------------

/// `parse` pushes one entry per NUL-separated value, each with its own copy of
/// the name, so a name of n bytes and a value of k NULs made n·(k+1) bytes out
/// of an (n+k+12)-byte block: 16 MiB from these 8 KiB (which deflate to a few
/// dozen bytes), 16 GiB at the 256 KiB cap. The parsed size is now capped too.
#[test]
fn repeated_values_cannot_multiply_the_name() {
    let mut plain = Vec::new();
    header_block::serialize(&Headers::from([("n".repeat(4096), "\0".repeat(4095))]), &mut plain).unwrap();
    assert!(plain.len() < 8300);
    let compressed = Deflater::new().block(&plain);
    assert!(compressed.len() < 200, "{}", compressed.len());
    if let Ok(headers) = HeaderDecoder::new().decode(&compressed) {
        check_headers(&headers);
    }
}

/// `Headers::validate` lets a block of exactly MAX_HEADER_BLOCK bytes be sent,
/// and the decoder took an output buffer filled to the cap for overflow.
#[test]
fn a_block_of_exactly_the_cap_round_trips() {
    let headers = block_of_len(MAX_HEADER_BLOCK);
    assert!(headers.validate().is_ok());
    let mut out = BytesMut::new();
    HeaderEncoder::new().unwrap().encode(&headers, &mut out).unwrap();
    assert_eq!(HeaderDecoder::new().decode(&out).unwrap(), headers);
}
