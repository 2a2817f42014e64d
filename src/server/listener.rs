//! The CRI unix socket: refuse to steal a live one, replace a stale one, and set
//! the permissions kubelet-style endpoints have.

use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

const SOCKET_MODE: u32 = 0o660;
const SOCKET_DIR_MODE: u32 = 0o711;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("{0} is already served by a running process (another berth?)")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ListenError + '_ {
    move |source| ListenError::Io { path: path.to_path_buf(), source }
}

pub fn bind(socket: &Path) -> Result<UnixListener, ListenError> {
    if let Some(dir) = socket.parent().filter(|d| !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(SOCKET_DIR_MODE).create(dir).map_err(io(dir))?;
    }
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => match std::os::unix::net::UnixStream::connect(socket) {
            Ok(_) => return Err(ListenError::InUse(socket.to_path_buf())),
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!(socket = %socket.display(), "removing stale socket");
                std::fs::remove_file(socket).map_err(io(socket))?;
            }
            Err(e) => return Err(io(socket)(e)),
        },
        Ok(_) => return Err(ListenError::NotASocket(socket.to_path_buf())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(io(socket)(e)),
    }
    let listener = UnixListener::bind(socket).map_err(io(socket))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(SOCKET_MODE)).map_err(io(socket))?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_socket_is_refused_and_stale_one_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("run/berth.sock");
        let live = bind(&socket).unwrap();
        let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        let dir_mode = std::fs::metadata(socket.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, SOCKET_DIR_MODE);
        assert!(matches!(bind(&socket), Err(ListenError::InUse(_))));

        drop(live); // the file stays, nobody listens: stale
        assert!(socket.exists());
        bind(&socket).unwrap();
    }

    #[test]
    fn regular_file_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        std::fs::write(&path, "precious").unwrap();
        assert!(matches!(bind(&path), Err(ListenError::NotASocket(_))));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }
}
