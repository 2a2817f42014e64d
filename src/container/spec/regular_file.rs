//! Reading a file berth does not control (an image's `/etc/passwd`, a seccomp
//! profile on the node) as a regular file of bounded size, and nothing else: a
//! FIFO would block the open, a device could be read without end, a huge file
//! would be held whole.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Why a file was not read.
#[derive(Debug)]
pub(super) enum Refused {
    Io(std::io::Error),
    /// What it is instead ("a FIFO", "a directory", ...).
    NotRegular(&'static str),
    TooLarge { size: u64, limit: u64 },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Io(e) => write!(f, "{e}"),
            Refused::NotRegular(kind) => write!(f, "is {kind}, not a regular file"),
            Refused::TooLarge { size, limit } => write!(f, "is {size} bytes or more, over the {limit} berth reads"),
        }
    }
}

/// The bytes of the regular file at `path` (its last component not followed), at
/// most `limit` of them; `None` when there is no such file.
pub(super) fn read_regular(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, Refused> {
    // O_PATH opens without reading: no FIFO wait, no device driver involved.
    let handle = match std::fs::File::options()
        .read(true)
        .custom_flags(nix::libc::O_PATH | nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(handle) => handle,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Refused::Io(e)),
    };
    let meta = handle.metadata().map_err(Refused::Io)?;
    if !meta.file_type().is_file() {
        return Err(Refused::NotRegular(file_kind(&meta.file_type())));
    }
    if meta.len() > limit {
        return Err(Refused::TooLarge { size: meta.len(), limit });
    }
    // Reopened through the handle: the very file just checked, now for reading.
    let file = std::fs::File::open(format!("/proc/self/fd/{}", handle.as_raw_fd())).map_err(Refused::Io)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(Refused::Io)?;
    if bytes.len() as u64 > limit {
        return Err(Refused::TooLarge { size: bytes.len() as u64, limit });
    }
    Ok(Some(bytes))
}

fn file_kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match kind {
        k if k.is_dir() => "a directory",
        k if k.is_fifo() => "a FIFO",
        k if k.is_char_device() => "a character device",
        k if k.is_block_device() => "a block device",
        k if k.is_socket() => "a socket",
        k if k.is_symlink() => "a symlink",
        _ => "of an unknown type",
    }
}
