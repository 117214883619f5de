//! Blobs as files under `<data_dir>/blobs/`, written atomically.

use async_trait::async_trait;
use nomaly_core::local_files::{self, blocking};
use nomaly_core::ports::{BlobKey, BlobStore, StoreResult};
use std::path::{Path, PathBuf};

/// Blobs in a folder. A key's parts are checked when the key is made, so a path built from
/// one never leaves the folder.
#[derive(Clone)]
pub struct FileBlobs {
    root: PathBuf,
}

impl FileBlobs {
    /// Blobs under `<data_dir>/blobs`.
    pub fn new(data_dir: &Path) -> Self {
        FileBlobs {
            root: data_dir.join("blobs"),
        }
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(key.as_str())
    }
}

#[async_trait]
impl BlobStore for FileBlobs {
    async fn put_blob(&self, key: &BlobKey, bytes: Vec<u8>) -> StoreResult<()> {
        let path = self.path(key);
        blocking("write a blob", move || {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            nomaly_core::atomic_file::write(&path, &bytes)
        })
        .await
    }

    async fn put_blob_file(&self, key: &BlobKey, file: &Path) -> StoreResult<()> {
        let path = self.path(key);
        let file = file.to_path_buf();
        blocking("move a blob into place", move || {
            std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
            nomaly_core::atomic_file::move_into(&file, &path)
        })
        .await
    }

    async fn get_blob(&self, key: &BlobKey) -> StoreResult<Option<Vec<u8>>> {
        let path = self.path(key);
        blocking("read a blob", move || match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete_blob(&self, key: &BlobKey) -> StoreResult<()> {
        let path = self.path(key);
        blocking("delete a blob", move || match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await
    }

    async fn blob_size(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        let path = self.path(key);
        blocking("read a blob's size", move || local_files::size(&path)).await
    }

    async fn get_blob_range(
        &self,
        key: &BlobKey,
        start: u64,
        end: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        let path = self.path(key);
        blocking("read a blob's range", move || {
            local_files::read_range(&path, start, end)
        })
        .await
    }
}
