//! Test restores: read a backup from end to end as a restore would, never whole in memory,
//! recompute its SHA-256, and check the structure its format promises: a gzip stream complete
//! to its trailer (length and CRC), a tar archive readable to its last entry, JSON parseable.

use std::io::{self, Read};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
    /// Entries of a tar archive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<u64>,
    /// Names of the archive's entries, when asked for (Velero's metadata check).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// Counts and hashes what passes through.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// Reads `reader` to its end as `format`; `Err` says what is wrong with the backup.
pub fn validate(
    reader: &mut dyn Read,
    format: Format,
    keep_names: bool,
) -> Result<Restored, String> {
    let mut hashing = Hashing {
        inner: reader,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut entries = None;
    let mut names = Vec::new();
    match format {
        Format::Raw => {
            io::copy(&mut hashing, &mut io::sink()).map_err(|e| format!("read failed: {e}"))?;
        }
        Format::Gzip => {
            let mut gz = flate2::read::MultiGzDecoder::new(&mut hashing);
            io::copy(&mut gz, &mut io::sink())
                .map_err(|e| format!("gzip stream incomplete or corrupt: {e}"))?;
        }
        Format::Tar => {
            let (n, found, rest) = tar_entries(&mut hashing, keep_names)?;
            io::copy(rest, &mut io::sink()).map_err(|e| format!("read failed: {e}"))?;
            entries = Some(n);
            names = found;
        }
        Format::TarGz => {
            let gz = flate2::read::MultiGzDecoder::new(&mut hashing);
            let (n, found, mut rest) =
                tar_entries(gz, keep_names).map_err(|e| format!("{e} (inside gzip)"))?;
            io::copy(&mut rest, &mut io::sink())
                .map_err(|e| format!("gzip stream incomplete or corrupt: {e}"))?;
            entries = Some(n);
            names = found;
        }
        Format::Json => {
            let mut de = serde_json::Deserializer::from_reader(&mut hashing);
            serde::de::IgnoredAny::deserialize(&mut de)
                .map_err(|e| format!("not valid JSON: {e}"))?;
            de.end().map_err(|e| format!("not valid JSON: {e}"))?;
        }
    }
    // Whatever a format parser left unread still belongs to the object.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| format!("read failed: {e}"))?;
    Ok(Restored {
        format,
        bytes: hashing.bytes,
        sha256: hex(&hashing.hasher.finalize()),
        entries,
        names,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    pub(crate) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, name, *data)
                .expect("append");
        }
        builder.into_inner().expect("tar").finish().expect("gzip")
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
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
        let r = validate(&mut data.as_slice(), Format::TarGz, true).expect("valid");
        assert_eq!((r.bytes, r.entries), (data.len() as u64, Some(2)));
        assert_eq!(r.sha256, sha(&data));
        assert_eq!(r.names, ["velero-backup.json", "resources/x.json"]);
    }

    #[test]
    fn truncation_and_corruption_are_found() {
        let data = tar_gz(&[("a", &[7u8; 50_000]), ("b", &[8u8; 50_000])]);
        let truncated = &data[..data.len() - 20];
        let err = validate(&mut &truncated[..], Format::TarGz, false).expect_err("truncated");
        assert!(
            err.contains("incomplete") || err.contains("truncated") || err.contains("unreadable"),
            "{err}"
        );
        let mut flipped = data.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 0xff;
        assert!(validate(&mut flipped.as_slice(), Format::TarGz, false).is_err());

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&[1u8; 10_000]).expect("gzip");
        let gz = gz.finish().expect("gzip");
        assert!(validate(&mut gz.as_slice(), Format::Gzip, false).is_ok());
        assert!(validate(&mut &gz[..gz.len() - 4], Format::Gzip, false).is_err());
        assert!(validate(&mut &b"{\"a\": [1, 2"[..], Format::Json, false).is_err());
        assert!(validate(&mut &b"{\"a\": [1, 2]} "[..], Format::Json, false).is_ok());
    }

    #[test]
    fn raw_bytes_are_hashed_whole() {
        let data = vec![42u8; 300_000];
        let r = validate(&mut data.as_slice(), Format::Raw, false).expect("raw");
        assert_eq!((r.bytes, r.sha256), (300_000, sha(&data)));
    }

    proptest! {
        #[test]
        fn never_panics_and_hashes_everything(data in proptest::collection::vec(any::<u8>(), 0..4096), f in 0usize..5) {
            let format = [Format::Raw, Format::Gzip, Format::Tar, Format::TarGz, Format::Json][f];
            if let Ok(r) = validate(&mut data.as_slice(), format, false) {
                prop_assert_eq!(r.bytes, data.len() as u64);
                prop_assert_eq!(r.sha256, sha(&data));
            }
        }
    }
}
