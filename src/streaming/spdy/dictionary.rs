//! The zlib dictionary that SPDY/3 header blocks are compressed against.
//!
//! The draft defines it as a run of length-prefixed words followed by one
//! string of status lines, dates and media types. Writing it in that shape
//! (rather than as 1423 opaque bytes) keeps it reviewable against the draft;
//! the unit test pins its length and Adler-32, which is the id that zlib puts
//! in the stream header and that the peer checks.

/// Each word is preceded by its length as a big-endian u32.
const WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// Appended verbatim, without a length prefix.
const TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,public",
    "privatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

const fn dictionary_len() -> usize {
    let mut len = TAIL.len();
    let mut i = 0;
    while i < WORDS.len() {
        len += 4 + WORDS[i].len();
        i += 1;
    }
    len
}

const fn build() -> [u8; dictionary_len()] {
    let mut out = [0u8; dictionary_len()];
    let mut pos = 0;
    let mut i = 0;
    while i < WORDS.len() {
        let word = WORDS[i].as_bytes();
        let len = (word.len() as u32).to_be_bytes();
        let mut j = 0;
        while j < 4 {
            out[pos] = len[j];
            pos += 1;
            j += 1;
        }
        let mut j = 0;
        while j < word.len() {
            out[pos] = word[j];
            pos += 1;
            j += 1;
        }
        i += 1;
    }
    let tail = TAIL.as_bytes();
    let mut j = 0;
    while j < tail.len() {
        out[pos] = tail[j];
        pos += 1;
        j += 1;
    }
    out
}

pub(crate) static DICTIONARY: [u8; dictionary_len()] = build();

/// Adler-32 of [`DICTIONARY`]: the dictionary id in the zlib stream header.
pub(crate) const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_draft() {
        assert_eq!(DICTIONARY.len(), 1423);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
        let mut z = flate2::Compress::new(flate2::Compression::default(), true);
        let adler = z.set_dictionary(&DICTIONARY).unwrap();
        assert_eq!(adler, DICTIONARY_ID);
    }
}
