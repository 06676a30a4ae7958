//! `backup-verify` end to end: backups and the backup sets file in the local emulator's S3, the
//! report read back from S3.

use chrono::Utc;
use serde_json::Value;
use vigil_e2e::{Function, LocalAws, binary, scheduled_event};

async fn verifier(aws: &LocalAws, sets: &str, report_bucket: &str) -> Function {
    Function::start(
        "backup-verify",
        &binary("backup-verify"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_BACKUP_SETS", sets),
            ("VIGIL_REPORT_BUCKET", report_bucket),
        ],
    )
    .await
}

fn set_named<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sets"]
        .as_array()
        .expect("sets")
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("set {name} in {report}"))
}

#[tokio::test]
async fn fresh_stale_and_missing_backups_are_reported() {
    let aws = LocalAws::connect().await;
    let backups = aws.create_bucket("vigil-backups").await;
    let reports = aws.create_bucket("vigil-reports").await;
    aws.put_object(&backups, "orders/2026-11-24.tar.gz", vec![1u8; 2048])
        .await;
    aws.put_object(&backups, "orders/2026-11-25.tar.gz", vec![2u8; 4096])
        .await;
    aws.put_object(&backups, "billing/2026-11-25.dump", vec![3u8; 100])
        .await;
    let sets = format!(
        "backup_sets:\n\
         \x20 - {{name: orders, bucket: {backups}, prefix: orders/, max_age: 1h}}\n\
         \x20 - {{name: billing, bucket: {backups}, prefix: billing/, max_age: 1s}}\n\
         \x20 - {{name: users, bucket: {backups}, prefix: users/, max_age: 1h}}\n"
    );
    aws.put_object(&reports, "config/backup-sets.yaml", sets)
        .await;
    // Let the billing backup outgrow its one-second limit.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    let location = format!("s3://{reports}/config/backup-sets.yaml");
    let mut function = verifier(&aws, &location, &reports).await;
    let run_at = Utc::now();
    let response = function
        .invoke(&scheduled_event(run_at))
        .await
        .expect_response();
    assert_eq!(response["summary"]["ok"], 1, "{response}");
    assert_eq!(response["summary"]["failed"], 2, "{response}");

    let url = response["report"].as_str().expect("report location");
    let key = url
        .strip_prefix(&format!("s3://{reports}/"))
        .expect("report in the report bucket");
    assert_eq!(
        key,
        vigil_backup_verify::report_key("reports/backup-verify/", run_at)
    );
    let report: Value =
        serde_json::from_slice(&aws.get_object(&reports, key).await).expect("report JSON");

    let orders = set_named(&report, "orders");
    assert_eq!(orders["status"], "ok");
    assert_eq!(
        orders["checks"][0]["evidence"]["newest_key"],
        "orders/2026-11-25.tar.gz"
    );
    assert_eq!(orders["checks"][0]["evidence"]["objects"], 2);
    let billing = set_named(&report, "billing");
    assert_eq!(billing["status"], "failed");
    assert!(
        billing["checks"][0]["evidence"]["age_seconds"]
            .as_i64()
            .expect("age")
            >= 2
    );
    let users = set_named(&report, "users");
    assert_eq!(users["status"], "failed");
    assert_eq!(users["checks"][0]["evidence"]["objects"], 0);
}

#[tokio::test]
async fn an_unreadable_bucket_is_an_error_never_ok_and_fails_the_run() {
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let sets = "backup_sets:\n  - {name: ghost, bucket: vigil-no-such-bucket-e2e, prefix: x/, max_age: 1h}\n";
    aws.put_object(&reports, "sets.yaml", sets).await;
    let location = format!("s3://{reports}/sets.yaml");
    let mut function = verifier(&aws, &location, &reports).await;
    let run_at = Utc::now();
    let error = function
        .invoke(&scheduled_event(run_at))
        .await
        .expect_error();
    assert_eq!(error["errorType"], "Vigil.AwsRetryable");
    assert!(
        error["errorMessage"]
            .as_str()
            .expect("message")
            .contains("could not be checked")
    );

    // The report was still written, with the set in error and the S3 error as evidence.
    let key = vigil_backup_verify::report_key("reports/backup-verify/", run_at);
    let report: Value =
        serde_json::from_slice(&aws.get_object(&reports, &key).await).expect("report JSON");
    let ghost = set_named(&report, "ghost");
    assert_eq!(ghost["status"], "error");
    assert!(
        ghost["checks"][0]["detail"]
            .as_str()
            .expect("detail")
            .contains("NoSuchBucket"),
        "{ghost}"
    );
}
