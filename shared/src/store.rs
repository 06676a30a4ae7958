//! Object storage: the [`ObjectStore`] trait and its S3 implementation.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::{Error, Result};

/// What a listing says of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    /// The entity tag, quotes included, as S3 lists it.
    pub etag: String,
}

/// Reads and writes objects.
pub trait ObjectStore: Send + Sync {
    /// Every object under `prefix`, all pages.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<ObjectInfo>>> + Send;
    /// The whole object. For configuration and state; backups are streamed instead.
    fn get(&self, bucket: &str, key: &str) -> impl Future<Output = Result<Vec<u8>>> + Send;
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The object and its entity tag, or `None` when there is no such object.
    fn get_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, String)>>> + Send;
    /// Writes only if the object is still the one tagged `expected` (`If-Match`), or, with
    /// `None`, only if there is no object yet (`If-None-Match: *`). Returns the new entity tag,
    /// or `None` when the precondition failed: someone else wrote first.
    fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expected: Option<&str>,
    ) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// [`ObjectStore`] on S3.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }

    /// The SDK client, for the operations beyond this trait.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// Builds the client from the shared SDK configuration.
    pub fn from_conf(conf: &aws_config::SdkConfig) -> Self {
        Self::new(crate::aws::s3_client(conf))
    }
}

impl ObjectStore for S3Store {
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Error::aws("S3", "ListObjectsV2", e))?;
            for object in page.contents() {
                let (Some(key), Some(modified)) = (object.key(), object.last_modified()) else {
                    continue;
                };
                let last_modified = DateTime::<Utc>::from_timestamp_millis(
                    modified.to_millis().unwrap_or(i64::MIN),
                )
                .ok_or_else(|| Error::Aws {
                    service: "S3",
                    operation: "ListObjectsV2",
                    message: format!("object {key} has an unreadable LastModified"),
                    retryable: false,
                })?;
                objects.push(ObjectInfo {
                    key: key.to_owned(),
                    size: u64::try_from(object.size().unwrap_or(0)).unwrap_or(0),
                    last_modified,
                    etag: object.e_tag().unwrap_or_default().to_owned(),
                });
            }
        }
        Ok(objects)
    }

    async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| Error::aws("S3", "GetObject", e))?;
        let body = out.body.collect().await.map_err(|e| Error::Aws {
            service: "S3",
            operation: "GetObject",
            message: format!("reading s3://{bucket}/{key}: {e}"),
            retryable: true,
        })?;
        Ok(body.into_bytes().to_vec())
    }

    async fn get_tagged(&self, bucket: &str, key: &str) -> Result<Option<(Vec<u8>, String)>> {
        let out = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(Error::aws("S3", "GetObject", e)),
        };
        let tag = out.e_tag().unwrap_or_default().to_owned();
        let body = out.body.collect().await.map_err(|e| Error::Aws {
            service: "S3",
            operation: "GetObject",
            message: format!("reading s3://{bucket}/{key}: {e}"),
            retryable: true,
        })?;
        Ok(Some((body.into_bytes().to_vec(), tag)))
    }

    async fn put_if(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        expected: Option<&str>,
    ) -> Result<Option<String>> {
        let request = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type("application/json")
            .body(body.into());
        let request = match expected {
            Some(tag) => request.if_match(tag),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_owned())),
            Err(e) => {
                let code = e.as_service_error().and_then(|s| {
                    use aws_sdk_s3::error::ProvideErrorMetadata;
                    s.code().map(str::to_owned)
                });
                match code.as_deref() {
                    Some("PreconditionFailed") | Some("ConditionalRequestConflict") => Ok(None),
                    _ => Err(Error::aws("S3", "PutObject", e)),
                }
            }
        }
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .content_type(content_type)
            .body(body.into())
            .send()
            .await
            .map_err(|e| Error::aws("S3", "PutObject", e))?;
        Ok(())
    }
}
