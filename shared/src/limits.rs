//! The AWS service limits Vigil fills its requests to, in one place.
//!
//! Sources: the CloudWatch, SNS and S3 API references (PutMetricData, GetMetricData, Publish,
//! ListObjectsV2). Each constant names the API field or quota it mirrors.

/// How long CloudWatch keeps data points of a period, in seconds ("Metrics retention",
/// CloudWatch User Guide): under a minute 3 hours, one minute 15 days, five minutes 63 days,
/// an hour or more 455 days.
pub fn cw_retention_seconds(period_seconds: u64) -> u64 {
    match period_seconds {
        0..60 => 3 * 3_600,
        60..300 => 15 * 86_400,
        300..3_600 => 63 * 86_400,
        _ => 455 * 86_400,
    }
}

/// CloudWatch `PutMetricData`: distinct metrics (`MetricData` entries) per request.
pub const CW_MAX_DATUMS_PER_PUT: usize = 1000;
/// CloudWatch `PutMetricData`: request body size for HTTP POST, in bytes (1 MB).
pub const CW_MAX_PUT_BYTES: usize = 1_000_000;
/// CloudWatch `PutMetricData`: entries in one datum's `Values`/`Counts` arrays.
pub const CW_MAX_VALUES_PER_DATUM: usize = 150;
/// CloudWatch: dimensions per metric.
pub const CW_MAX_DIMENSIONS: usize = 30;
/// CloudWatch: metric name length, in characters.
pub const CW_MAX_METRIC_NAME_LEN: usize = 255;
/// CloudWatch: namespace length, in characters.
pub const CW_MAX_NAMESPACE_LEN: usize = 255;
/// CloudWatch: dimension name length, in characters.
pub const CW_MAX_DIMENSION_NAME_LEN: usize = 255;
/// CloudWatch: dimension value length, in characters.
pub const CW_MAX_DIMENSION_VALUE_LEN: usize = 1024;
/// CloudWatch accepts values in [-2^360, 2^360] and rejects NaN and the infinities.
pub const CW_MAX_ABS_VALUE: f64 = 2.348_542_582_773_833_2e108; // 2^360
/// CloudWatch accepts data points up to two weeks old...
pub const CW_MAX_PAST_SECONDS: i64 = 14 * 24 * 3600;
/// ...and up to two hours in the future.
pub const CW_MAX_FUTURE_SECONDS: i64 = 2 * 3600;
/// CloudWatch `GetMetricData`: `MetricDataQuery` entries per request.
pub const CW_MAX_QUERIES_PER_GET: usize = 500;
/// CloudWatch `GetMetricData`: data points returned per request before pagination.
pub const CW_MAX_DATAPOINTS_PER_GET: usize = 100_800;

/// SNS `Publish`: message size in bytes (256 KiB), attributes included.
pub const SNS_MAX_MESSAGE_BYTES: usize = 262_144;
/// SNS `Publish`: subject length for email endpoints, in characters.
pub const SNS_MAX_SUBJECT_LEN: usize = 100;
/// SNS `Publish`: message attributes per message.
pub const SNS_MAX_MESSAGE_ATTRIBUTES: usize = 10;
/// SNS `PublishBatch`: entries per request.
pub const SNS_MAX_BATCH_ENTRIES: usize = 10;
/// SNS `PublishBatch`: the messages of one request together, attributes included (256 KiB).
pub const SNS_MAX_BATCH_BYTES: usize = 262_144;

/// S3 `ListObjectsV2`: keys per page.
pub const S3_MAX_KEYS_PER_LIST: usize = 1000;
/// S3 `PutObject`: largest single-request upload, in bytes (5 GiB).
pub const S3_MAX_SINGLE_PUT_BYTES: u64 = 5 * 1024 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_abs_value_is_two_to_the_360() {
        assert_eq!(CW_MAX_ABS_VALUE, 2f64.powi(360));
    }
}
