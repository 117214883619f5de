//! Splitting a large CSV object into byte ranges that start and end on line boundaries,
//! reading only small ranges of it (`BlobStore::get_blob_range`), never the whole
//! object: the planning step of batch scoring, where each range becomes one job that
//! reads only its own bytes.
//!
//! The header is the first line. Every chunk after it starts just after a newline and
//! ends just after one (or at the end of the object), so the chunks are whole rows and
//! together are exactly the data rows. Quoted fields holding newlines are not supported:
//! numeric tables have none, and such a row would be split and then refused by the
//! chunk's parser as ragged.

use crate::limits::MAX_LINE_BYTES;
use crate::local_files::{self, blocking};
use crate::ports::{BlobKey, BlobStore, StoreError, StoreResult};
use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};

/// Bytes read at a time while looking for a line's end.
const WINDOW: u64 = 64 * 1024;
/// Windows a plan reads at once.
const READS_IN_FLIGHT: usize = 16;

/// One chunk: bytes `start..end` of the object, whole rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its number, from 0, in the object's order.
    pub index: usize,
    /// First byte (just after a newline).
    pub start: u64,
    /// One past the last byte (just after a newline, or the object's end).
    pub end: u64,
}

/// How an object splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The object's size.
    pub size: u64,
    /// The header line, without its line ending.
    pub header: String,
    /// The data rows, in chunks.
    pub chunks: Vec<Chunk>,
}

/// Why an object cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// There is no such object.
    #[error("there is no object {0}")]
    Missing(String),
    /// The object has a header and no rows, or nothing at all.
    #[error("the object has no data rows under its header")]
    NoRows,
    /// A line is longer than [`MAX_LINE_BYTES`] (or the header is not UTF-8).
    #[error("{0}")]
    BadLine(String),
    /// Reading failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Something read by byte range: an object in the blob store, or (on the local server)
/// a file under its imports folder.
#[async_trait]
pub trait ByteSource: Send + Sync {
    /// Its size, or `None` if it does not exist.
    async fn size(&self) -> StoreResult<Option<u64>>;
    /// Bytes `start..end` (cut short at the end), or `None` if it does not exist.
    async fn range(&self, start: u64, end: u64) -> StoreResult<Option<Vec<u8>>>;
    /// What it is, for messages.
    fn describe(&self) -> String;
}

/// An object in the blob store.
pub struct BlobSource<'a> {
    blobs: &'a dyn BlobStore,
    key: &'a BlobKey,
}

impl<'a> BlobSource<'a> {
    /// The object `key` in `blobs`.
    pub fn new(blobs: &'a dyn BlobStore, key: &'a BlobKey) -> Self {
        BlobSource { blobs, key }
    }
}

#[async_trait]
impl ByteSource for BlobSource<'_> {
    async fn size(&self) -> StoreResult<Option<u64>> {
        self.blobs.blob_size(self.key).await
    }
    async fn range(&self, start: u64, end: u64) -> StoreResult<Option<Vec<u8>>> {
        self.blobs.get_blob_range(self.key, start, end).await
    }
    fn describe(&self) -> String {
        self.key.as_str().to_string()
    }
}

/// A file on this machine (the local server's imports), read with a seek.
pub struct FileSource {
    path: std::path::PathBuf,
    name: String,
}

impl FileSource {
    /// The file at `path`, called `name` in messages (not its full path on this machine).
    pub fn new(path: std::path::PathBuf, name: String) -> Self {
        FileSource { path, name }
    }
}

#[async_trait]
impl ByteSource for FileSource {
    async fn size(&self) -> StoreResult<Option<u64>> {
        let path = self.path.clone();
        blocking("read a file's size", move || local_files::size(&path)).await
    }
    async fn range(&self, start: u64, end: u64) -> StoreResult<Option<Vec<u8>>> {
        let path = self.path.clone();
        blocking("read a file's range", move || {
            local_files::read_range(&path, start, end)
        })
        .await
    }
    fn describe(&self) -> String {
        self.name.clone()
    }
}

/// The end of the line that contains byte `from` (one past its newline), or the
/// object's end: reads forward a window at a time, at most [`MAX_LINE_BYTES`].
async fn line_end(source: &dyn ByteSource, from: u64, size: u64) -> Result<u64, PlanError> {
    let mut at = from;
    while at < size {
        if at - from > MAX_LINE_BYTES {
            return Err(PlanError::BadLine(format!(
                "the line around byte {from} is longer than {MAX_LINE_BYTES} bytes"
            )));
        }
        let bytes = source
            .range(at, (at + WINDOW).min(size))
            .await?
            .ok_or_else(|| PlanError::Missing(source.describe()))?;
        if bytes.is_empty() {
            break;
        }
        if let Some(i) = bytes.iter().position(|&b| b == b'\n') {
            return Ok(at + i as u64 + 1);
        }
        at += bytes.len() as u64;
    }
    Ok(size)
}

/// Plans `source` into chunks of about `target_bytes` each (at least one row each).
pub async fn plan(source: &dyn ByteSource, target_bytes: u64) -> Result<Plan, PlanError> {
    let size = source
        .size()
        .await?
        .ok_or_else(|| PlanError::Missing(source.describe()))?;
    let data_start = line_end(source, 0, size).await?;
    let header_bytes = source
        .range(0, data_start)
        .await?
        .ok_or_else(|| PlanError::Missing(source.describe()))?;
    let header = std::str::from_utf8(&header_bytes)
        .map_err(|_| PlanError::BadLine("the header line is not UTF-8".into()))?
        .trim_end_matches(['\n', '\r'])
        .to_string();
    if data_start >= size {
        return Err(PlanError::NoRows);
    }
    // Cut k falls after the line holding byte `data_start + k * target - 1`. The cuts do
    // not depend on each other, so their windows are read several at a time: a plan of
    // thousands of chunks takes seconds, not one round trip per chunk in a row.
    let target = target_bytes.max(1);
    let cuts = (size - data_start).div_ceil(target);
    let ends: Vec<u64> = futures_util::stream::iter(1..cuts)
        .map(|k| line_end(source, data_start + k * target - 1, size))
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
    let mut chunks = Vec::new();
    let mut start = data_start;
    for end in ends.into_iter().chain([size]) {
        // Two cuts inside one long line fall at the same place: one chunk.
        if end > start {
            chunks.push(Chunk {
                index: chunks.len(),
                start,
                end,
            });
            start = end;
        }
    }
    Ok(Plan {
        size,
        header,
        chunks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TenantId;
    use async_trait::async_trait;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Blobs in memory, counting the bytes read.
    #[derive(Default)]
    struct Memory {
        objects: Mutex<HashMap<String, Vec<u8>>>,
        read: Mutex<u64>,
    }

    #[async_trait]
    impl BlobStore for Memory {
        async fn put_blob(&self, key: &BlobKey, bytes: Vec<u8>) -> crate::ports::StoreResult<()> {
            self.objects
                .lock()
                .unwrap()
                .insert(key.as_str().into(), bytes);
            Ok(())
        }
        async fn get_blob(&self, key: &BlobKey) -> crate::ports::StoreResult<Option<Vec<u8>>> {
            Ok(self.objects.lock().unwrap().get(key.as_str()).cloned())
        }
        async fn delete_blob(&self, key: &BlobKey) -> crate::ports::StoreResult<()> {
            self.objects.lock().unwrap().remove(key.as_str());
            Ok(())
        }
        async fn blob_size(&self, key: &BlobKey) -> crate::ports::StoreResult<Option<u64>> {
            Ok(self
                .objects
                .lock()
                .unwrap()
                .get(key.as_str())
                .map(|b| b.len() as u64))
        }
        async fn get_blob_range(
            &self,
            key: &BlobKey,
            start: u64,
            end: u64,
        ) -> crate::ports::StoreResult<Option<Vec<u8>>> {
            let objects = self.objects.lock().unwrap();
            Ok(objects.get(key.as_str()).map(|b| {
                let (s, e) = ((start as usize).min(b.len()), (end as usize).min(b.len()));
                let out = b[s..e.max(s)].to_vec();
                *self.read.lock().unwrap() += out.len() as u64;
                out
            }))
        }
    }

    fn key() -> BlobKey {
        BlobKey::for_tenant(&TenantId::parse("acme").unwrap(), &["imports", "x.csv"]).unwrap()
    }

    /// Checks that the chunks are whole rows and exactly the data.
    fn check(csv: &[u8], plan: &Plan) {
        let header_end = csv.iter().position(|&b| b == b'\n').unwrap() + 1;
        assert_eq!(plan.chunks[0].start, header_end as u64);
        assert_eq!(plan.chunks.last().unwrap().end, csv.len() as u64);
        for w in plan.chunks.windows(2) {
            assert_eq!(w[0].end, w[1].start, "contiguous");
        }
        for (i, c) in plan.chunks.iter().enumerate() {
            assert_eq!(c.index, i);
            assert!(c.start < c.end, "no empty chunk: {c:?}");
            assert_eq!(csv[c.start as usize - 1], b'\n', "starts a line: {c:?}");
            assert!(
                c.end as usize == csv.len() || csv[c.end as usize - 1] == b'\n',
                "ends a line: {c:?}"
            );
        }
    }

    #[tokio::test]
    async fn chunks_are_whole_rows_for_any_target_size() {
        let mut csv = b"a,b,c\r\n".to_vec();
        for i in 0..500u32 {
            let width = 1 + (i * 7919 % 37) as usize;
            csv.extend(format!("{i},{},{}\r\n", "9".repeat(width), i % 3).bytes());
        }
        csv.extend(b"500,1,2"); // no newline at the end
        let blobs = Memory::default();
        blobs.put_blob(&key(), csv.clone()).await.unwrap();
        for target in [1, 2, 7, 100, 1000, 4096, csv.len() as u64, 1 << 40] {
            let plan = plan(&BlobSource::new(&blobs, &key()), target)
                .await
                .unwrap();
            assert_eq!(plan.header, "a,b,c");
            assert_eq!(plan.size, csv.len() as u64);
            check(&csv, &plan);
            let rows: usize = plan
                .chunks
                .iter()
                .map(|c| {
                    csv[c.start as usize..c.end as usize]
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .count()
                })
                .sum();
            assert_eq!(rows, 501, "target {target}");
            if target == 1 {
                assert_eq!(plan.chunks.len(), 501, "one row per chunk");
            }
        }
    }

    #[tokio::test]
    async fn a_large_object_is_planned_reading_a_window_per_chunk() {
        let row = b"1.25,2.5,3.75,4.0,5.5,6.25,7.0,8.125,9.5,10.0\n";
        let mut csv = b"a,b,c,d,e,f,g,h,i,j\n".to_vec();
        while csv.len() < 8 << 20 {
            csv.extend_from_slice(row);
        }
        let blobs = Memory::default();
        blobs.put_blob(&key(), csv.clone()).await.unwrap();
        let plan = plan(&BlobSource::new(&blobs, &key()), 1 << 20)
            .await
            .unwrap();
        check(&csv, &plan);
        assert_eq!(plan.chunks.len(), 8);
        let read = *blobs.read.lock().unwrap();
        assert!(
            read <= 9 * WINDOW,
            "{read} bytes read to plan {} bytes",
            csv.len()
        );
    }

    #[tokio::test]
    async fn bad_objects_are_refused() {
        let blobs = Memory::default();
        assert!(matches!(
            plan(&BlobSource::new(&blobs, &key()), 10).await,
            Err(PlanError::Missing(_))
        ));
        for empty in [&b""[..], b"a,b\n", b"a,b"] {
            blobs.put_blob(&key(), empty.to_vec()).await.unwrap();
            assert!(
                matches!(
                    plan(&BlobSource::new(&blobs, &key()), 10).await,
                    Err(PlanError::NoRows)
                ),
                "{empty:?}"
            );
        }
        let mut long = b"a\n".to_vec();
        long.extend(std::iter::repeat_n(
            b'1',
            (MAX_LINE_BYTES + WINDOW * 2) as usize,
        ));
        long.extend(b"\n2\n");
        blobs.put_blob(&key(), long).await.unwrap();
        assert!(matches!(
            plan(&BlobSource::new(&blobs, &key()), 10).await,
            Err(PlanError::BadLine(_))
        ));
        blobs
            .put_blob(&key(), b"\xff\xfe,b\n1,2\n".to_vec())
            .await
            .unwrap();
        assert!(matches!(
            plan(&BlobSource::new(&blobs, &key()), 10).await,
            Err(PlanError::BadLine(_))
        ));
    }
}
