//! Artifacts: one file on the operator's host holding items packed from
//! nodes, as a tar stream (zstd, gzip or none) that plain `tar` lists and
//! extracts. The last member, `stackhost-manifest.json`, records every
//! item's size and sha256, computed while the bytes streamed through.
//!
//! Writing is atomic: everything goes to a hidden temporary file
//! (`.NAME.stackhost-RANDOM`, created exclusively) in the destination
//! directory, held open as a handle, which `finish` fsyncs and renames; a
//! writer dropped unfinished removes it, and a process killed midway leaves
//! only that hidden file, never a file under the final name.
//!
//! Artifacts hold database dumps and settings, so the temporary file is
//! created with mode 0600 by the same `openat` that makes it (see
//! [`crate::sandbox::ops::create_temp`]; a umask can only take bits away):
//! it is never readable by others, not even for a moment, and the rename
//! keeps that.
//!
//! All of this is synchronous (tar, compression, hashing) and runs on
//! blocking threads; bytes arrive and leave through readers and writers
//! backed by bounded channels, so memory stays constant.

mod format;
pub mod handle;
mod reader;
mod writer;

pub use format::{Compression, Item, MANIFEST, Mismatch, check_name};
pub use reader::{Listed, Reader, extract_in, list_in};
pub use writer::{Progress, Writer, remove_stale_partials};

use std::io;
use std::path::Path;

/// Why an artifact operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{0}")]
    InvalidName(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Io(String),
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(io::Error) -> ArtifactError {
    let msg = format!("{what} {}", path.display());
    move |e| {
        if e.kind() == io::ErrorKind::NotFound {
            ArtifactError::NotFound(format!("{msg}: {e}"))
        } else {
            ArtifactError::Io(format!("{msg}: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format::parse_manifest;

    /// A writer of the artifact at `path` (its directory opened here).
    fn create(
        path: &Path,
        compression: Compression,
        threads: u32,
    ) -> Result<Writer, ArtifactError> {
        let dir = File::open(path.parent().unwrap()).unwrap();
        Writer::create_in(
            dir.into(),
            path.file_name().unwrap(),
            path,
            compression,
            threads,
        )
    }

    /// The artifact at `path`.
    fn open(path: &Path) -> Result<Reader, ArtifactError> {
        let dir = File::open(path.parent().unwrap()).unwrap();
        Reader::open_in(dir.as_fd(), Path::new(path.file_name().unwrap()), path)
    }

    #[test]
    fn a_spool_is_made_through_the_directory_handle_not_its_path() {
        // The artifact's directory moves, and a link to nowhere takes its
        // old name: a spool made by path would fail or land elsewhere.
        let top = tempfile::tempdir().unwrap();
        let (a, b) = (top.path().join("a"), top.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        let mut w = create(&a.join("x.tar.zst"), Compression::Zstd, 1).unwrap();
        std::fs::rename(&a, &b).unwrap();
        std::os::unix::fs::symlink("/nonexistent-stackhost-test", &a).unwrap();
        let mut spool = w.spool_file().unwrap();
        std::io::Write::write_all(&mut spool, b"dump bytes").unwrap();
        let item = w.add_spool("db.dump", spool, 10).unwrap();
        assert_eq!(item.size, 10);
        w.finish().unwrap();
        assert!(b.join("x.tar.zst").is_file());
        assert_eq!(
            open(&b.join("x.tar.zst"))
                .unwrap()
                .read("db.dump", 100)
                .unwrap(),
            b"dump bytes"
        );
    }

    #[test]
    fn the_progress_line_escapes_the_artifact_name() {
        let p = Progress::new("evil\x1b]0;owned\x07.tar".into());
        assert!(
            p.line().starts_with("evil\\x1b]0;owned\\x07.tar: "),
            "{}",
            p.line()
        );
    }
    use super::*;
    use sha2::{Digest, Sha256};
    use std::fs::File;
    use std::io::Read;
    use std::os::fd::{AsFd, OwnedFd};

    fn node_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, format!("./{name}"), *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn stale_partials_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let mine = std::process::id();
        for name in [
            format!(".a.tar.zst.stackhost-partial-{dead}-0011223344556677"),
            format!(".b.tar.zst.stackhost-partial-{mine}-0011223344556677"),
            ".c.tar.zst.stackhost-0011223344556677".to_string(),
            "d.tar.zst".to_string(),
        ] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        // A writer names its temporary file with its own pid.
        let w = create(&dir.path().join("e.tar.zst"), Compression::Zstd, 1).unwrap();
        let fd: OwnedFd = std::fs::File::open(dir.path()).unwrap().into();
        let removed = remove_stale_partials(&fd);
        assert_eq!(
            removed,
            [(
                format!(".a.tar.zst.stackhost-partial-{dead}-0011223344556677"),
                dead
            )]
        );
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(
            left.iter()
                .any(|n| n.starts_with(&format!(".e.tar.zst.stackhost-partial-{mine}-")))
        );
        drop(w);
    }

    #[test]
    fn the_streamed_manifest_matches_its_header_and_the_items() {
        // Names JSON must escape (quotes, backslashes, control characters,
        // non-ASCII) and enough items that the manifest spans many blocks:
        // the size counted first must be what is then written, or every
        // member after it would be misread.
        let names = ["q\"uote", "back\\slash", "tab\tnew\nline", "é-ü-☃", "plain"];
        let files: Vec<(String, Vec<u8>)> = (0..600)
            .map(|i| {
                (
                    format!("{}-{i}", names[i % names.len()]),
                    vec![i as u8; i % 700],
                )
            })
            .collect();
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_slice()))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.tar");
        let mut w = create(&path, Compression::None, 1).unwrap();
        let (added, _) = w.add_tar("t", &node_tar(&refs)[..]).unwrap();
        let all = w.finish().unwrap();
        assert_eq!(added, all);
        assert_eq!(all[1].name, "t/back\\slash-1");
        assert_eq!(
            all[7].sha256,
            hex::encode(Sha256::digest(vec![7u8; 7])),
            "the hex written is the digest of the bytes"
        );
        // Read back as plain tar: the manifest is the last member, its
        // size its header's, and it parses to the same items.
        let mut archive = tar::Archive::new(File::open(&path).unwrap());
        let mut last = None;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).unwrap();
            assert_eq!(body.len() as u64, entry.header().size().unwrap());
            last = Some((entry.path().unwrap().into_owned(), body));
        }
        let (name, body) = last.unwrap();
        assert_eq!(name, Path::new(MANIFEST));
        assert_eq!(parse_manifest(&body, &path).unwrap(), all);
        assert!(
            std::str::from_utf8(&body)
                .unwrap()
                .contains("\"name\": \"t/q\\\"uote-0\"")
        );
        let mut r = open(&path).unwrap();
        assert!(r.verify().unwrap().is_empty());
    }

    #[test]
    fn round_trip_verify_and_unpack() {
        for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.tar.zst");
            let mut w = create(&path, compression, 2).unwrap();
            w.add_reader("meta.json", 2, &b"{}"[..]).unwrap();
            let (items, skipped) = w
                .add_tar("tree", &node_tar(&[("x", b"hello"), ("d/y", b"world")])[..])
                .unwrap();
            assert_eq!((items.len(), skipped), (2, 0));
            let mut spool = w.spool_file().unwrap();
            std::io::Write::write_all(&mut spool, b"spooled bytes").unwrap();
            w.add_spool("dump", spool, 13).unwrap();
            assert!(!path.exists(), "nothing under the final name before finish");
            let all = w.finish().unwrap();
            assert_eq!(all.len(), 4);
            let mut r = open(&path).unwrap();
            assert_eq!(r.items().unwrap(), all);
            assert!(r.verify().unwrap().is_empty());
            assert_eq!(r.read("tree/d/y", 100).unwrap(), b"world");
            let mut out = Vec::new();
            assert_eq!(r.unpack("tree", &mut out).unwrap(), 10);
            let names: Vec<String> = tar::Archive::new(&out[..])
                .entries()
                .unwrap()
                .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, vec!["x", "d/y"]);
        }
    }

    #[test]
    fn dropped_writer_leaves_nothing_and_bad_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.tar.zst");
        let mut w = create(&path, Compression::Zstd, 1).unwrap();
        assert!(w.add_reader("../escape", 0, io::empty()).is_err());
        assert!(w.add_reader(MANIFEST, 0, io::empty()).is_err());
        w.add_reader("ok", 1, &b"x"[..]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn artifacts_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.tar.zst");
        let mut w = create(&path, Compression::Zstd, 1).unwrap();
        w.add_reader("x", 1, &b"x"[..]).unwrap();
        let tmp = dir.path().join(&w.tmp);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&tmp), 0o600, "the temporary file, while it fills");
        w.finish().unwrap();
        assert_eq!(mode(&path), 0o600, "the finished artifact");
    }

    #[test]
    fn large_members_long_names_and_short_data() {
        // Members bigger than the copy buffer, of sizes that need padding,
        // under a name too long for a plain tar header; the artifact passes
        // the write-behind threshold several times.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.tar.zst");
        let long = format!("{}/{}", "d".repeat(90), "f".repeat(90));
        let big: Vec<u8> = (0..(20u32 << 20) + 777).map(|i| (i % 251) as u8).collect();
        let mid: Vec<u8> = (0..(crate::sandbox::tree::MEMBER_BUF as u32) + 1)
            .map(|i| (i % 13) as u8)
            .collect();
        let mut w = create(&path, Compression::Zstd, 2).unwrap();
        let item = w.add_reader(&long, big.len() as u64, &big[..]).unwrap();
        assert_eq!(item.sha256, hex::encode(Sha256::digest(&big)));
        let (items, _) = w.add_tar("t", &node_tar(&[("m", &mid)])[..]).unwrap();
        assert_eq!(items[0].sha256, hex::encode(Sha256::digest(&mid)));
        w.finish().unwrap();
        let mut r = open(&path).unwrap();
        assert!(r.verify().unwrap().is_empty());
        assert_eq!(r.read(&long, 64 << 20).unwrap(), big);
        assert_eq!(r.read("t/m", 1 << 20).unwrap(), mid);
        // GNU tar reads it too.
        let listed = std::process::Command::new("tar")
            .arg("-tf")
            .arg(&path)
            .output()
            .unwrap();
        let names = String::from_utf8_lossy(&listed.stdout);
        assert!(names.lines().any(|l| l == long), "{names}");

        // Data shorter than its stated size fails and spoils the artifact.
        let path = dir.path().join("s.tar.zst");
        let mut w = create(&path, Compression::Zstd, 1).unwrap();
        let e = w.add_reader("short", 10, &b"12345"[..]).unwrap_err();
        assert!(e.to_string().contains("ended after 5 of 10 bytes"), "{e}");
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("incomplete"), "{e}");
        assert!(!path.exists());
    }

    #[test]
    fn a_manifest_of_another_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.tar");
        let mut b = tar::Builder::new(Vec::new());
        let json = br#"{"format":"stackhost-archive/2","items":[]}"#;
        let mut h = tar::Header::new_gnu();
        h.set_size(json.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, MANIFEST, &json[..]).unwrap();
        std::fs::write(&path, b.into_inner().unwrap()).unwrap();
        let e = open(&path).unwrap().items().unwrap_err();
        assert!(
            e.to_string().contains(
                "is in format `stackhost-archive/2`; this stackhost reads `stackhost-archive/1`"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_changed_item_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.tar");
        let mut w = create(&path, Compression::None, 1).unwrap();
        w.add_reader("first", 5, &b"aaaaa"[..]).unwrap();
        w.add_reader("second", 5, &b"bbbbb"[..]).unwrap();
        w.finish().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(5).position(|w| w == b"bbbbb").unwrap();
        bytes[at] = b'c';
        std::fs::write(&path, bytes).unwrap();
        let bad = open(&path).unwrap().verify().unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name, "second");
    }
}
