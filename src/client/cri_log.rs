//! The CRI log format kubelet reads: `<RFC3339Nano> <stdout|stderr> <P|F> <content>`,
//! one record a line; `P` records are parts of a line the next `F` ends.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One whole line of the container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub timestamp: String,
    pub stream: Stream,
    /// With its newline.
    pub content: Vec<u8>,
}

/// Turns records into whole lines, joining the parts of each stream.
#[derive(Debug, Default)]
pub struct Joiner {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Joiner {
    /// One record, without its newline; a whole line when it ends one. A
    /// record that does not parse is shown as it is, on stdout, rather than lost.
    pub fn push(&mut self, record: &[u8]) -> Option<Entry> {
        let Some((timestamp, stream, full, content)) = parse(record) else {
            let mut content = record.to_vec();
            content.push(b'\n');
            return Some(Entry { timestamp: String::new(), stream: Stream::Stdout, content });
        };
        let pending = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        pending.extend_from_slice(content);
        if !full {
            return None;
        }
        let mut content = std::mem::take(pending);
        content.push(b'\n');
        Some(Entry { timestamp, stream, content })
    }
}

fn parse(record: &[u8]) -> Option<(String, Stream, bool, &[u8])> {
    let mut fields = record.splitn(4, |&b| b == b' ');
    let timestamp = std::str::from_utf8(fields.next()?).ok()?.to_string();
    let stream = match fields.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match fields.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    Some((timestamp, stream, full, fields.next().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_joined_per_stream() {
        let mut joiner = Joiner::default();
        assert_eq!(joiner.push(b"2024-01-01T00:00:00.1Z stdout P hel"), None);
        let err = joiner.push(b"2024-01-01T00:00:00.2Z stderr F oops").unwrap();
        assert_eq!((err.stream, err.content.as_slice()), (Stream::Stderr, &b"oops\n"[..]));
        let out = joiner.push(b"2024-01-01T00:00:00.3Z stdout F lo world").unwrap();
        assert_eq!(out.content, b"hello world\n");
        assert_eq!(out.timestamp, "2024-01-01T00:00:00.3Z");
        let empty = joiner.push(b"2024-01-01T00:00:00.4Z stdout F").unwrap();
        assert_eq!(empty.content, b"\n");
        assert_eq!(joiner.push(b"garbage").unwrap().content, b"garbage\n");
    }
}
