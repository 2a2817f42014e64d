//! libcontainer's own account of a failed create. Its errors say only which step
//! failed ("failed to prepare rootfs"); the cause (the path, the errno) goes to
//! `tracing`, often in the container's init, a cloned copy of the monitor. So
//! while it runs, its events go to an unnamed file that the clones share.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::fmt::format::FmtSpan;

/// The most of libcontainer's account a refusal quotes.
const MAX_QUOTED: u64 = 4096;
const QUOTED_EVENTS: usize = 2;

pub(super) struct Capture {
    file: File,
}

impl Capture {
    /// `dir` holds the unnamed file (O_TMPFILE: gone once closed, even on a crash).
    pub(super) fn new(dir: &Path) -> std::io::Result<Self> {
        Ok(Capture { file: tempfile::tempfile_in(dir)? })
    }

    /// Runs `work` with libcontainer's errors and warnings written to the capture.
    pub(super) fn during<T>(&self, work: impl FnOnce() -> T) -> T {
        let Ok(writer) = self.file.try_clone() else { return work() };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(Mutex::new(writer))
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .with_span_events(FmtSpan::NONE)
            .with_max_level(tracing::Level::ERROR)
            .finish();
        tracing::subscriber::with_default(subscriber, work)
    }

    /// What was captured, one event per line, cut to the last few KiB. The first
    /// events name the cause; the rest repeat it on the way out.
    pub(super) fn text(&self) -> String {
        let mut file = &self.file;
        let Ok(len) = file.seek(SeekFrom::End(0)) else { return String::new() };
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(MAX_QUOTED)));
        let mut bytes = Vec::new();
        let _ = file.take(MAX_QUOTED).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| line.trim().trim_start_matches("ERROR").trim())
            .filter(|line| !line.is_empty())
            .take(QUOTED_EVENTS)
            .collect::<Vec<_>>()
            .join("; ")
    }
}
