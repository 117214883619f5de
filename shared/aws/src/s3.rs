//! Blobs in an S3 bucket.

use crate::error::sdk;
use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use nomaly_core::ports::{
    upload_url_lifetime, BlobKey, BlobStore, PresignedDownload, PresignedUpload, StoreResult,
    UrlSigner,
};
use nomaly_core::time::Timestamp;

/// Blobs in one bucket; keys are `tenants/<tenant>/...` as [`BlobKey`] builds them.
#[derive(Clone, Debug)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
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

    async fn blob_size(&self, key: &BlobKey) -> StoreResult<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.content_length().unwrap_or(0).max(0) as u64)),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_not_found()) => Ok(None),
            Err(e) => Err(sdk("read an S3 object's size")(e)),
        }
    }

    async fn get_blob_range(
        &self,
        key: &BlobKey,
        start: u64,
        end: u64,
    ) -> StoreResult<Option<Vec<u8>>> {
        if end <= start {
            return Ok(self.blob_size(key).await?.map(|_| Vec::new()));
        }
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .range(format!("bytes={start}-{}", end - 1))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            // A range that starts past the end: S3 answers 416.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Ok(Some(Vec::new()))
            }
            Err(e) => return Err(sdk("get an S3 object's range")(e)),
        };
        let body = out
            .body
            .collect()
            .await
            .map_err(sdk("read an S3 object's range"))?;
        // One copy out of the received segments, not two (via one contiguous buffer).
        Ok(Some(body.to_vec()))
    }
}

/// A URL's lifetime as granted, and the presigning configuration for it.
fn presigning(
    expires_in_secs: u32,
) -> StoreResult<(u64, aws_sdk_s3::presigning::PresigningConfig)> {
    let secs = u64::from(upload_url_lifetime(expires_in_secs));
    let config =
        aws_sdk_s3::presigning::PresigningConfig::expires_in(std::time::Duration::from_secs(secs))
            .map_err(sdk("configure a presigned URL"))?;
    Ok((secs, config))
}

#[async_trait]
impl UrlSigner for S3Blobs {
    /// A URL that uploads exactly `size` bytes to `key`: the declared Content-Length is
    /// part of the signature, so S3 refuses a body of another size.
    async fn presign_upload(
        &self,
        key: &BlobKey,
        size: u64,
        expires_in_secs: u32,
    ) -> StoreResult<PresignedUpload> {
        let (secs, config) = presigning(expires_in_secs)?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            // Signed, so the URL can store the object once: a second PUT meets an
            // existing object and S3 answers 412, and the file that was profiled is
            // never replaced behind the profile's back.
            .if_none_match("*")
            .presigned(config)
            .await
            .map_err(sdk("presign an upload"))?;
        Ok(PresignedUpload {
            url: request.uri().to_string(),
            method: request.method().to_string(),
            headers: request
                .headers()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            expires_at: Timestamp::now().plus_seconds(secs as i64),
        })
    }

    /// A presigned GetObject that also sets the response's `Content-Type`.
    async fn presign_download(
        &self,
        key: &BlobKey,
        content_type: &str,
        expires_in_secs: u32,
    ) -> StoreResult<PresignedDownload> {
        let (secs, config) = presigning(expires_in_secs)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .response_content_type(content_type)
            .presigned(config)
            .await
            .map_err(sdk("presign a download"))?;
        Ok(PresignedDownload {
            url: request.uri().to_string(),
            expires_at: Timestamp::now().plus_seconds(secs as i64),
        })
    }
}
