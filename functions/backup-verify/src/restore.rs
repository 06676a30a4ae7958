//! Test restores: read a backup from end to end as a restore would, never whole in memory,
//! recompute its SHA-256, and check the structure its format promises: a gzip stream complete
//! to its trailer (length and CRC), a tar archive readable to its last entry, JSON parseable.

use std::io::{self, Read};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::checksum::{Digests, Hasher, Wanted};

/// What a backup is, by its key or the set's `format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Bytes only: the checksum is the check.
    Raw,
    Gzip,
    Tar,
    TarGz,
    Json,
}

impl Format {
    /// By the key's suffix: `.tar.gz`/`.tgz`, `.gz`, `.tar`, `.json`, else raw.
    pub fn detect(key: &str) -> Format {
        let k = key.to_ascii_lowercase();
        if k.ends_with(".tar.gz") || k.ends_with(".tgz") {
            Format::TarGz
        } else if k.ends_with(".gz") {
            Format::Gzip
        } else if k.ends_with(".tar") {
            Format::Tar
        } else if k.ends_with(".json") {
            Format::Json
        } else {
            Format::Raw
        }
    }
}

/// What a test restore read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub format: Format,
    /// Bytes read from storage.
    pub bytes: u64,
    /// SHA-256 of those bytes, lower-case hex.
    pub sha256: String,
    /// Every checksum computed in the pass, S3's base64.
    pub digests: Digests,
    /// Entries of a tar archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Names of the archive's entries, when asked for (Velero's metadata check).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Why a test restore did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreError {
    /// The bytes could not be read (a connection dropped mid-stream, a timeout, a throttle):
    /// nothing is known of the backup, and the next run tries again. Never a finding.
    Read(String),
    /// The bytes read are not a whole backup of the format: a finding.
    Invalid(String),
    /// The run's time ran out before the end: nothing is known of the backup. Never a finding.
    OutOfTime(String),
}

impl std::fmt::Display for RestoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreError::Read(why) | RestoreError::Invalid(why) | RestoreError::OutOfTime(why) => {
                f.write_str(why)
            }
        }
    }
}

/// Counts and hashes what passes through, stops at the deadline, and remembers whether the
/// storage under it failed: a format error that follows a failed read is the read's, not the
/// backup's.
struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    bytes: u64,
    read_failed: Option<String>,
    deadline: Option<Instant>,
    out_of_time: bool,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.out_of_time = true;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the run's time ran out",
            ));
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.read_failed = Some(e.to_string());
                return Err(e);
            }
        };
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    /// The error for a step that failed with `why`: the storage's when a read failed.
    fn fail(&self, why: String) -> RestoreError {
        match &self.read_failed {
            _ if self.out_of_time => RestoreError::OutOfTime(format!(
                "the run's time ran out after {} bytes",
                self.bytes
            )),
            Some(read) => RestoreError::Read(format!(
                "reading stopped after {} bytes: {read}",
                self.bytes
            )),
            None => RestoreError::Invalid(why),
        }
    }
}

fn tar_entries<R: Read>(reader: R, keep_names: bool) -> Result<(u64, Vec<String>, R), String> {
    let mut archive = tar::Archive::new(reader);
    let mut count = 0;
    let mut names = Vec::new();
    for entry in archive
        .entries()
        .map_err(|e| format!("not a tar archive: {e}"))?
    {
        let mut entry =
            entry.map_err(|e| format!("tar archive unreadable after {count} entries: {e}"))?;
        if keep_names {
            names.push(
                entry
                    .path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        io::copy(&mut entry, &mut io::sink())
            .map_err(|e| format!("tar entry {} is truncated: {e}", count + 1))?;
        count += 1;
    }
    Ok((count, names, archive.into_inner()))
}

/// How a restore reads: whether to keep the archive's entry names, the checksums to compute
/// beside SHA-256, and when to stop.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    pub keep_names: bool,
    pub wanted: Wanted,
    pub deadline: Option<Instant>,
}

/// Reads `reader` to its end as `format`. [`RestoreError::Invalid`] says what is wrong with
/// the backup; [`RestoreError::Read`] that the storage failed under the restore, and
/// [`RestoreError::OutOfTime`] that the deadline came first, which say nothing about it.
pub fn validate(
    reader: &mut dyn Read,
    format: Format,
    pass: &Pass,
) -> Result<Restored, RestoreError> {
    let keep_names = pass.keep_names;
    let mut hashing = Hashing {
        inner: reader,
        hasher: Hasher::new(&pass.wanted),
        bytes: 0,
        read_failed: None,
        deadline: pass.deadline,
        out_of_time: false,
    };
    let mut entries = None;
    let mut names = Vec::new();
    match format {
        Format::Raw => {}
        Format::Gzip => {
            let copied = {
                let mut gz = flate2::read::MultiGzDecoder::new(&mut hashing);
                io::copy(&mut gz, &mut io::sink())
            };
            copied.map_err(|e| hashing.fail(format!("gzip stream incomplete or corrupt: {e}")))?;
        }
        Format::Tar => {
            let read = tar_entries(&mut hashing, keep_names).and_then(|(n, found, rest)| {
                io::copy(rest, &mut io::sink())
                    .map(|_| (n, found))
                    .map_err(|e| format!("read failed: {e}"))
            });
            let (n, found) = read.map_err(|why| hashing.fail(why))?;
            entries = Some(n);
            names = found;
        }
        Format::TarGz => {
            let read = {
                let gz = flate2::read::MultiGzDecoder::new(&mut hashing);
                tar_entries(gz, keep_names)
                    .map_err(|e| format!("{e} (inside gzip)"))
                    .and_then(|(n, found, mut rest)| {
                        io::copy(&mut rest, &mut io::sink())
                            .map(|_| (n, found))
                            .map_err(|e| format!("gzip stream incomplete or corrupt: {e}"))
                    })
            };
            let (n, found) = read.map_err(|why| hashing.fail(why))?;
            entries = Some(n);
            names = found;
        }
        Format::Json => {
            let parsed = {
                let mut de = serde_json::Deserializer::from_reader(&mut hashing);
                serde::de::IgnoredAny::deserialize(&mut de).and_then(|_| de.end())
            };
            parsed.map_err(|e| hashing.fail(format!("not valid JSON: {e}")))?;
        }
    }
    // Whatever a format parser left unread still belongs to the object.
    let rest = io::copy(&mut hashing, &mut io::sink());
    rest.map_err(|e| hashing.fail(format!("read failed: {e}")))?;
    let digests = hashing.hasher.finish();
    Ok(Restored {
        format,
        bytes: hashing.bytes,
        sha256: digests.sha256_hex(),
        digests,
        entries,
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_shared::fixtures::{gzip, tar_gz};

    fn sha(bytes: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn names() -> Pass {
        Pass {
            keep_names: true,
            ..Pass::default()
        }
    }

    #[test]
    fn formats_by_suffix() {
        assert_eq!(Format::detect("a/b.tar.gz"), Format::TarGz);
        assert_eq!(Format::detect("a/b.TGZ"), Format::TarGz);
        assert_eq!(Format::detect("a/b.sql.gz"), Format::Gzip);
        assert_eq!(Format::detect("a/b.tar"), Format::Tar);
        assert_eq!(Format::detect("a/b.json"), Format::Json);
        assert_eq!(Format::detect("a/b.dump"), Format::Raw);
    }

    #[test]
    fn a_complete_archive_restores() {
        let data = tar_gz(&[
            ("velero-backup.json", b"{}"),
            ("resources/x.json", b"[1,2]"),
        ]);
        let r = validate(&mut data.as_slice(), Format::TarGz, &names()).expect("valid");
        assert_eq!((r.bytes, r.entries), (data.len() as u64, Some(2)));
        assert_eq!(r.sha256, sha(&data));
        assert_eq!(r.names, ["velero-backup.json", "resources/x.json"]);
    }

    #[test]
    fn truncation_and_corruption_are_found() {
        let data = tar_gz(&[("a", &[7u8; 50_000]), ("b", &[8u8; 50_000])]);
        let truncated = &data[..data.len() - 20];
        let err = validate(&mut &truncated[..], Format::TarGz, &Pass::default())
            .expect_err("truncated")
            .to_string();
        assert!(
            err.contains("incomplete") || err.contains("truncated") || err.contains("unreadable"),
            "{err}"
        );
        assert!(matches!(
            validate(&mut &truncated[..], Format::TarGz, &Pass::default()),
            Err(RestoreError::Invalid(_))
        ));
        let mut flipped = data.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        assert!(validate(&mut flipped.as_slice(), Format::TarGz, &Pass::default()).is_err());

        let gz = gzip(&[1u8; 10_000]);
        assert!(validate(&mut gz.as_slice(), Format::Gzip, &Pass::default()).is_ok());
        assert!(validate(&mut &gz[..gz.len() - 4], Format::Gzip, &Pass::default()).is_err());
        assert!(validate(&mut &b"{\"a\": [1, 2"[..], Format::Json, &Pass::default()).is_err());
        assert!(
            validate(
                &mut &b"{\"a\": [1, 2]} "[..],
                Format::Json,
                &Pass::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn raw_bytes_are_hashed_whole() {
        let data = vec![42u8; 300_000];
        let r = validate(&mut data.as_slice(), Format::Raw, &Pass::default()).expect("raw");
        assert_eq!((r.bytes, r.sha256), (300_000, sha(&data)));
    }

    /// A healthy backup of each format.
    fn healthy(format: Format, seed: u8) -> Vec<u8> {
        let body: Vec<u8> = (0..20_000u32)
            .map(|i| (i as u8).wrapping_mul(seed | 1))
            .collect();
        match format {
            Format::Raw => body,
            Format::Gzip => gzip(&body),
            Format::Tar | Format::TarGz => {
                let tgz = tar_gz(&[("a.bin", &body), ("b.json", b"{\"ok\": true}")]);
                if format == Format::TarGz {
                    tgz
                } else {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(tgz.as_slice())
                        .read_to_end(&mut out)
                        .expect("tar");
                    out
                }
            }
            Format::Json => serde_json::to_vec(&serde_json::json!({"rows": body})).expect("json"),
        }
    }

    proptest! {
        /// A connection that drops at any offset of a healthy backup is never a finding: the
        /// restore completes (the drop came after the end) or fails as a read error.
        #[test]
        fn a_dropped_stream_is_never_a_finding(f in 0usize..5, seed in any::<u8>(), cut in 0.0f64..1.2) {
            let format = [Format::Raw, Format::Gzip, Format::Tar, Format::TarGz, Format::Json][f];
            let data = healthy(format, seed);
            let at = (data.len() as f64 * cut) as usize;
            let mut reader = vigil_shared::testing::DroppingReader::new(data.clone(), Some(at));
            match validate(&mut reader, format, &Pass::default()) {
                Ok(r) => {
                    prop_assert!(at >= data.len(), "completed though it dropped at {at}");
                    prop_assert_eq!(r.sha256, sha(&data));
                }
                Err(RestoreError::Read(_)) => prop_assert!(at < data.len()),
                Err(RestoreError::OutOfTime(why)) => prop_assert!(false, "no deadline was set: {why}"),
                Err(RestoreError::Invalid(why)) => {
                    prop_assert!(false, "a healthy {format:?} backup reported broken: {why}");
                }
            }
        }

        /// A deadline that passes is never a finding either: the restore stops and says so.
        #[test]
        fn a_deadline_is_never_a_finding(f in 0usize..5, seed in any::<u8>()) {
            let format = [Format::Raw, Format::Gzip, Format::Tar, Format::TarGz, Format::Json][f];
            let data = healthy(format, seed);
            let pass = Pass { deadline: Some(Instant::now()), ..Pass::default() };
            let outcome = validate(&mut data.as_slice(), format, &pass);
            prop_assert!(matches!(outcome, Err(RestoreError::OutOfTime(_))), "{outcome:?}");
        }

        #[test]
        fn never_panics_and_hashes_everything(data in proptest::collection::vec(any::<u8>(), 0..4096), f in 0usize..5) {
            let format = [Format::Raw, Format::Gzip, Format::Tar, Format::TarGz, Format::Json][f];
            if let Ok(r) = validate(&mut data.as_slice(), format, &Pass::default()) {
                prop_assert_eq!(r.bytes, data.len() as u64);
                prop_assert_eq!(r.sha256, sha(&data));
            }
        }
    }
}
