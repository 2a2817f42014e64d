//! Writing a file so that a crash leaves either the old content or the new.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes `content` to a temp file beside `path` and renames it over `path`:
/// a reader, or berth after a crash, sees the old file or the new, whole. Not
/// synced: its callers write what serves a pod or container only while the
/// node stays up (`config.json`, `resolv.conf`), and after a power loss
/// nothing reads it again (recovery finds those pods and containers ended).
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(content)?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}
