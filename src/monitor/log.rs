//! The CRI log file: `<RFC3339Nano UTC> <stdout|stderr> <F|P> <content>\n` per entry.
//! A line longer than [`MAX_LINE`] becomes `P` (partial) entries and a final `F`.
//! Output that ends without a newline is written as `P` at end of stream, as
//! containerd and conmon do: it is not a full line, and kubelet joins partials.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The longest content of one entry; kubelet's and containerd's limit.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The open log file, reopened at the same path on request (log rotation).
pub struct CriLog {
    path: PathBuf,
    file: File,
}

impl CriLog {
    pub fn open(path: &Path) -> io::Result<CriLog> {
        Ok(CriLog { path: path.to_path_buf(), file: open_append(path)? })
    }

    /// kubelet renamed the file away: later entries go to a new file at the path.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    /// Writes one entry in a single write, so a reader never sees half an entry.
    /// A failed write (disk full) loses the entry: the container must not stall.
    pub fn write_entry(&mut self, stream: Stream, partial: bool, content: &[u8]) {
        let tag = if partial { "P" } else { "F" };
        let mut entry = Vec::with_capacity(content.len() + 64);
        entry.extend_from_slice(format!("{} {} {tag} ", rfc3339_nano(SystemTime::now()), stream.name()).as_bytes());
        entry.extend_from_slice(content);
        entry.push(b'\n');
        let _ = self.file.write_all(&entry);
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).mode(0o640).custom_flags(nix::libc::O_CLOEXEC).open(path)
}

/// One stream's line assembly: bytes in, whole entries out.
#[derive(Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Emits each completed line (without its newline) as full, and each
    /// [`MAX_LINE`] bytes of a longer line as partial; keeps the rest.
    pub fn feed(&mut self, mut data: &[u8], mut emit: impl FnMut(bool, &[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.pending.len();
            let window = &data[..data.len().min(room)];
            if let Some(newline) = window.iter().position(|&b| b == b'\n') {
                self.pending.extend_from_slice(&window[..newline]);
                emit(false, &self.pending);
                self.pending.clear();
                data = &data[newline + 1..];
            } else {
                self.pending.extend_from_slice(window);
                data = &data[window.len()..];
                if self.pending.len() == MAX_LINE {
                    emit(true, &self.pending);
                    self.pending.clear();
                }
            }
        }
    }

    /// End of stream: what is left is an unterminated line, a partial entry.
    pub fn finish(&mut self, mut emit: impl FnMut(bool, &[u8])) {
        if !self.pending.is_empty() {
            emit(true, &self.pending);
            self.pending = Vec::new();
        }
    }
}

/// `2006-01-02T15:04:05.000000000Z`: RFC 3339 in UTC with nanoseconds. Always nine
/// digits (Go trims trailing zeros; its parser takes both) so entries sort as text.
pub fn rfc3339_nano(time: SystemTime) -> String {
    humantime::format_rfc3339_nanos(time).to_string()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_nanoseconds() {
        let at = |secs: u64, nanos: u32| rfc3339_nano(UNIX_EPOCH + Duration::new(secs, nanos));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(at(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(at(4_102_444_799, 999_999_999), "2099-12-31T23:59:59.999999999Z");
    }

    fn split(chunks: &[&[u8]]) -> Vec<(bool, Vec<u8>)> {
        let mut splitter = LineSplitter::default();
        let mut entries = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, |partial, content| entries.push((partial, content.to_vec())));
        }
        splitter.finish(|partial, content| entries.push((partial, content.to_vec())));
        entries
    }

    #[test]
    fn lines_are_full_across_chunks_and_a_trailing_rest_is_partial() {
        let entries = split(&[b"a\nb", b"c\n\nrest"]);
        let expected: Vec<(bool, Vec<u8>)> =
            vec![(false, b"a".to_vec()), (false, b"bc".to_vec()), (false, vec![]), (true, b"rest".to_vec())];
        assert_eq!(entries, expected);
    }

    #[test]
    fn long_lines_are_split_into_partials_then_a_full_entry() {
        let line = vec![b'x'; 2 * MAX_LINE + 10];
        let mut input = line.clone();
        input.push(b'\n');
        let entries = split(&[&input]);
        let tags: Vec<bool> = entries.iter().map(|(partial, _)| *partial).collect();
        assert_eq!(tags, [true, true, false]);
        assert_eq!(entries.concat_contents(), line);
    }

    trait Contents {
        fn concat_contents(&self) -> Vec<u8>;
    }

    impl Contents for Vec<(bool, Vec<u8>)> {
        fn concat_contents(&self) -> Vec<u8> {
            self.iter().flat_map(|(_, content)| content.clone()).collect()
        }
    }
}
