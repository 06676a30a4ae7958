//! Bucket versioning is enabled, so an overwrite or a delete does not destroy the backup.

use serde_json::json;
use vigil_shared::BucketInspector;

use super::{Attempt, Outcome};
use crate::report::{Check, CheckResult};

pub async fn run(inspector: &impl BucketInspector, bucket: &str) -> Outcome {
    let status = inspector
        .versioning(bucket)
        .await
        .or_error(Check::Versioning, || {
            format!("read the versioning of {bucket}")
        })?;
    Ok(decide(bucket, status.as_deref()))
}

/// Bucket versioning is enabled.
pub fn decide(bucket: &str, status: Option<&str>) -> CheckResult {
    let ok = status == Some("Enabled");
    CheckResult::judged(
        Check::Versioning,
        ok,
        if ok {
            format!("versioning is enabled on {bucket}")
        } else {
            format!(
                "versioning is {} on {bucket}: an overwrite or delete destroys the backup; enable versioning",
                status.unwrap_or("off")
            )
        },
        json!({ "bucket": bucket, "status": status }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Status;

    #[test]
    fn only_enabled_passes() {
        assert_eq!(decide("b", Some("Enabled")).status, Status::Ok);
        assert_eq!(decide("b", Some("Suspended")).status, Status::Failed);
        assert_eq!(decide("b", None).status, Status::Failed);
    }
}
