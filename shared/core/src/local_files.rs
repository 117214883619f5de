//! Files on this machine read off the async threads: the embedded blob store's objects
//! and the local server's batch imports.

use crate::ports::{StoreError, StoreResult};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Runs file work `f` on the blocking pool; an I/O error becomes a backend error of
/// `operation`.
pub async fn blocking<T: Send + 'static>(
    operation: &'static str,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> StoreResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::backend(operation, e))?
        .map_err(|e| StoreError::backend(operation, e))
}

/// The size of the file at `path`, or `None` if there is none (or it is a folder).
pub fn size(path: &Path) -> std::io::Result<Option<u64>> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(Some(m.len())),
        Ok(_) => Ok(None),
        Err(e) if missing(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether an error says there is no such file (a path through a file is none either).
fn missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

/// Bytes `start..end` of the file at `path`, cut short at its end (empty past it), or
/// `None` if there is no such file.
pub fn read_range(path: &Path, start: u64, end: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if missing(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let (start, end) = (start.min(size), end.min(size).max(start.min(size)));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((end - start) as usize);
    file.take(end - start).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}
