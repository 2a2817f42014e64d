//! SPDY/3 name/value header blocks and their zlib contexts.
//!
//! Each direction of a session has ONE zlib stream that spans every header
//! block it carries: the sender flushes with Z_SYNC_FLUSH at the end of each
//! frame and never finishes the stream, so a block can only be inflated after
//! all earlier blocks of the same direction. That is why the encoder lives in
//! the session's writer task and the decoder in its reader task, and why every
//! header-bearing frame must be decoded even when the session then ignores it.

use bytes::{BufMut, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::{DICTIONARY, DICTIONARY_ID};
use super::error::Error;
use super::headers::{Headers, MAX_HEADER_BLOCK};

/// Appends the uncompressed block: u32 pair count, then per name a u32 length
/// and the name, a u32 length and the NUL-joined values.
pub(crate) fn serialize(headers: &Headers, out: &mut Vec<u8>) -> Result<(), Error> {
    let groups = headers.grouped();
    out.put_u32(wire_len(groups.len())?);
    for (name, values) in groups {
        out.put_u32(wire_len(name.len())?);
        out.extend_from_slice(name.as_bytes());
        let value_len = values.iter().map(|v| v.len()).sum::<usize>() + values.len().saturating_sub(1);
        out.put_u32(wire_len(value_len)?);
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                out.push(0);
            }
            out.extend_from_slice(value.as_bytes());
        }
    }
    Ok(())
}

fn wire_len(len: usize) -> Result<u32, Error> {
    u32::try_from(len).map_err(|_| Error::protocol("header block too large"))
}

/// Parses an uncompressed block. Every length is checked against what is
/// left, so a lying count or length is an error, never a large allocation.
pub(crate) fn parse(block: &[u8]) -> Result<Headers, Error> {
    let mut rest = block;
    let count = take_u32(&mut rest)? as usize;
    // A pair needs at least its two length words: this bounds `count` by the
    // input actually present.
    if count > rest.len() / 8 {
        return Err(Error::protocol(format!("header block claims {count} pairs in {} bytes", rest.len())));
    }
    let mut headers = Headers::new();
    // What the parsed headers hold: each NUL-separated value carries its own copy
    // of the name, so a long name with many NULs would multiply past the block.
    let mut parsed_size = 0usize;
    for _ in 0..count {
        let name = take_str(&mut rest)?;
        if name.is_empty() {
            return Err(Error::protocol("empty header name"));
        }
        // The draft requires lowercase names; accepting and folding uppercase
        // costs nothing and matches what spdystream does with its own input.
        let name = name.to_ascii_lowercase();
        let value = take_str(&mut rest)?;
        for part in value.split('\0') {
            parsed_size = parsed_size.saturating_add(name.len() + part.len());
            if parsed_size > MAX_HEADER_BLOCK {
                return Err(Error::protocol(format!("header block expands past {MAX_HEADER_BLOCK} bytes of headers")));
            }
            headers.push_raw(name.clone(), part.to_owned());
        }
    }
    if !rest.is_empty() {
        return Err(Error::protocol(format!("{} stray bytes after header block", rest.len())));
    }
    Ok(headers)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, Error> {
    let Some((head, tail)) = rest.split_first_chunk::<4>() else {
        return Err(Error::protocol("truncated header block"));
    };
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

fn take_str<'a>(rest: &mut &'a [u8]) -> Result<&'a str, Error> {
    let len = take_u32(rest)? as usize;
    if len > rest.len() {
        return Err(Error::protocol(format!("header field of {len} bytes overruns its block")));
    }
    let (field, tail) = rest.split_at(len);
    *rest = tail;
    std::str::from_utf8(field).map_err(|_| Error::protocol("header field is not UTF-8"))
}

/// Compressing side of one direction.
pub(crate) struct HeaderEncoder {
    z: Compress,
    plain: Vec<u8>,
    compressed: Vec<u8>,
}

impl HeaderEncoder {
    pub(crate) fn new() -> Result<Self, Error> {
        let mut z = Compress::new(Compression::default(), true);
        // Setting the dictionary before the first byte makes zlib announce its
        // id in the stream header, which the peer's inflater requires.
        z.set_dictionary(&DICTIONARY).map_err(|e| Error::Compression(e.to_string()))?;
        Ok(Self { z, plain: Vec::new(), compressed: Vec::new() })
    }

    /// Appends the compressed block for `headers` to `out`.
    pub(crate) fn encode(&mut self, headers: &Headers, out: &mut BytesMut) -> Result<(), Error> {
        self.plain.clear();
        serialize(headers, &mut self.plain)?;
        self.compressed.clear();
        let start = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start) as usize;
            let input = self.plain.get(consumed..).unwrap_or_default();
            self.compressed.reserve(input.len() + 64);
            let before_out = self.compressed.len();
            self.z
                .compress_vec(input, &mut self.compressed, FlushCompress::Sync)
                .map_err(|e| Error::Compression(e.to_string()))?;
            let consumed_now = (self.z.total_in() - start) as usize;
            // With a sync flush the block is complete once all input is taken
            // and zlib stopped short of filling the output space.
            if consumed_now >= self.plain.len() && self.compressed.len() < self.compressed.capacity() {
                break;
            }
            if consumed_now == consumed && self.compressed.len() == before_out {
                return Err(Error::Compression("deflate made no progress".into()));
            }
        }
        out.extend_from_slice(&self.compressed);
        Ok(())
    }
}

/// Inflating side of one direction.
pub(crate) struct HeaderDecoder {
    z: Decompress,
    out: Vec<u8>,
}

impl HeaderDecoder {
    pub(crate) fn new() -> Self {
        Self { z: Decompress::new(true), out: Vec::new() }
    }

    /// Inflates one frame's block and parses it.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<Headers, Error> {
        self.out.clear();
        let start = self.z.total_in();
        loop {
            let consumed = (self.z.total_in() - start) as usize;
            // Room for one byte past the cap: a block of exactly the cap is only
            // told from a larger one by zlib having nothing more to give.
            if self.out.len() == self.out.capacity() {
                if self.out.len() > MAX_HEADER_BLOCK {
                    return Err(Error::protocol(format!("header block inflates past {MAX_HEADER_BLOCK} bytes")));
                }
                // Doubling, from 256 bytes, up to the cap's one byte more (never
                // `clamp`, which panics once what is left is under 256 bytes).
                let grow = self.out.len().max(256).min(MAX_HEADER_BLOCK + 1 - self.out.len());
                self.out.reserve_exact(grow);
            }
            let before_out = self.out.len();
            let rest = input.get(consumed..).unwrap_or_default();
            match self.z.decompress_vec(rest, &mut self.out, FlushDecompress::Sync) {
                Ok(Status::Ok | Status::BufError) => {}
                Ok(Status::StreamEnd) => {
                    // A finished stream leaves no context for later blocks.
                    return Err(Error::protocol("peer ended the header zlib stream"));
                }
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.z.set_dictionary(&DICTIONARY).map_err(|e| Error::Compression(e.to_string()))?;
                        continue;
                    }
                    Some(other) => {
                        return Err(Error::protocol(format!("header block wants unknown dictionary {other:#x}")));
                    }
                    None => return Err(Error::Compression(e.to_string())),
                },
            }
            if self.out.len() > MAX_HEADER_BLOCK {
                return Err(Error::protocol(format!("header block inflates past {MAX_HEADER_BLOCK} bytes")));
            }
            let consumed_now = (self.z.total_in() - start) as usize;
            if consumed_now >= input.len() && self.out.len() < self.out.capacity() {
                break;
            }
            if consumed_now == consumed && self.out.len() == before_out {
                return Err(Error::protocol("truncated header block"));
            }
        }
        parse(&self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(enc: &mut HeaderEncoder, dec: &mut HeaderDecoder, h: &Headers) -> Headers {
        let mut out = BytesMut::new();
        enc.encode(h, &mut out).unwrap();
        dec.decode(&out).unwrap()
    }

    #[test]
    fn plain_block_layout() {
        let mut out = Vec::new();
        serialize(&Headers::from([("a", "1"), ("bc", "2"), ("a", "3")]), &mut out).unwrap();
        assert_eq!(out, b"\0\0\0\x02\0\0\0\x01a\0\0\0\x031\x003\0\0\0\x02bc\0\0\0\x012");
        let parsed = parse(&out).unwrap();
        assert_eq!(parsed.iter().collect::<Vec<_>>(), [("a", "1"), ("a", "3"), ("bc", "2")]);
    }

    #[test]
    fn parse_rejects_lies() {
        // Count larger than the bytes present.
        assert!(parse(b"\xff\xff\xff\xff").is_err());
        // Name length overruns.
        assert!(parse(b"\0\0\0\x01\0\0\0\x09ab\0\0\0\0").is_err());
        // Trailing bytes.
        assert!(parse(b"\0\0\0\0x").is_err());
        // Empty name.
        assert!(parse(b"\0\0\0\x01\0\0\0\0\0\0\0\0").is_err());
        // Truncated count.
        assert!(parse(b"\0\0").is_err());
        // Uppercase is folded.
        let h = parse(b"\0\0\0\x01\0\0\0\x01A\0\0\0\x01x").unwrap();
        assert_eq!(h.get("a"), Some("x"));
    }

    #[test]
    fn stateful_context_across_blocks() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut dec = HeaderDecoder::new();
        let a = Headers::from([("streamtype", "stdout"), ("port", "8080")]);
        let b = Headers::new();
        let c = Headers::from([("streamtype", "error"), ("x", "a"), ("x", "b")]);
        for h in [&a, &b, &c, &a, &a] {
            assert_eq!(&roundtrip(&mut enc, &mut dec, h), h);
        }
    }

    #[test]
    fn stream_header_announces_the_dictionary() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut out = BytesMut::new();
        enc.encode(&Headers::new(), &mut out).unwrap();
        // CMF/FLG with FDICT set, then the dictionary id.
        assert_eq!(out[1] & 0x20, 0x20);
        assert_eq!(u32::from_be_bytes([out[2], out[3], out[4], out[5]]), DICTIONARY_ID);
    }

    #[test]
    fn second_block_needs_the_first() {
        let mut enc = HeaderEncoder::new().unwrap();
        let mut first = BytesMut::new();
        enc.encode(&Headers::from([("k", "v")]), &mut first).unwrap();
        let mut second = BytesMut::new();
        enc.encode(&Headers::from([("k", "v")]), &mut second).unwrap();
        // A fresh context cannot start in the middle of the stream.
        assert!(HeaderDecoder::new().decode(&second).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = HeaderDecoder::new();
        assert!(dec.decode(b"\x78\xbb\x00\x00\x00\x00garbage").is_err());
        assert!(HeaderDecoder::new().decode(b"").is_err());
        assert!(HeaderDecoder::new().decode(&[0xffu8; 64]).is_err());
    }

    #[test]
    fn inflation_bomb_is_capped() {
        // A block that inflates to far more than the cap: compress it with the
        // same dictionary so that only the size check can stop it.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(&DICTIONARY).unwrap();
        let mut plain = Vec::new();
        plain.extend_from_slice(&1u32.to_be_bytes());
        plain.extend_from_slice(&1u32.to_be_bytes());
        plain.push(b'a');
        let big = 4 * MAX_HEADER_BLOCK;
        plain.extend_from_slice(&(big as u32).to_be_bytes());
        plain.resize(plain.len() + big, b'x');
        let mut compressed = Vec::with_capacity(big);
        z.compress_vec(&plain, &mut compressed, FlushCompress::Sync).unwrap();
        assert!(compressed.len() < 64 * 1024);
        let err = HeaderDecoder::new().decode(&compressed).unwrap_err();
        assert!(err.to_string().contains("inflates past"), "{err}");
    }
}
