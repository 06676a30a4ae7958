//! `vigil-restore-bench [MIB]`: test-restore throughput and memory of backup-verify.
//!
//! 1. Writes a file of MIB MiB (default 1024) of pseudo-random bytes.
//! 2. Times `sha256sum` on it (the baseline) and the restore validation (`restore::validate`,
//!    raw format: stream and SHA-256) on the same file, in the same run: the throughput ratio.
//!    Then the same pass computing what S3's checksums need besides: a whole-object CRC64NVME
//!    (S3's default), CRC32C, and a composite SHA-256 over 16 MiB parts.
//! 3. Uploads it to the local emulator with a CRC64NVME checksum, runs the real backup-verify
//!    binary on a set whose latest backup it is (so its restore also recomputes the CRC64NVME),
//!    and reads the process's peak resident memory (VmHWM) afterwards.
//!
//! Needs the emulator (`scripts/local-aws start`) and the release bootstrap in
//! `VIGIL_BIN_DIR` (for example target/release).

use std::io::Write;
use std::time::Instant;

use serde_json::Value;
use vigil_backup_verify::checksum::Wanted;
use vigil_backup_verify::restore::{Format, Pass, validate};
use vigil_e2e::{Function, LocalAws, backup_verify_event, binary};
use vigil_shared::ChecksumAlgorithm;

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let path = std::env::temp_dir().join(format!("vigil-restore-bench-{}.bin", std::process::id()));
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mib {
            for chunk in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
            }
            file.write_all(&block).expect("write");
        }
    }
    let bytes = mib * 1024 * 1024;
    let mbs = |secs: f64| bytes as f64 / 1e6 / secs;

    let t = Instant::now();
    let out = std::process::Command::new("sha256sum")
        .arg(&path)
        .output()
        .expect("sha256sum");
    let baseline = t.elapsed().as_secs_f64();
    let expected = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();

    let t = Instant::now();
    let mut file =
        std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&path).expect("open"));
    let restored = validate(&mut file, Format::Raw, &Pass::default()).expect("restores");
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(restored.sha256, expected, "SHA-256 differs from sha256sum");
    println!("file: {mib} MiB");
    println!("sha256sum (baseline):      {:8.1} MB/s", mbs(baseline));
    println!("restore validate (raw):    {:8.1} MB/s", mbs(ours));
    println!(
        "ratio restore / sha256sum: {:.2} (target at least 0.9)",
        baseline / ours
    );
    let part = 16 * 1024 * 1024;
    let parts: Vec<u64> = (0..bytes.div_ceil(part))
        .map(|i| part.min(bytes - i * part))
        .collect();
    let passes = [
        (
            "+ CRC64NVME",
            Wanted {
                full: [ChecksumAlgorithm::Crc64Nvme].into(),
                composite: None,
            },
        ),
        (
            "+ CRC32C",
            Wanted {
                full: [ChecksumAlgorithm::Crc32c].into(),
                composite: None,
            },
        ),
        (
            "+ CRC64NVME + composite SHA-256",
            Wanted {
                full: [ChecksumAlgorithm::Crc64Nvme].into(),
                composite: Some((ChecksumAlgorithm::Sha256, parts.clone())),
            },
        ),
    ];
    for (name, wanted) in passes {
        let pass = Pass {
            wanted,
            ..Pass::default()
        };
        let t = Instant::now();
        let mut file =
            std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(&path).expect("open"));
        let r = validate(&mut file, Format::Raw, &pass).expect("restores");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(r.sha256, expected);
        println!(
            "restore validate (raw) {name:<32} {:8.1} MB/s, ratio to sha256sum {:.2}",
            mbs(secs),
            baseline / secs
        );
    }

    // The real binary against the emulator: peak memory of the process that streamed it.
    let aws = LocalAws::connect().await;
    let bucket = aws.create_bucket("vigil-bench").await;
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key("big/backup.bin")
        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc64Nvme)
        .body(
            aws_sdk_s3::primitives::ByteStream::from_path(&path)
                .await
                .expect("stream file"),
        )
        .send()
        .await
        .expect("PutObject");
    let sets =
        format!("backup_sets:\n  - {{name: big, bucket: {bucket}, prefix: big/, max_age: 1h}}\n");
    aws.put_object(&bucket, "sets.yaml", sets).await;
    let location = format!("s3://{bucket}/sets.yaml");
    let mut function = Function::start(
        "backup-verify",
        &binary("backup-verify"),
        &[
            ("VIGIL_AWS_ENDPOINT_URL", aws.endpoint.as_str()),
            ("VIGIL_BACKUP_SETS", location.as_str()),
            ("VIGIL_REPORT_BUCKET", bucket.as_str()),
        ],
    )
    .await;
    let idle = function.pid().and_then(peak_rss_kib).unwrap_or(0);
    let t = Instant::now();
    let response = function
        .invoke(&backup_verify_event(chrono::Utc::now()))
        .await
        .expect_response();
    let through_s3 = t.elapsed().as_secs_f64();
    let peak = function.pid().and_then(peak_rss_kib).unwrap_or(0);
    let key = response["report"]
        .as_str()
        .unwrap_or_default()
        .trim_start_matches(&format!("s3://{bucket}/"))
        .to_owned();
    let report: Value =
        serde_json::from_slice(&aws.get_object(&bucket, &key).await).expect("report");
    let restore = report["sets"][0]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "restore").cloned())
        .unwrap_or(Value::Null);
    assert_eq!(restore["status"], "ok", "{restore}");
    assert_eq!(restore["evidence"]["sha256"], expected.as_str());
    let integrity = report["sets"][0]["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["check"] == "integrity").cloned())
        .unwrap_or(Value::Null);
    println!("integrity: {}", integrity["detail"]);
    println!(
        "backup-verify through S3 (LocalStack): {:.1} MB/s for the whole run; peak RSS {:.1} MiB (at start {:.1} MiB)",
        mbs(through_s3),
        peak as f64 / 1024.0,
        idle as f64 / 1024.0
    );
    let per_run = |mb_s: f64| mb_s * (900.0 - 20.0) / 1e3;
    println!(
        "one 15-minute run (880 s after the 20 s reserve) verifies at most {:.0} GB at the validation rate, {:.0} GB at this run's rate through the emulator",
        per_run(mbs(ours)),
        per_run(mbs(through_s3))
    );
    let _ = std::fs::remove_file(&path);
}
