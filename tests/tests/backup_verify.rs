//! `backup-verify` end to end: backups and the backup sets file in the local emulator's S3, the
//! report read back from S3.

use chrono::Utc;
use serde_json::Value;
use vigil_e2e::{Function, LocalAws, backup_verify_event, binary, scheduler_default_event};

async fn verifier(aws: &LocalAws, sets: &str, report_bucket: &str) -> Function {
    verifier_with(aws, sets, report_bucket, &[]).await
}

async fn verifier_with(
    aws: &LocalAws,
    sets: &str,
    report_bucket: &str,
    extra: &[(&str, &str)],
) -> Function {
    let mut env = vec![
        ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
        ("VIGIL_BACKUP_SETS", sets),
        ("VIGIL_REPORT_BUCKET", report_bucket),
    ];
    env.extend_from_slice(extra);
    Function::start("backup-verify", &binary("backup-verify"), &env).await
}

fn statuses(set: &Value) -> Vec<(String, String)> {
    set["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap_or_default().to_owned(),
                c["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

/// A protected set (versioned, locked, encrypted, replicated) passes every check; an
/// unprotected one fails each, with evidence, and is announced in one SNS message.
#[tokio::test]
async fn protections_replicas_count_and_size_are_checked() {
    use aws_sdk_s3::primitives::DateTime as S3DateTime;
    use aws_sdk_s3::types::{
        ObjectLockMode, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let (topic, queue) = aws.topic_with_queue("vigil-backups").await;

    // Protected: object lock (which enables versioning), default encryption, a replica.
    let locked = vigil_e2e::unique("vigil-locked");
    aws.s3
        .create_bucket()
        .bucket(&locked)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("CreateBucket");
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(
            ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::Aes256)
                .build()
                .expect("sse"),
        )
        .build();
    aws.s3
        .put_bucket_encryption()
        .bucket(&locked)
        .server_side_encryption_configuration(
            ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .expect("config"),
        )
        .send()
        .await
        .expect("PutBucketEncryption");
    let dr = aws.create_bucket("vigil-dr").await;
    for (i, size) in [(1, 1000usize), (2, 1100), (3, 1050)] {
        let key = format!("db/2026-11-2{i}.dump");
        let mut put = aws
            .s3
            .put_object()
            .bucket(&locked)
            .key(&key)
            .body(vec![i as u8; size].into());
        if i == 3 {
            let until = chrono::Utc::now() + chrono::Duration::days(40);
            put = put
                .object_lock_mode(ObjectLockMode::Compliance)
                .object_lock_retain_until_date(S3DateTime::from_millis(until.timestamp_millis()));
        }
        put.send().await.expect("PutObject");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    }
    aws.put_object(&dr, "db/2026-11-23.dump", vec![3u8; 1050])
        .await;

    // Unprotected: two backups, the newest much smaller, no replica copy, no lock, versioning off.
    let plain = aws.create_bucket("vigil-plain").await;
    aws.put_object(&plain, "db/1.dump", vec![1u8; 5000]).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    aws.put_object(&plain, "db/2.dump", vec![2u8; 900]).await;
    // Drifted: the replica holds other bytes of the same size.
    let drifted = aws.create_bucket("vigil-drifted").await;
    aws.put_object(&drifted, "db/1.dump", vec![1u8; 700]).await;
    aws.put_object(&dr, "drifted/1.dump", vec![9u8; 700]).await;

    let sets = format!(
        "backup_sets:\n\
         \x20 - {{name: protected, bucket: {locked}, prefix: db/, max_age: 1h, min_count: 3, replicas: [{{bucket: {dr}}}],\n\
         \x20    require: {{versioning: true, object_lock_days: 30, encryption: true}}}}\n\
         \x20 - {{name: plain, bucket: {plain}, prefix: db/, max_age: 1h, min_count: 3, replicas: [{{bucket: {dr}}}],\n\
         \x20    require: {{versioning: true, object_lock_days: 30}}, labels: {{team: data, severity: page}}}}\n\
         \x20 - {{name: drifted, bucket: {drifted}, prefix: db/, max_age: 1h, replicas: [{{bucket: {dr}, prefix: drifted/}}]}}\n"
    );
    aws.put_object(&reports, "sets.yaml", sets).await;
    let location = format!("s3://{reports}/sets.yaml");
    let mut function = verifier_with(
        &aws,
        &location,
        &reports,
        &[("VIGIL_BACKUP_TOPIC_ARN", topic.as_str())],
    )
    .await;
    let run_at = Utc::now();
    let response = function
        .invoke(&backup_verify_event(run_at))
        .await
        .expect_response();
    assert_eq!(response["summary"]["ok"], 1, "{response}");
    assert_eq!(response["summary"]["failed"], 2, "{response}");

    let report = report_at(&aws, &reports, run_at).await;
    let protected = set_named(&report, "protected");
    assert_eq!(
        statuses(protected),
        [
            pair("freshness", "ok"),
            pair("count", "ok"),
            pair("size", "ok"),
            pair("restore", "ok"),
            pair("integrity", "ok"),
            pair("replica", "ok"),
            pair("object_lock", "ok"),
            pair("versioning", "ok"),
            pair("encryption", "ok")
        ],
        "{protected}"
    );
    let plain_set = set_named(&report, "plain");
    assert_eq!(
        statuses(plain_set),
        [
            pair("freshness", "ok"),
            pair("count", "failed"),
            pair("size", "failed"),
            pair("restore", "ok"),
            pair("integrity", "ok"),
            pair("replica", "failed"),
            pair("object_lock", "failed"),
            pair("versioning", "failed")
        ],
        "{plain_set}"
    );
    let drifted_set = set_named(&report, "drifted");
    let replica = checks_named(drifted_set, "replica").expect("replica");
    assert_eq!(replica["status"], "failed");
    assert!(
        replica["detail"]
            .as_str()
            .expect("detail")
            .contains("other bytes of the same size"),
        "{replica}"
    );

    // One message per failing set and fault, each with its deduplication key.
    let messages = aws
        .receive_sns(&queue, 6, std::time::Duration::from_secs(20))
        .await;
    let mut subjects: Vec<&str> = messages
        .iter()
        .map(|m| m["Subject"].as_str().unwrap_or_default())
        .collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        [
            "[BACKUP FAILED] drifted: replica",
            "[BACKUP FAILED] plain: count",
            "[BACKUP FAILED] plain: object_lock",
            "[BACKUP FAILED] plain: replica",
            "[BACKUP FAILED] plain: size",
            "[BACKUP FAILED] plain: versioning",
        ],
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .all(|m| m["MessageAttributes"]["dedup_key"]["Value"].is_string())
    );
    let plain_message = messages
        .iter()
        .find(|m| m["Subject"] == "[BACKUP FAILED] plain: versioning")
        .expect("plain");
    assert_eq!(plain_message["MessageAttributes"]["team"]["Value"], "data");
    let body: Value = serde_json::from_str(plain_message["Message"].as_str().expect("message"))
        .expect("JSON body");
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .contains("enable versioning"),
        "{body}"
    );

    // A retry of the same scheduled run (Lambda's, or Scheduler's) announces nothing again.
    let retried = function.invoke(&backup_verify_event(run_at)).await;
    let _ = retried.expect_response();
    let again = aws
        .receive_sns(&queue, 1, std::time::Duration::from_secs(4))
        .await;
    assert!(again.is_empty(), "a retry announced again: {again:?}");
}

/// Writes the backup sets file `sets` to `reports`, runs the function once on it (a scheduled
/// run at now, no topic) and returns the report it wrote.
async fn verify_once(aws: &LocalAws, reports: &str, sets: String) -> Value {
    aws.put_object(reports, "sets.yaml", sets).await;
    let location = format!("s3://{reports}/sets.yaml");
    let mut function = verifier(aws, &location, reports).await;
    let run_at = Utc::now();
    function
        .invoke(&backup_verify_event(run_at))
        .await
        .expect_response();
    report_at(aws, reports, run_at).await
}

/// The run's report, read back from where the function wrote it for `run_at`.
async fn report_at(aws: &LocalAws, reports: &str, run_at: chrono::DateTime<Utc>) -> Value {
    let key = vigil_backup_verify::report_key("reports/backup-verify/", run_at);
    serde_json::from_slice(&aws.get_object(reports, &key).await).expect("report JSON")
}

/// A set's check by name, if it ran.
fn checks_named<'a>(set: &'a Value, name: &str) -> Option<&'a Value> {
    set["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["check"] == name)
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
    aws.put_object(
        &backups,
        "orders/2026-11-24.tar.gz",
        vigil_e2e::tar_gz(&[("db.sql", &[1u8; 2048])]),
    )
    .await;
    aws.put_object(
        &backups,
        "orders/2026-11-25.tar.gz",
        vigil_e2e::tar_gz(&[("db.sql", &[2u8; 4096])]),
    )
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
        .invoke(&scheduler_default_event(run_at))
        .await
        .expect_response();
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
    assert_eq!(response["summary"]["ok"], 1, "{report}");
    assert_eq!(response["summary"]["failed"], 2, "{report}");

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
        .invoke(&backup_verify_event(run_at))
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
    let report = report_at(&aws, &reports, run_at).await;
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

/// Test restores through the real binary: a complete archive with its manifest restores; a
/// truncated gzip, a flipped byte, and bytes that no longer match their manifest are each found.
#[tokio::test]
async fn test_restores_find_truncation_corruption_and_manifest_mismatch() {
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let backups = aws.create_bucket("vigil-restore").await;
    let archive = vigil_e2e::tar_gz(&[("velero-backup.json", b"{}"), ("db.sql", &[5u8; 200_000])]);
    let put = |prefix: &'static str, data: Vec<u8>, manifest_of: Vec<u8>| {
        let aws = aws.clone();
        let backups = backups.clone();
        async move {
            let key = format!("{prefix}/2026-11-25.tar.gz");
            aws.put_object(
                &backups,
                &format!("{key}.manifest.json"),
                vigil_e2e::manifest(&key, &manifest_of),
            )
            .await;
            // Uploaded with a SHA-256 checksum, as `aws s3 cp --checksum-algorithm SHA256` does.
            aws.s3
                .put_object()
                .bucket(&backups)
                .key(&key)
                .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Sha256)
                .body(data.into())
                .send()
                .await
                .expect("PutObject");
        }
    };
    put("good", archive.clone(), archive.clone()).await;
    put(
        "truncated",
        archive[..archive.len() - 30].to_vec(),
        archive[..archive.len() - 30].to_vec(),
    )
    .await;
    let mut flipped = archive.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    put("corrupted", flipped.clone(), flipped).await;
    // The manifest describes the archive as written; the stored bytes differ from it.
    put("mismatch", archive.clone(), {
        let mut other = archive.clone();
        other[10] ^= 0x01;
        other
    })
    .await;
    let sets: String = ["good", "truncated", "corrupted", "mismatch"]
        .iter()
        .map(|p| {
            format!(
                "  - {{name: {p}, bucket: {backups}, prefix: {p}/, max_age: 1h, manifest: true}}\n"
            )
        })
        .collect();
    aws.put_object(&reports, "sets.yaml", format!("backup_sets:\n{sets}"))
        .await;
    let location = format!("s3://{reports}/sets.yaml");
    let (topic, queue) = aws.topic_with_queue("vigil-restore-alerts").await;
    let mut function = verifier_with(
        &aws,
        &location,
        &reports,
        &[("VIGIL_BACKUP_TOPIC_ARN", topic.as_str())],
    )
    .await;
    let run_at = Utc::now();
    let response = function
        .invoke(&backup_verify_event(run_at))
        .await
        .expect_response();
    let report = report_at(&aws, &reports, run_at).await;
    assert_eq!(response["summary"]["ok"], 1, "{report}");
    let restore = |name: &str| -> Value {
        checks_named(set_named(&report, name), "restore")
            .cloned()
            .unwrap_or_else(|| panic!("no restore check for {name}"))
    };
    // Without downloading: S3's stored SHA-256 against the manifest.
    let integrity = |name: &str| -> Value {
        checks_named(set_named(&report, name), "integrity")
            .cloned()
            .unwrap_or_else(|| panic!("no integrity check for {name}: {report}"))
    };
    assert_eq!(integrity("good")["status"], "ok", "{}", integrity("good"));
    let mismatch = integrity("mismatch");
    assert_eq!(mismatch["status"], "failed", "{mismatch}");
    assert!(
        mismatch["detail"]
            .as_str()
            .expect("detail")
            .contains("the manifest says"),
        "{mismatch}"
    );
    let good = restore("good");
    assert_eq!(good["status"], "ok", "{good}");
    assert_eq!(good["evidence"]["entries"], 2);
    // The set's EMF line counts the bytes the restore verified.
    let logs = function.logs();
    let line: Value = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["Set"] == "good" && l["_aws"].is_object())
        .unwrap_or_else(|| panic!("no EMF line for set good in {logs:?}"));
    assert_eq!(line["BytesVerified"], archive.len() as f64);
    assert_eq!(line["ChecksFailed"], 0.0);
    assert_eq!(good["evidence"]["bytes"], archive.len());
    for (name, words) in [
        ("truncated", "incomplete"),
        ("corrupted", "restore"),
        ("mismatch", "does not match its manifest"),
    ] {
        let check = restore(name);
        assert_eq!(check["status"], "failed", "{name}: {check}");
        assert!(
            check["detail"].as_str().expect("detail").contains(words),
            "{name}: {check}"
        );
    }
    // One SNS message per failing set and fault.
    let messages = aws
        .receive_sns(&queue, 4, std::time::Duration::from_secs(20))
        .await;
    let mut subjects: Vec<&str> = messages
        .iter()
        .map(|m| m["Subject"].as_str().unwrap_or_default())
        .collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        [
            "[BACKUP FAILED] corrupted: restore",
            "[BACKUP FAILED] mismatch: integrity",
            "[BACKUP FAILED] mismatch: restore",
            "[BACKUP FAILED] truncated: restore",
        ],
        "{messages:?}"
    );
}

/// A Velero backup location: the newest backup's archive against its `velero-backup.json`.
#[tokio::test]
async fn velero_backups_are_checked_against_their_metadata() {
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let bucket = aws.create_bucket("vigil-velero").await;
    let archive = vigil_e2e::tar_gz(&[
        ("metadata/version", b"1"),
        ("resources/deployments.apps/namespaces/shop/api.json", b"{}"),
        (
            "resources/deployments.apps/v1-preferredversion/namespaces/shop/api.json",
            b"{}",
        ),
        ("resources/namespaces/cluster/shop.json", b"{}"),
    ]);
    let backup = |location: &'static str, name: &'static str, phase: &'static str, items: u64| {
        let (aws, bucket, archive) = (aws.clone(), bucket.clone(), archive.clone());
        async move {
            let dir = format!("{location}/backups/{name}");
            aws.put_object(&bucket, &format!("{dir}/{name}.tar.gz"), archive)
                .await;
            aws.put_object(
                &bucket,
                &format!("{dir}/{name}-logs.gz"),
                vigil_e2e::gzip(b"log"),
            )
            .await;
            let metadata = serde_json::json!({"kind": "Backup", "metadata": {"name": name},
                "status": {"phase": phase, "progress": {"itemsBackedUp": items, "totalItems": items}}});
            aws.put_object(
                &bucket,
                &format!("{dir}/velero-backup.json"),
                metadata.to_string(),
            )
            .await;
        }
    };
    backup("good", "daily-1", "Completed", 2).await;
    backup("partial", "daily-1", "PartiallyFailed", 2).await;
    backup("short", "daily-1", "Completed", 5).await;
    // Recorded by Velero as Completed, its archive deleted: seen through its metadata.
    backup("gone", "daily-1", "Completed", 2).await;
    aws.put_object(
        &bucket,
        "gone/backups/daily-2/velero-backup.json",
        serde_json::json!({"kind": "Backup", "metadata": {"name": "daily-2"}, "status": {"phase": "Completed"}})
            .to_string(),
    )
    .await;
    let sets: String = ["good", "partial", "short", "gone"]
        .iter()
        .map(|l| {
            format!(
                "  - {{name: {l}, bucket: {bucket}, prefix: {l}/, max_age: 1h, velero: true}}\n"
            )
        })
        .collect();
    aws.put_object(&reports, "sets.yaml", format!("backup_sets:\n{sets}"))
        .await;
    let location = format!("s3://{reports}/sets.yaml");
    let mut function = verifier(&aws, &location, &reports).await;
    let run_at = Utc::now();
    function
        .invoke(&backup_verify_event(run_at))
        .await
        .expect_response();
    let report = report_at(&aws, &reports, run_at).await;
    let restore = |name: &str| -> Value {
        let set = set_named(&report, name);
        // Only the archive counts as a backup, not its logs or metadata.
        assert_eq!(set["checks"][1]["evidence"]["objects"], 1, "{set}");
        checks_named(set, "restore").cloned().expect("restore")
    };
    let good = restore("good");
    assert_eq!(good["status"], "ok", "{good}");
    let archives = |name: &str| -> Value {
        checks_named(set_named(&report, name), "velero_archives")
            .cloned()
            .expect("velero_archives")
    };
    assert_eq!(archives("good")["status"], "ok");
    let gone = archives("gone");
    assert_eq!(gone["status"], "failed", "{gone}");
    assert!(
        gone["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("daily-2 (Completed)"),
        "{gone}"
    );
    assert_eq!(
        restore("gone")["status"],
        "ok",
        "the archive that is there restores"
    );
    assert_eq!(good["evidence"]["velero"]["items_in_archive"], 2);
    assert!(
        restore("partial")["detail"]
            .as_str()
            .expect("detail")
            .contains("PartiallyFailed")
    );
    assert!(
        restore("short")["detail"]
            .as_str()
            .expect("detail")
            .contains("incomplete")
    );
}

/// A prefix that also holds logs and checksum files: `include`/`exclude` make the newest backup
/// the newest backup. A set that requires SSE-KMS and COMPLIANCE finds SSE-S3 and GOVERNANCE.
#[tokio::test]
async fn patterns_choose_the_backups_and_kms_and_compliance_are_required() {
    use aws_sdk_s3::primitives::DateTime as S3DateTime;
    use aws_sdk_s3::types::ObjectLockMode;
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let bucket = vigil_e2e::unique("vigil-mixed");
    aws.s3
        .create_bucket()
        .bucket(&bucket)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("CreateBucket");
    let until = Utc::now() + chrono::Duration::days(40);
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("db/2026-11-25.sql.gz")
        .body(vigil_e2e::gzip(b"CREATE TABLE orders (id int);\n").into())
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(S3DateTime::from_millis(until.timestamp_millis()))
        .send()
        .await
        .expect("PutObject");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Written after the backup, beside it: not backups.
    aws.put_object(&bucket, "db/2026-11-25.sql.gz.sha256", "abc  x\n")
        .await;
    aws.put_object(&bucket, "db/backup.log", "done\n").await;
    let sets = format!(
        "backup_sets:\n\
         \x20 - {{name: mixed, bucket: {bucket}, prefix: db/, max_age: 1h, include: ['*.sql.gz'],\n\
         \x20    require: {{object_lock_days: 30, object_lock_mode: compliance, encryption: sse-kms}}}}\n"
    );
    aws.put_object(&reports, "sets.yaml", sets).await;
    let location = format!("s3://{reports}/sets.yaml");
    let mut function = verifier(&aws, &location, &reports).await;
    let run_at = Utc::now();
    let response = function
        .invoke(&backup_verify_event(run_at))
        .await
        .expect_response();
    let report = report_at(&aws, &reports, run_at).await;
    let mixed = set_named(&report, "mixed");
    let check = |name: &str| {
        checks_named(mixed, name)
            .unwrap_or_else(|| panic!("no {name} check in {mixed}"))
            .clone()
    };
    let freshness = check("freshness");
    assert_eq!(
        freshness["evidence"]["newest_key"], "db/2026-11-25.sql.gz",
        "{response}"
    );
    assert_eq!(freshness["evidence"]["objects"], 1);
    assert_eq!(check("restore")["status"], "ok");
    let lock = check("object_lock");
    assert_eq!(lock["status"], "failed", "{lock}");
    assert!(
        lock["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("GOVERNANCE mode, not COMPLIANCE"),
        "{lock}"
    );
    let encryption = check("encryption");
    assert_eq!(encryption["status"], "failed", "{encryption}");
    assert!(
        encryption["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("not SSE-KMS"),
        "{encryption}"
    );
}

/// A multipart backup (ETag `<md5 of part md5s>-2`) and its single-part copy made by another
/// tool (ETag the MD5 of the bytes) are the same backup: no finding.
#[tokio::test]
async fn a_multipart_backup_and_its_single_part_copy_are_the_same_backup() {
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let primary = aws.create_bucket("vigil-multipart").await;
    let copy = aws.create_bucket("vigil-copy").await;
    let data: Vec<u8> = (0..(5 * 1024 * 1024 + 100_000u32))
        .map(|i| (i % 251) as u8)
        .collect();
    let key = "db/2026-11-25.dump";
    multipart(&aws, &primary, key, &data, None).await;
    aws.put_object(&copy, key, data.clone()).await;
    // And a copy with one byte changed: a finding.
    let mut bad = data.clone();
    bad[4_000_000] ^= 1;
    let drifted = aws.create_bucket("vigil-bad-copy").await;
    aws.put_object(&drifted, key, bad).await;
    let sets = format!(
        "backup_sets:\n\
         \x20 - {{name: copied, bucket: {primary}, prefix: db/, max_age: 1h, restore: none, replicas: [{{bucket: {copy}}}, {{bucket: {drifted}}}]}}\n"
    );
    let report = verify_once(&aws, &reports, sets).await;
    let replicas: Vec<&Value> = set_named(&report, "copied")["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter(|c| c["check"] == "replica")
        .collect();
    assert_eq!(replicas.len(), 2, "{report}");
    assert_ne!(
        replicas[0]["evidence"]["etag"], replicas[0]["evidence"]["replica_etag"],
        "the copy has another ETag"
    );
    assert_eq!(replicas[0]["status"], "ok", "{}", replicas[0]);
    assert!(
        replicas[0]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("another tool"),
        "{}",
        replicas[0]
    );
    assert_eq!(replicas[1]["status"], "failed", "{}", replicas[1]);
}

/// Uploads `data` in 5 MiB parts; with a checksum, S3 computes `algorithm` per part, and
/// `full_object` asks for a whole-object checksum (CRC64NVME always is one) instead of a
/// composite.
async fn multipart(
    aws: &LocalAws,
    bucket: &str,
    key: &str,
    data: &[u8],
    checksum: Option<(aws_sdk_s3::types::ChecksumAlgorithm, bool)>,
) {
    use aws_sdk_s3::types::{
        ChecksumAlgorithm, ChecksumType, CompletedMultipartUpload, CompletedPart,
    };
    let algorithm = checksum.as_ref().map(|(a, _)| a.clone());
    let kind = checksum.as_ref().map(|(_, full)| {
        if *full {
            ChecksumType::FullObject
        } else {
            ChecksumType::Composite
        }
    });
    let upload = aws
        .s3
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .set_checksum_algorithm(algorithm.clone())
        .set_checksum_type(kind)
        .send()
        .await
        .expect("CreateMultipartUpload");
    let id = upload.upload_id().expect("upload id");
    let mut parts = Vec::new();
    for (n, chunk) in data.chunks(5 * 1024 * 1024).enumerate() {
        let number = i32::try_from(n + 1).expect("part number");
        let part = aws
            .s3
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(id)
            .part_number(number)
            .set_checksum_algorithm(algorithm.clone())
            .body(chunk.to_vec().into())
            .send()
            .await
            .expect("UploadPart");
        let mut completed = CompletedPart::builder()
            .part_number(number)
            .e_tag(part.e_tag().unwrap_or_default());
        completed = match &algorithm {
            None => completed,
            Some(ChecksumAlgorithm::Sha256) => {
                completed.set_checksum_sha256(part.checksum_sha256().map(str::to_owned))
            }
            Some(ChecksumAlgorithm::Crc32C) => {
                completed.set_checksum_crc32_c(part.checksum_crc32_c().map(str::to_owned))
            }
            Some(ChecksumAlgorithm::Crc64Nvme) => {
                completed.set_checksum_crc64_nvme(part.checksum_crc64_nvme().map(str::to_owned))
            }
            _ => completed,
        };
        parts.push(completed.build());
    }
    aws.s3
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .expect("CompleteMultipartUpload");
}

/// S3's checksum types as the SDKs write them, through the real GetObjectAttributes: a
/// composite SHA-256 and a composite CRC32C over two parts (recomputed over the parts S3
/// lists), a whole-object CRC64NVME of a multipart upload, each with a single-part copy made by
/// another tool under S3's default CRC64NVME. No finding on any; a copy with one byte changed
/// is one.
#[tokio::test]
async fn every_stored_checksum_type_is_verified_and_copies_compared_without_reading_them() {
    use aws_sdk_s3::types::ChecksumAlgorithm;
    let aws = LocalAws::connect().await;
    let reports = aws.create_bucket("vigil-reports").await;
    let primary = aws.create_bucket("vigil-checksums").await;
    let copy = aws.create_bucket("vigil-copies").await;
    let data: Vec<u8> = (0..(5 * 1024 * 1024 + 300_000u32))
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases = [
        ("sha", ChecksumAlgorithm::Sha256, false),
        ("crc32c", ChecksumAlgorithm::Crc32C, false),
        ("crc64", ChecksumAlgorithm::Crc64Nvme, true),
    ];
    let mut yaml = String::from("backup_sets:\n");
    for (name, algorithm, full) in &cases {
        let key = format!("{name}/2026-11-25.dump");
        multipart(
            &aws,
            &primary,
            &key,
            &data,
            Some((algorithm.clone(), *full)),
        )
        .await;
        aws.s3
            .put_object()
            .bucket(&copy)
            .key(&key)
            .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
            .body(data.clone().into())
            .send()
            .await
            .expect("PutObject");
        yaml.push_str(&format!(
            "  - {{name: {name}, bucket: {primary}, prefix: {name}/, max_age: 1h, replicas: [{{bucket: {copy}}}]}}\n"
        ));
    }
    let mut bad = data.clone();
    bad[1_000] ^= 1;
    aws.s3
        .put_object()
        .bucket(&copy)
        .key("crc64/2026-11-25.dump")
        .checksum_algorithm(ChecksumAlgorithm::Crc64Nvme)
        .body(bad.into())
        .send()
        .await
        .expect("PutObject");
    let report = verify_once(&aws, &reports, yaml).await;
    for (name, _, _) in &cases {
        let set = set_named(&report, name);
        let integrity = checks_named(set, "integrity").expect("integrity");
        assert_eq!(integrity["status"], "ok", "{name}: {integrity}");
        assert!(
            integrity["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("agrees with the bytes read"),
            "{name}: {integrity}"
        );
        let replica = checks_named(set, "replica").expect("replica");
        let detail = replica["detail"].as_str().unwrap_or_default();
        if *name == "crc64" {
            assert_eq!(replica["status"], "failed", "{replica}");
            assert!(detail.contains("other bytes"), "{replica}");
        } else {
            assert_eq!(replica["status"], "ok", "{name}: {replica}");
            assert!(
                detail.contains("stored CRC64NVME is the primary's as read"),
                "{name}: {replica}"
            );
        }
    }
    let kinds: Vec<&str> = cases
        .iter()
        .map(|(name, _, _)| {
            checks_named(set_named(&report, name), "integrity").expect("integrity")["evidence"]
                ["details"]["stored"]["kind"]
                .as_str()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(kinds, ["COMPOSITE", "COMPOSITE", "FULL_OBJECT"], "{report}");
}
