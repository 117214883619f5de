//! Blobs in an S3 bucket.

use crate::error::sdk;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use nomaly_core::ports::{BlobKey, BlobStore, StoreResult};

/// Blobs in one bucket; keys are `tenants/<tenant>/...` as [`BlobKey`] builds them.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// A presigned upload: PUT the bytes to `url` with exactly these headers before
/// `expires_in_secs` pass.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PresignedUpload {
    /// Where to PUT.
    pub url: String,
    /// Headers the signature covers (`content-length` among them).
    pub headers: Vec<(String, String)>,
    /// Seconds the URL stays valid.
    pub expires_in_secs: u64,
}

impl S3Blobs {
    /// A URL that uploads exactly `size` bytes to `key` for `expires_in_secs` (1 s to
    /// 7 days): the declared Content-Length is part of the signature, so S3 refuses a
    /// body of another size.
    pub async fn presign_put(
        &self,
        key: &BlobKey,
        size: u64,
        expires_in_secs: u64,
    ) -> StoreResult<PresignedUpload> {
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(
            std::time::Duration::from_secs(expires_in_secs.clamp(1, 7 * 24 * 3600)),
        )
        .map_err(sdk("configure a presigned upload"))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .presigned(config)
            .await
            .map_err(sdk("presign an upload"))?;
        Ok(PresignedUpload {
            url: request.uri().to_string(),
            headers: request
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expires_in_secs: expires_in_secs.clamp(1, 7 * 24 * 3600),
        })
    }

    /// Blobs in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: &str) -> Self {
        S3Blobs {
            client,
            bucket: bucket.to_string(),
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put_blob(&self, key: &BlobKey, bytes: Vec<u8>) -> StoreResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(sdk("put an S3 object"))?;
        Ok(())
    }

    async fn get_blob(&self, key: &BlobKey) -> StoreResult<Option<Vec<u8>>> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(sdk("get an S3 object")(e)),
        };
        let body = out.body.collect().await.map_err(sdk("read an S3 object"))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    async fn delete_blob(&self, key: &BlobKey) -> StoreResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(sdk("delete an S3 object"))?;
        Ok(())
    }
}
