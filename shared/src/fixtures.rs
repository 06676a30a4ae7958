//! Backup archives as backup jobs write them, for the tests (feature `testing`): the unit tests
//! of backup-verify's restore, its fault and run tests, and the end-to-end tests all build
//! their `.gz` and `.tar.gz` backups here.

use std::io::Write;

/// `data` gzip-compressed, as a backup job writes a `.gz` dump.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip");
    gz.finish().expect("gzip")
}

/// A `.tar.gz` archive of `files` (name, contents), each a regular file of mode 0644.
pub fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, *data)
            .expect("tar entry");
    }
    builder.into_inner().expect("tar").finish().expect("gzip")
}
