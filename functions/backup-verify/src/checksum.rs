//! The checksums a test restore computes as it reads, in the same pass: SHA-256 (what backup
//! jobs write in manifests) always, and whichever of S3's algorithms (CRC64NVME, CRC32C, CRC32,
//! SHA-1, SHA-256) the object's stored checksum, or a replica's, needs to be compared with the
//! bytes. A composite checksum is computed over the same part boundaries S3 recorded.
//!
//! Values are S3's encoding: base64 of the digest's bytes, a CRC's big-endian.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use sha2::Digest as _;
use vigil_shared::{ChecksumAlgorithm, ChecksumType, StoredChecksum};

/// What a restore should compute besides SHA-256.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// Checksums of the whole object.
    pub full: BTreeSet<ChecksumAlgorithm>,
    /// A composite checksum: the algorithm and the parts' sizes, in order.
    pub composite: Option<(ChecksumAlgorithm, Vec<u64>)>,
}

impl Wanted {
    /// Adds what comparing with `stored` needs: its algorithm over the whole object, or over
    /// its parts when it is composite and S3 listed them (otherwise nothing can be computed).
    pub fn add(&mut self, stored: &StoredChecksum) {
        match stored.kind {
            ChecksumType::FullObject => {
                self.full.insert(stored.algorithm);
            }
            ChecksumType::Composite if !stored.parts.is_empty() && self.composite.is_none() => {
                self.composite = Some((
                    stored.algorithm,
                    stored.parts.iter().map(|p| p.size).collect(),
                ));
            }
            ChecksumType::Composite => {}
        }
    }
}

/// What a restore computed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Digests {
    /// Whole-object checksums, base64, by algorithm (SHA-256 always among them).
    pub full: BTreeMap<ChecksumAlgorithm, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub composite: Option<Composite>,
}

/// A composite checksum computed over recorded part boundaries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Composite {
    pub algorithm: ChecksumAlgorithm,
    /// Each part's checksum, base64.
    pub parts: Vec<String>,
    /// The checksum of the parts' checksums, base64 (no `-N`).
    pub value: String,
    /// False when the object's size is not the sum of the recorded parts.
    pub layout_matches: bool,
}

/// How a stored checksum compares with the bytes read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    Same,
    /// The bytes give `computed`, S3 holds the other value.
    Differs {
        computed: String,
    },
    /// Nothing computed is comparable (the reason).
    NotComparable(String),
}

impl Digests {
    /// Compares `stored` with what was computed: like with like only.
    pub fn compare(&self, stored: &StoredChecksum) -> Comparison {
        match stored.kind {
            ChecksumType::FullObject => match self.full.get(&stored.algorithm) {
                Some(v) if *v == stored.value => Comparison::Same,
                Some(v) => Comparison::Differs {
                    computed: v.clone(),
                },
                None => Comparison::NotComparable(format!(
                    "no whole-object {} was computed",
                    stored.algorithm.as_s3()
                )),
            },
            ChecksumType::Composite => match &self.composite {
                Some(c) if c.algorithm == stored.algorithm && c.layout_matches => {
                    if c.value == stored.value {
                        Comparison::Same
                    } else {
                        Comparison::Differs {
                            computed: c.value.clone(),
                        }
                    }
                }
                Some(c) if c.algorithm == stored.algorithm => Comparison::Differs {
                    computed: format!(
                        "{} over parts whose sizes do not add up to the bytes read",
                        c.value
                    ),
                },
                _ if stored.parts.is_empty() => Comparison::NotComparable(format!(
                    "S3 holds a composite {} of {} parts but did not list the parts' sizes, so it cannot be recomputed",
                    stored.algorithm.as_s3(),
                    stored
                        .parts_count
                        .map_or_else(|| "several".to_owned(), |n| n.to_string())
                )),
                _ => Comparison::NotComparable(format!(
                    "no composite {} was computed",
                    stored.algorithm.as_s3()
                )),
            },
        }
    }

    /// SHA-256 of the whole object, lower-case hex (the manifests' form).
    pub fn sha256_hex(&self) -> String {
        self.full
            .get(&ChecksumAlgorithm::Sha256)
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
            .unwrap_or_default()
    }
}

/// Whether two stored checksums can be compared without reading either object, and if so
/// whether they agree: the same algorithm, and both of the whole object, or both composite over
/// the same part sizes.
pub fn same_stored(a: &StoredChecksum, b: &StoredChecksum) -> Option<bool> {
    let sizes = |c: &StoredChecksum| c.parts.iter().map(|p| p.size).collect::<Vec<_>>();
    let comparable = a.algorithm == b.algorithm
        && a.kind == b.kind
        && match a.kind {
            ChecksumType::FullObject => true,
            ChecksumType::Composite => {
                a.parts_count == b.parts_count && !a.parts.is_empty() && sizes(a) == sizes(b)
            }
        };
    comparable.then(|| a.value == b.value)
}

/// One running digest.
enum Running {
    Crc(crc_fast::Digest, usize),
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
}

impl Running {
    fn new(algorithm: ChecksumAlgorithm) -> Self {
        use crc_fast::CrcAlgorithm as C;
        match algorithm {
            ChecksumAlgorithm::Crc32 => Running::Crc(crc_fast::Digest::new(C::Crc32IsoHdlc), 4),
            ChecksumAlgorithm::Crc32c => Running::Crc(crc_fast::Digest::new(C::Crc32Iscsi), 4),
            ChecksumAlgorithm::Crc64Nvme => Running::Crc(crc_fast::Digest::new(C::Crc64Nvme), 8),
            ChecksumAlgorithm::Sha1 => Running::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => Running::Sha256(sha2::Sha256::new()),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Running::Crc(d, _) => d.update(bytes),
            Running::Sha1(d) => d.update(bytes),
            Running::Sha256(d) => d.update(bytes),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Running::Crc(d, 4) => (d.finalize() as u32).to_be_bytes().to_vec(),
            Running::Crc(d, _) => d.finalize().to_be_bytes().to_vec(),
            Running::Sha1(d) => d.finalize().to_vec(),
            Running::Sha256(d) => d.finalize().to_vec(),
        }
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The digest of one pass over an object: feed it every byte in order, then [`Hasher::finish`].
pub struct Hasher {
    full: Vec<(ChecksumAlgorithm, Running)>,
    composite: Option<Parts>,
}

struct Parts {
    algorithm: ChecksumAlgorithm,
    sizes: Vec<u64>,
    /// Index of the part being read, and the bytes of it still to come.
    index: usize,
    left: u64,
    current: Running,
    done: Vec<Vec<u8>>,
    overflow: bool,
}

impl Hasher {
    pub fn new(wanted: &Wanted) -> Self {
        let mut algorithms = wanted.full.clone();
        algorithms.insert(ChecksumAlgorithm::Sha256);
        Self {
            full: algorithms
                .into_iter()
                .map(|a| (a, Running::new(a)))
                .collect(),
            composite: wanted.composite.as_ref().map(|(a, sizes)| Parts {
                algorithm: *a,
                sizes: sizes.clone(),
                index: 0,
                left: sizes.first().copied().unwrap_or(0),
                current: Running::new(*a),
                done: Vec::new(),
                overflow: false,
            }),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        for (_, d) in &mut self.full {
            d.update(bytes);
        }
        if let Some(parts) = &mut self.composite {
            parts.update(bytes);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            full: self
                .full
                .into_iter()
                .map(|(a, d)| (a, b64(&d.finish())))
                .collect(),
            composite: self.composite.map(Parts::finish),
        }
    }
}

impl Parts {
    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.index >= self.sizes.len() {
                self.overflow = true;
                return;
            }
            let take = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            self.current.update(&bytes[..take]);
            bytes = &bytes[take..];
            self.left -= take as u64;
            if self.left == 0 {
                self.close_part();
            }
        }
    }

    /// Ends the part being read, and moves to the next (skipping empty ones).
    fn close_part(&mut self) {
        let done = std::mem::replace(&mut self.current, Running::new(self.algorithm));
        self.done.push(done.finish());
        self.index += 1;
        self.left = self.sizes.get(self.index).copied().unwrap_or(0);
    }

    fn finish(mut self) -> Composite {
        // Parts of size zero at the end are still parts.
        while self.index < self.sizes.len() && self.left == 0 {
            self.close_part();
        }
        let layout_matches = !self.overflow && self.index == self.sizes.len();
        let mut outer = Running::new(self.algorithm);
        for part in &self.done {
            outer.update(part);
        }
        Composite {
            algorithm: self.algorithm,
            parts: self.done.iter().map(|p| b64(p)).collect(),
            value: b64(&outer.finish()),
            layout_matches,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vigil_shared::PartChecksum;

    fn digests(data: &[u8], wanted: &Wanted) -> Digests {
        let mut h = Hasher::new(wanted);
        h.update(data);
        h.finish()
    }

    fn full(algorithms: &[ChecksumAlgorithm]) -> Wanted {
        Wanted {
            full: algorithms.iter().copied().collect(),
            composite: None,
        }
    }

    /// The check values of each CRC (reveng's catalogue, "123456789") and the digests of
    /// aws-smithy-checksums' "test data" vectors, in S3's base64 of the big-endian bytes.
    #[test]
    fn algorithms_are_those_s3_uses() {
        use ChecksumAlgorithm::*;
        let d = digests(b"123456789", &full(&[Crc32, Crc32c, Crc64Nvme, Sha1]));
        let be = |v: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .expect("base64")
        };
        assert_eq!(be(&d.full[&Crc32]), 0xcbf4_3926u32.to_be_bytes());
        assert_eq!(be(&d.full[&Crc32c]), 0xe306_9283u32.to_be_bytes());
        assert_eq!(
            be(&d.full[&Crc64Nvme]),
            0xae8b_1486_0a79_9888u64.to_be_bytes()
        );
        let t = digests(b"test data", &full(&[Crc32, Crc32c, Crc64Nvme]));
        assert_eq!(be(&t.full[&Crc32]), 0xd308_aeb2u32.to_be_bytes());
        assert_eq!(be(&t.full[&Crc32c]), 0x3379_b4cau32.to_be_bytes());
        assert_eq!(t.full[&Crc64Nvme], "rsrzr5yYqFU=");
        assert_eq!(
            d.sha256_hex(),
            "15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225"
        );
        assert_eq!(d.full[&Sha1], b64(&sha1::Sha1::digest(b"123456789")));
    }

    fn composite(algorithm: ChecksumAlgorithm, data: &[u8], sizes: &[u64]) -> StoredChecksum {
        let mut parts = Vec::new();
        let mut at = 0usize;
        for &s in sizes {
            let part = &data[at..at + s as usize];
            at += s as usize;
            let mut r = Running::new(algorithm);
            r.update(part);
            parts.push(r.finish());
        }
        let mut outer = Running::new(algorithm);
        for p in &parts {
            outer.update(p);
        }
        StoredChecksum {
            algorithm,
            value: b64(&outer.finish()),
            kind: ChecksumType::Composite,
            parts: sizes
                .iter()
                .zip(&parts)
                .map(|(s, p)| PartChecksum {
                    size: *s,
                    checksum: Some(b64(p)),
                })
                .collect(),
            parts_count: Some(sizes.len() as u32),
        }
    }

    #[test]
    fn like_is_compared_with_like_only() {
        let data = vec![7u8; 1000];
        let stored = composite(ChecksumAlgorithm::Sha256, &data, &[400, 400, 200]);
        let mut wanted = Wanted::default();
        wanted.add(&stored);
        let d = digests(&data, &wanted);
        assert_eq!(d.compare(&stored), Comparison::Same);
        // The whole-object SHA-256 of the same bytes is another value: never compared.
        let whole = StoredChecksum {
            kind: ChecksumType::FullObject,
            parts: Vec::new(),
            parts_count: None,
            value: d.full[&ChecksumAlgorithm::Sha256].clone(),
            ..stored.clone()
        };
        assert_ne!(whole.value, stored.value);
        assert_eq!(same_stored(&whole, &stored), None);
        assert_eq!(d.compare(&whole), Comparison::Same);
        // Another part layout of the same bytes: not comparable by value.
        let other_layout = composite(ChecksumAlgorithm::Sha256, &data, &[500, 500]);
        assert_eq!(same_stored(&stored, &other_layout), None);
        assert_eq!(same_stored(&stored, &stored), Some(true));
        // Parts that S3 did not list cannot be recomputed: said so, not a finding.
        let unlisted = StoredChecksum {
            parts: Vec::new(),
            ..stored.clone()
        };
        assert!(matches!(
            digests(&data, &full(&[])).compare(&unlisted),
            Comparison::NotComparable(_)
        ));
    }

    proptest! {
        /// However the bytes arrive, the digests are those of the whole; one flipped byte
        /// changes the composite, and parts that do not add up are noticed.
        #[test]
        fn a_pass_in_any_chunks_gives_the_same_digests(
            data in proptest::collection::vec(any::<u8>(), 1..3000),
            cuts in proptest::collection::vec(1usize..500, 1..8),
            a in 0usize..5,
            flip in any::<proptest::sample::Index>(),
        ) {
            let algorithm = [ChecksumAlgorithm::Crc32, ChecksumAlgorithm::Crc32c,
                ChecksumAlgorithm::Crc64Nvme, ChecksumAlgorithm::Sha1, ChecksumAlgorithm::Sha256][a];
            let mut sizes = Vec::new();
            let mut left = data.len();
            for c in cuts {
                let s = c.min(left);
                sizes.push(s as u64);
                left -= s;
            }
            if left > 0 { sizes.push(left as u64); }
            let stored = composite(algorithm, &data, &sizes);
            let mut wanted = full(&[algorithm]);
            wanted.add(&stored);
            let mut h = Hasher::new(&wanted);
            let mut rest = data.as_slice();
            let mut step = 1;
            while !rest.is_empty() {
                let n = step.min(rest.len());
                h.update(&rest[..n]);
                rest = &rest[n..];
                step = step * 3 % 257 + 1;
            }
            let d = h.finish();
            prop_assert_eq!(d.compare(&stored), Comparison::Same);
            let mut whole = Running::new(algorithm);
            whole.update(&data);
            prop_assert_eq!(&d.full[&algorithm], &b64(&whole.finish()));

            let mut flipped = data.clone();
            flipped[flip.index(data.len())] ^= 0x01;
            let differs = matches!(digests(&flipped, &wanted).compare(&stored), Comparison::Differs { .. });
            prop_assert!(differs, "a flipped byte went unnoticed");
            let longer = [data.as_slice(), b"x"].concat();
            let differs = matches!(digests(&longer, &wanted).compare(&stored), Comparison::Differs { .. });
            prop_assert!(differs, "an extra byte went unnoticed");
        }
    }
}
