//! Vigil's common crate: the metric model, AWS client set-up, the CloudWatch sink, the SNS
//! notifier, the S3 object store, configuration loading, tracing and the error type.
//!
//! AWS capabilities sit behind small traits ([`MetricSink`], [`Notifier`], [`ObjectStore`]
//! and [`MetricReader`]) with one implementation each on the AWS SDK, so that the functions' logic is plain code
//! generic over them.

pub mod aws;
pub mod call_log;
pub mod cas;
pub mod config;
pub mod duration;
pub mod emf;
pub mod error;
#[cfg(feature = "testing")]
pub mod fixtures;
pub mod http;
pub mod inspect;
pub mod limits;
pub mod math;
pub mod metric;
pub mod notify;
pub mod outbound;
pub mod reader;
pub mod schedule;
pub mod secret;
pub mod sink;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod tracing_init;

pub use aws::sdk_config;
pub use config::ConfigSource;
pub use duration::Span;
pub use error::{Error, Result};
pub use http::{HttpPost, HyperPost, Reply};
pub use inspect::{
    BucketInspector, ChecksumAlgorithm, ChecksumType, ObjectHead, ObjectStreamer, PartChecksum,
    Retention, StoredChecksum,
};
pub use metric::{Datum, Dimension, Rejection, Rejections, Resolution, Unit};
pub use notify::{Envelope, Notification, Notifier, Refusal, SnsNotifier};
pub use outbound::{Outbound, Outlets};
pub use reader::{CloudWatchReader, Math, MathInput, MetricReader, StatQuery};
pub use secret::{SecretRef, Secrets, SsmSecrets};
pub use sink::{CloudWatchSink, ConfiguredSink, EmfSink, MetricSink, PutOutcome};
pub use store::{ObjectInfo, ObjectStore, S3Store};
pub use tracing_init::init_tracing;
