//! Reading an artifact: its items from the manifest, one item's bytes,
//! verification of every item against its digest, unpacking into a node's
//! tar stream, and the artifacts of a directory.

use super::format::*;
use super::{ArtifactError, io_err};
use super::{Item, MANIFEST, Mismatch};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The decompressed tar stream of the artifact open as `file` (read from
/// its start), detecting the compression from its first bytes.
fn open_stream(file: &File, path: &Path) -> Result<Box<dyn Read + Send>, ArtifactError> {
    use std::io::Seek;
    let mut file = file.try_clone().map_err(io_err("cannot open", path))?;
    file.seek(io::SeekFrom::Start(0))
        .map_err(io_err("cannot read", path))?;
    let mut file = BufReader::with_capacity(1 << 20, file);
    let magic = {
        use std::io::BufRead;
        file.fill_buf()
            .map_err(io_err("cannot read", path))?
            .get(..4)
            .map(<[u8]>::to_vec)
    };
    Ok(match magic.as_deref() {
        Some([0x28, 0xb5, 0x2f, 0xfd]) => Box::new(
            zstd::stream::read::Decoder::with_buffer(file).map_err(io_err("zstd for", path))?,
        ),
        Some([0x1f, 0x8b, ..]) => Box::new(flate2::bufread::GzDecoder::new(file)),
        _ => Box::new(file),
    })
}

/// An existing artifact.
pub struct Reader {
    path: PathBuf,
    /// Held open: every pass reads this file, whatever its name is now.
    file: File,
    items: Option<Vec<Item>>,
}

impl Reader {
    /// Open the artifact at `rel` beneath the directory `dir` (never
    /// through a link leaving it; a FIFO or device is refused unopened).
    pub fn open_in(dir: BorrowedFd<'_>, rel: &Path, path: &Path) -> Result<Reader, ArtifactError> {
        use crate::sandbox::FsError;
        let (file, _) = crate::sandbox::ops::open_regular(dir, rel).map_err(|e| match e {
            FsError::NotFound(_) => {
                ArtifactError::NotFound(format!("no artifact at {}", path.display()))
            }
            FsError::Invalid(m) | FsError::Denied(m) | FsError::Io(m) => {
                ArtifactError::InvalidName(format!("{}: {m}", path.display()))
            }
        })?;
        Ok(Reader {
            path: path.to_path_buf(),
            file,
            items: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Walk the members in order, calling `f` with each; stops early when
    /// `f` returns false.
    fn walk(
        &self,
        mut f: impl FnMut(
            &str,
            &mut tar::Entry<'_, Box<dyn Read + Send>>,
        ) -> Result<bool, ArtifactError>,
    ) -> Result<(), ArtifactError> {
        let mut archive = tar::Archive::new(open_stream(&self.file, &self.path)?);
        let corrupt = |e: io::Error| {
            ArtifactError::Corrupt(format!(
                "{} is not a readable artifact: {e}",
                self.path.display()
            ))
        };
        for entry in archive.entries().map_err(corrupt)? {
            let mut entry = entry.map_err(corrupt)?;
            let name = entry
                .path()
                .map_err(corrupt)?
                .to_string_lossy()
                .trim_end_matches('/')
                .to_string();
            if !f(&name, &mut entry)? {
                break;
            }
        }
        Ok(())
    }

    /// The manifest's items (reads the whole stream once, then remembers).
    pub fn items(&mut self) -> Result<Vec<Item>, ArtifactError> {
        if let Some(items) = &self.items {
            return Ok(items.clone());
        }
        let mut manifest = None;
        self.walk(|name, entry| {
            if name == MANIFEST {
                let mut json = Vec::new();
                entry
                    .take(16 << 20)
                    .read_to_end(&mut json)
                    .map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
                manifest = Some(json);
            }
            Ok(true)
        })?;
        let json = manifest.ok_or_else(|| {
            ArtifactError::Corrupt(format!(
                "{} has no {MANIFEST}: it is not a stackhost artifact, or it was cut short",
                self.path.display()
            ))
        })?;
        let items = parse_manifest(&json, &self.path)?;
        self.items = Some(items.clone());
        Ok(items)
    }

    /// The bytes of item `name` (at most `max` of them).
    pub fn read(&self, name: &str, max: u64) -> Result<Vec<u8>, ArtifactError> {
        let mut found = None;
        self.walk(|n, entry| {
            if n == name {
                if entry.size() > max {
                    return Err(ArtifactError::InvalidName(format!(
                        "item {name} is {} bytes, more than the {max} asked for",
                        entry.size()
                    )));
                }
                let mut data = Vec::new();
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| ArtifactError::Corrupt(format!("reading {name}: {e}")))?;
                found = Some(data);
                return Ok(false);
            }
            Ok(true)
        })?;
        found.ok_or_else(|| {
            ArtifactError::NotFound(format!("no item {name} in {}", self.path.display()))
        })
    }

    /// Copy item `name`'s bytes to `out`, checking them against the
    /// manifest. Returns the number of bytes.
    pub fn copy_item(&mut self, name: &str, mut out: impl Write) -> Result<u64, ArtifactError> {
        let expected = self
            .items()?
            .into_iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                ArtifactError::NotFound(format!("no item {name} in {}", self.path.display()))
            })?;
        let mut copied = None;
        self.walk(|n, entry| {
            if n != name {
                return Ok(true);
            }
            let mut hashing = Hashing::new(entry);
            io::copy(&mut hashing, &mut out)
                .map_err(|e| ArtifactError::Io(format!("copying {name}: {e}")))?;
            copied = Some(hashing.done(name.to_string()));
            Ok(false)
        })?;
        out.flush()
            .map_err(|e| ArtifactError::Io(format!("copying {name}: {e}")))?;
        let got = copied.ok_or_else(|| {
            ArtifactError::NotFound(format!("no item {name} in {}", self.path.display()))
        })?;
        if got.sha256 != expected.sha256 {
            return Err(ArtifactError::Corrupt(format!(
                "item {name} does not match the manifest (sha256 {} instead of {})",
                got.sha256, expected.sha256
            )));
        }
        Ok(got.size)
    }

    /// Re-hash every item against the manifest.
    pub fn verify(&mut self) -> Result<Vec<Mismatch>, ArtifactError> {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        let mut manifest_json = None;
        let mut broken: Option<(String, String)> = None;
        let mut current = String::new();
        let walked = self.walk(|name, entry| {
            current = name.to_string();
            if name == MANIFEST {
                let mut json = Vec::new();
                entry
                    .read_to_end(&mut json)
                    .map_err(|e| ArtifactError::Corrupt(e.to_string()))?;
                manifest_json = Some(json);
                return Ok(true);
            }
            if entry.header().entry_type().is_file() {
                let mut hashing = Hashing::new(entry);
                if let Err(e) = io::copy(&mut hashing, &mut io::sink()) {
                    broken = Some((name.to_string(), format!("unreadable: {e}")));
                    return Ok(false);
                }
                seen.insert(name.to_string(), hashing.done(String::new()).sha256);
            }
            Ok(true)
        });
        if let Err(e) = walked {
            // The stream broke (a flipped byte in compressed data): the
            // member being read is the damaged one.
            broken.get_or_insert((current.clone(), format!("unreadable: {e}")));
        }
        let expected: Vec<Item> = match manifest_json {
            Some(json) => parse_manifest(&json, &self.path)?,
            None => {
                let (name, why) = broken.unwrap_or((MANIFEST.into(), "missing".into()));
                return Ok(vec![Mismatch {
                    name,
                    expected: "readable".into(),
                    actual: why,
                }]);
            }
        };
        let mut out = Vec::new();
        if let Some((name, why)) = &broken {
            out.push(Mismatch {
                name: name.clone(),
                expected: "readable".into(),
                actual: why.clone(),
            });
        }
        for item in &expected {
            match seen.get(&item.name) {
                Some(actual) if *actual == item.sha256 => {}
                Some(actual) => out.push(Mismatch {
                    name: item.name.clone(),
                    expected: item.sha256.clone(),
                    actual: actual.clone(),
                }),
                None if broken.is_none() => out.push(Mismatch {
                    name: item.name.clone(),
                    expected: item.sha256.clone(),
                    actual: "missing".into(),
                }),
                None => {}
            }
        }
        self.items = Some(expected);
        Ok(out)
    }

    /// Write a tar stream of the members under `prefix` (with the prefix
    /// stripped) to `out`, checking each file's hash against the manifest
    /// as it goes. Returns the bytes of file data written.
    pub fn unpack(&mut self, prefix: &str, out: impl Write) -> Result<u64, ArtifactError> {
        let expected: BTreeMap<String, String> = self
            .items()?
            .into_iter()
            .map(|i| (i.name, i.sha256))
            .collect();
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        let mut bytes = 0u64;
        let strip = |name: &str| -> Option<String> {
            if name == prefix {
                return Some(".".into());
            }
            name.strip_prefix(prefix)?
                .strip_prefix('/')
                .map(String::from)
        };
        let mut matched = false;
        self.walk(|name, entry| {
            let Some(rel) = strip(name) else {
                return Ok(true);
            };
            matched = true;
            let mut header = entry.header().clone();
            let err = |e: io::Error| ArtifactError::Io(format!("unpacking {name}: {e}"));
            match header.entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let rel = if rel == "." {
                        Path::new(name)
                            .file_name()
                            .map_or(rel.clone(), |f| f.to_string_lossy().into_owned())
                    } else {
                        rel
                    };
                    let mut hashing = Hashing::new(entry);
                    builder
                        .append_data(&mut header, &rel, &mut hashing)
                        .map_err(err)?;
                    bytes += hashing.size;
                    let actual = hashing.done(String::new()).sha256;
                    if expected.get(name).is_some_and(|e| *e != actual) {
                        return Err(ArtifactError::Corrupt(format!(
                            "item {name} does not match the manifest (sha256 {actual})"
                        )));
                    }
                }
                tar::EntryType::Directory => {
                    builder
                        .append_data(&mut header, format!("{rel}/"), io::empty())
                        .map_err(err)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name()
                        .map_err(err)?
                        .map(|t| t.into_owned())
                        .unwrap_or_default();
                    builder
                        .append_link(&mut header, &rel, target)
                        .map_err(err)?;
                }
                _ => {}
            }
            Ok(true)
        })?;
        if !matched {
            return Err(ArtifactError::NotFound(format!(
                "no item under `{prefix}` in {}",
                self.path.display()
            )));
        }
        builder
            .into_inner()
            .map_err(|e| ArtifactError::Io(format!("unpacking {prefix}: {e}")))?;
        Ok(bytes)
    }
}

/// An artifact file in a directory, for listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    pub path: PathBuf,
    pub size: u64,
    pub modified: u64,
}

/// Write item `name` of `reader` to the plain file `file` in the open
/// directory `dir` (`path` in messages): a 0600 temporary file, checked
/// against the manifest's sha256, fsynced, then renamed into place, never
/// over an existing file. Returns the bytes written.
pub fn extract_in(
    reader: &std::sync::Mutex<Reader>,
    name: &str,
    dir: OwnedFd,
    file: &OsStr,
    path: &Path,
) -> Result<u64, ArtifactError> {
    if rustix::fs::statat(&dir, file, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok() {
        return Err(ArtifactError::InvalidName(format!(
            "{} already exists; extracting never replaces a file",
            path.display()
        )));
    }
    let tag = format!("{PARTIAL_TAG}{}-", std::process::id());
    let (out, tmp) =
        crate::sandbox::ops::create_temp_tagged(dir.as_fd(), file, &tag).map_err(|e| {
            ArtifactError::Io(format!(
                "cannot create a file beside {}: {e}",
                path.display()
            ))
        })?;
    let unlink = || {
        let _ = rustix::fs::unlinkat(&dir, &tmp, rustix::fs::AtFlags::empty());
    };
    let mut writer = BufWriter::new(out);
    let copied = reader
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .copy_item(name, &mut writer);
    let size = match copied {
        Ok(n) => n,
        Err(e) => {
            unlink();
            return Err(e);
        }
    };
    let synced = writer
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all());
    if let Err(e) = synced {
        unlink();
        return Err(io_err("writing", path)(e));
    }
    if let Err(e) =
        rustix::fs::renameat_with(&dir, &tmp, &dir, file, rustix::fs::RenameFlags::NOREPLACE)
    {
        unlink();
        return Err(if e == rustix::io::Errno::EXIST {
            ArtifactError::InvalidName(format!(
                "{} already exists; extracting never replaces a file",
                path.display()
            ))
        } else {
            io_err("renaming into", path)(e.into())
        });
    }
    crate::sandbox::ops::sync_dir(dir.as_fd());
    Ok(size)
}

/// [`list`] of the open directory `fd` (named `dir` in the results).
pub fn list_in(fd: &OwnedFd, dir: &Path) -> Result<Vec<Listed>, ArtifactError> {
    let mut out = Vec::new();
    let entries =
        crate::sandbox::ops::entries(fd).map_err(|e| io_err("cannot list", dir)(e.into()))?;
    for (name, kind) in entries {
        let text = name.to_string_lossy();
        let artifact = [".tar", ".tar.zst", ".tar.gz", ".tgz"]
            .iter()
            .any(|s| text.ends_with(s));
        if text.starts_with('.') || !artifact || kind != crate::sandbox::FileKind::File {
            continue;
        }
        let Ok(st) = rustix::fs::statat(fd, &name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        out.push(Listed {
            path: dir.join(&name),
            size: st.st_size as u64,
            modified: st.st_mtime.max(0) as u64,
        });
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then(b.path.cmp(&a.path)));
    Ok(out)
}
