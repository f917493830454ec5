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

pub mod handle;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The manifest's member name; no item may use it.
pub const MANIFEST: &str = "stackhost-manifest.json";
/// The manifest's format tag.
const FORMAT: &str = "stackhost-archive/1";

/// Bytes each zstd worker compresses at a time. zstd's own choice at level
/// 3 is 8 MiB (four windows), and each worker holds its job's input and
/// output: 2 MiB keeps an export's peak RSS near 54 MiB at 1 GB (85-98
/// MiB with zstd's default; 1 MiB: 45 MiB but 20% slower; 4 MiB: 66 MiB),
/// at a small cost in ratio at the jobs' seams (measured by the export
/// bench).
const JOB_SIZE: u32 = 2 << 20;

/// How an artifact is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One item, as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// An item whose bytes do not match the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub name: String,
    pub expected: String,
    pub actual: String,
}

/// The manifest as it is read back (its other fields are for people).
#[derive(Debug, Deserialize)]
struct Manifest {
    format: String,
    items: Vec<Item>,
}

/// The items of the manifest `json` of the artifact at `path`; a manifest
/// of another format (a later stackhost's) is refused, not misread.
fn parse_manifest(json: &[u8], path: &Path) -> Result<Vec<Item>, ArtifactError> {
    let m: Manifest = serde_json::from_slice(json).map_err(|e| {
        ArtifactError::Corrupt(format!(
            "the manifest of {} is unreadable: {e}",
            path.display()
        ))
    })?;
    if m.format != FORMAT {
        return Err(ArtifactError::Corrupt(format!(
            "{} is in format `{}`; this stackhost reads `{FORMAT}`",
            path.display(),
            m.format
        )));
    }
    Ok(m.items)
}

/// An item as the writer keeps it until the manifest is written: the
/// digest as its 32 bytes, its hex made only when the item is handed out
/// or written (an export of many small files holds one per file).
struct Entry {
    name: Box<str>,
    size: u64,
    sha256: [u8; 32],
}

impl Entry {
    fn item(&self) -> Item {
        Item {
            name: self.name.to_string(),
            size: self.size,
            sha256: hex::encode(self.sha256),
        }
    }
}

/// [`Manifest`] as it is written, borrowing the writer's entries.
#[derive(Serialize)]
struct ManifestOut<'a> {
    format: &'a str,
    created: u64,
    finished: u64,
    compression: Compression,
    items: EntriesOut<'a>,
}

/// The entries serialised as [`Item`]s, each digest's hex on the stack.
struct EntriesOut<'a>(&'a [Entry]);

impl Serialize for EntriesOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        #[derive(Serialize)]
        struct ItemOut<'a> {
            name: &'a str,
            size: u64,
            sha256: &'a str,
        }
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            let mut hex = [0u8; 64];
            hex::encode_to_slice(e.sha256, &mut hex).expect("64 hex digits for 32 bytes");
            seq.serialize_element(&ItemOut {
                name: &e.name,
                size: e.size,
                sha256: std::str::from_utf8(&hex).expect("hex is ASCII"),
            })?;
        }
        seq.end()
    }
}

/// Counts the bytes written through it.
struct Counting<W>(W, u64);

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

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

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An item name: relative, `/`-separated, no `.`, `..` or empty parts.
pub fn check_name(name: &str) -> Result<(), ArtifactError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        || name == MANIFEST;
    if bad {
        return Err(ArtifactError::InvalidName(format!(
            "`{name}` is not a valid item name (relative, no `.`/`..`/empty parts, not `{MANIFEST}`)"
        )));
    }
    Ok(())
}

/// The compressed byte sink.
enum Sink {
    Plain(BufWriter<WriteBehind>),
    Gzip(flate2::write::GzEncoder<BufWriter<WriteBehind>>),
    Zstd(zstd::stream::write::Encoder<'static, BufWriter<WriteBehind>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
            Sink::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
            Sink::Zstd(w) => w.flush(),
        }
    }
}

impl Sink {
    fn finish(self) -> io::Result<File> {
        let buffered = match self {
            Sink::Plain(w) => w,
            Sink::Gzip(w) => w.finish()?,
            Sink::Zstd(w) => w.finish()?,
        };
        Ok(buffered.into_inner().map_err(|e| e.into_error())?.file)
    }
}

/// Bytes written between two writeback starts.
const WRITE_BEHIND: u64 = 8 << 20;

/// The artifact file, asking the kernel to start writing each 8 MiB to
/// disk as soon as it is written (`sync_file_range(SYNC_FILE_RANGE_WRITE)`,
/// which does not wait). `finish` must fsync before the rename; without
/// this the whole artifact would still be dirty then, and the fsync of a
/// 1 GB export waited 0.37 s with nothing else left to do. Dirty pages
/// also stay few, so an export does not push other work's pages out.
struct WriteBehind {
    file: File,
    written: u64,
    started: u64,
}

impl WriteBehind {
    fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            started: 0,
        }
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.started >= WRITE_BEHIND {
            use std::os::fd::AsRawFd;
            // SAFETY: a plain syscall on a descriptor this struct owns; no
            // memory is passed. Its failure (a filesystem without it) only
            // leaves the writeback to the final fsync.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.started as libc::off64_t,
                    (self.written - self.started) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.started = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Counts and hashes what passes through.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    size: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }
}

impl<R> Hashing<R> {
    fn new(inner: R) -> Hashing<R> {
        Hashing {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }
    fn done(self, name: String) -> Item {
        Item {
            name,
            size: self.size,
            sha256: hex::encode(self.hash.finalize()),
        }
    }
}

/// A progress line on stderr (only on a terminal): bytes and rate.
pub struct Progress {
    label: String,
    bytes: u64,
    start: Instant,
    last: Instant,
    on: bool,
}

impl Progress {
    pub fn new(label: String) -> Progress {
        use std::io::IsTerminal;
        let now = Instant::now();
        Progress {
            label,
            bytes: 0,
            start: now,
            last: now,
            on: std::io::stderr().is_terminal(),
        }
    }

    fn add(&mut self, n: u64) {
        self.bytes += n;
        if self.on && self.last.elapsed() >= Duration::from_millis(500) {
            self.last = Instant::now();
            eprint!("\r\x1b[K  {}", self.line());
        }
    }

    fn line(&self) -> String {
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let mib = self.bytes as f64 / (1 << 20) as f64;
        format!(
            "{}: {mib:.1} MiB in {secs:.1}s, {:.1} MiB/s",
            self.label,
            mib / secs
        )
    }

    fn clear(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

/// An artifact being written.
pub struct Writer {
    /// The final name, for messages.
    path: PathBuf,
    /// The directory it lands in, held open: the temporary file is made,
    /// renamed and removed through this handle, never by path.
    dir: OwnedFd,
    name: OsString,
    tmp: OsString,
    compression: Compression,
    builder: Option<tar::Builder<Sink>>,
    items: Vec<Entry>,
    names: HashSet<String>,
    created: u64,
    /// Set when an add failed midway: the artifact is incomplete and
    /// `finish` refuses it.
    poisoned: Option<String>,
    progress: Progress,
    /// Member data passes through this buffer (allocated on first use).
    buf: Vec<u8>,
}

impl Writer {
    /// Start writing an artifact that will appear at `path` on `finish`.
    /// `threads` is the number of zstd worker threads.
    pub fn create(
        path: &Path,
        compression: Compression,
        threads: u32,
    ) -> Result<Writer, ArtifactError> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .ok_or_else(|| {
                ArtifactError::InvalidName(format!("{} has no directory", path.display()))
            })?;
        let name = path.file_name().ok_or_else(|| {
            ArtifactError::InvalidName(format!("{} has no file name", path.display()))
        })?;
        let fd = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| io_err("cannot open", dir)(e.into()))?;
        Writer::create_in(fd, name, path, compression, threads)
    }

    /// Start writing an artifact named `name` in the open directory `dir`
    /// (`path` is its full name, for messages). The temporary file is
    /// created with `O_EXCL | O_NOFOLLOW` under a random name, so nothing
    /// planted in the directory is written through.
    pub fn create_in(
        dir: OwnedFd,
        name: &OsStr,
        path: &Path,
        compression: Compression,
        threads: u32,
    ) -> Result<Writer, ArtifactError> {
        let file_name = name.to_string_lossy().into_owned();
        if rustix::fs::statat(&dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & 0o170000 == 0o040000)
        {
            return Err(ArtifactError::InvalidName(format!(
                "{} is a directory; give a file name",
                path.display()
            )));
        }
        // The writer's pid is in the name, so a file left by a killed
        // writer can be told from one being written (see
        // [`remove_stale_partials`]).
        let tag = format!("{PARTIAL_TAG}{}-", std::process::id());
        let (file, tmp_name) = crate::sandbox::ops::create_temp_tagged(dir.as_fd(), name, &tag)
            .map_err(|e| {
                ArtifactError::Io(format!(
                    "cannot create a file beside {}: {e}",
                    path.display()
                ))
            })?;
        let tmp = path.with_file_name(&tmp_name);
        let buffered = BufWriter::with_capacity(1 << 20, WriteBehind::new(file));
        let sink = match compression {
            Compression::None => Sink::Plain(buffered),
            Compression::Gzip => Sink::Gzip(flate2::write::GzEncoder::new(
                buffered,
                flate2::Compression::default(),
            )),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(buffered, 3)
                    .map_err(io_err("zstd for", &tmp))?;
                enc.include_checksum(true)
                    .map_err(io_err("zstd for", &tmp))?;
                if threads > 1 {
                    enc.multithread(threads)
                        .map_err(io_err("zstd threads for", &tmp))?;
                    enc.set_parameter(zstd::stream::raw::CParameter::JobSize(JOB_SIZE))
                        .map_err(io_err("zstd job size for", &tmp))?;
                }
                Sink::Zstd(enc)
            }
        };
        let mut builder = tar::Builder::new(sink);
        builder.mode(tar::HeaderMode::Complete);
        builder.follow_symlinks(false);
        Ok(Writer {
            path: path.to_path_buf(),
            dir,
            name: name.to_os_string(),
            tmp: tmp_name,
            compression,
            builder: Some(builder),
            items: Vec::new(),
            names: HashSet::new(),
            created: now(),
            poisoned: None,
            progress: Progress::new(file_name),
            buf: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Mark the artifact incomplete (a node's side of an add failed after
    /// bytes went in): `finish` will refuse it.
    pub fn poison(&mut self, why: &str) {
        self.poisoned.get_or_insert_with(|| why.to_string());
    }

    fn builder(&mut self) -> Result<&mut tar::Builder<Sink>, ArtifactError> {
        if let Some(why) = &self.poisoned {
            return Err(ArtifactError::Corrupt(format!(
                "an earlier add to {} failed ({why}); the artifact is incomplete",
                self.path.display()
            )));
        }
        Ok(self.builder.as_mut().expect("builder lives until finish"))
    }

    fn claim(&mut self, name: &str) -> Result<(), ArtifactError> {
        check_name(name)?;
        if !self.names.insert(name.to_string()) {
            return Err(ArtifactError::InvalidName(format!(
                "item `{name}` was already added"
            )));
        }
        Ok(())
    }

    /// Append a regular member (`header` carries its size) read from
    /// `data`, hashing the bytes as they pass, and record it for the
    /// manifest (the last of `self.items`). `err` words a failure to read
    /// or write.
    fn append_hashed(
        &mut self,
        header: &mut tar::Header,
        name: &str,
        data: &mut dyn Read,
        err: impl Fn(io::Error) -> ArtifactError,
    ) -> Result<(), ArtifactError> {
        let size = header.entry_size().map_err(&err)?;
        let mut hash = Sha256::new();
        let mut buf = std::mem::take(&mut self.buf);
        let appended = crate::sandbox::tree::append_member(
            self.builder()?,
            header,
            Path::new(name),
            data,
            &mut buf,
            &mut |piece| hash.update(piece),
        );
        self.buf = buf;
        appended.map_err(err)?;
        self.items.push(Entry {
            name: name.into(),
            size,
            sha256: hash.finalize().into(),
        });
        Ok(())
    }

    /// Run `f`; if it fails after touching the tar stream, poison the writer.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Writer) -> Result<T, ArtifactError>,
    ) -> Result<T, ArtifactError> {
        let r = f(self);
        if let Err(e) = &r
            && !matches!(e, ArtifactError::InvalidName(_))
        {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// Add an item of known `size` read from `data`.
    pub fn add_reader(
        &mut self,
        name: &str,
        size: u64,
        data: impl Read,
    ) -> Result<Item, ArtifactError> {
        self.claim(name)?;
        self.guarded(|w| {
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o644);
            header.set_mtime(now());
            header.set_entry_type(tar::EntryType::Regular);
            w.append_hashed(&mut header, name, &mut data.take(size), |e| {
                ArtifactError::Io(format!("adding {name}: {e}"))
            })?;
            w.progress.add(size);
            Ok(w.items.last().expect("just added").item())
        })
    }

    /// Add an item whose size is not known up front: spooled to a
    /// temporary file beside the artifact first (constant memory), then
    /// added. Nothing is added if reading `data` fails.
    pub fn add_spooled(&mut self, name: &str, mut data: impl Read) -> Result<Item, ArtifactError> {
        check_name(name)?;
        let dir = self.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        // An unnamed file in the artifact's directory (through its handle).
        let mut spool = match rustix::fs::openat(
            &self.dir,
            ".",
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => File::from(fd),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                tempfile::tempfile_in(&dir).map_err(io_err("cannot spool in", &dir))?
            }
            Err(e) => return Err(io_err("cannot spool in", &dir)(e.into())),
        };
        let size = io::copy(&mut data, &mut spool)
            .map_err(|e| ArtifactError::Io(format!("reading {name}: {e}")))?;
        use std::io::Seek;
        spool
            .seek(io::SeekFrom::Start(0))
            .map_err(io_err("rewinding the spool in", &dir))?;
        self.add_reader(name, size, BufReader::new(spool))
    }

    /// Add every member of the tar stream `data` (as made by `tar -c` on a
    /// node) under `prefix`: regular files become items; directories and
    /// symlinks are kept; other kinds are skipped and counted.
    pub fn add_tar(
        &mut self,
        prefix: &str,
        data: impl Read,
    ) -> Result<(Vec<Item>, usize), ArtifactError> {
        self.claim(prefix)?;
        self.guarded(|w| {
            let mut archive = tar::Archive::new(data);
            // Kept compact until the end (see [`Entry`]).
            let first = w.items.len();
            let mut skipped = 0;
            let entries = archive.entries().map_err(|e| {
                ArtifactError::Io(format!("reading the tar stream for {prefix}: {e}"))
            })?;
            for entry in entries {
                let mut entry = entry.map_err(|e| {
                    ArtifactError::Io(format!("reading the tar stream for {prefix}: {e}"))
                })?;
                let rel = entry
                    .path()
                    .map_err(|e| ArtifactError::Io(format!("a member of {prefix}: {e}")))?
                    .to_string_lossy()
                    .trim_start_matches("./")
                    .trim_end_matches('/')
                    .to_string();
                let name = if rel.is_empty() || rel == "." {
                    prefix.to_string()
                } else {
                    format!("{prefix}/{rel}")
                };
                if rel.split('/').any(|p| p == "..") {
                    return Err(ArtifactError::Corrupt(format!(
                        "member `{rel}` of {prefix} escapes with `..`"
                    )));
                }
                let mut header = entry.header().clone();
                let kind = header.entry_type();
                let err = |e: io::Error| ArtifactError::Io(format!("adding {name}: {e}"));
                match kind {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        w.append_hashed(&mut header, &name, &mut entry, err)?;
                        w.progress.add(w.items.last().map_or(0, |e| e.size));
                    }
                    tar::EntryType::Directory => {
                        w.builder()?
                            .append_data(&mut header, format!("{name}/"), io::empty())
                            .map_err(err)?;
                    }
                    tar::EntryType::Symlink => {
                        let target = entry
                            .link_name()
                            .map_err(err)?
                            .map(|t| t.into_owned())
                            .unwrap_or_default();
                        w.builder()?
                            .append_link(&mut header, &name, target)
                            .map_err(err)?;
                    }
                    _ => skipped += 1,
                }
            }
            Ok((w.items[first..].iter().map(Entry::item).collect(), skipped))
        })
    }

    /// Append the manifest, finish compression, fsync, rename to the final
    /// name and fsync the directory. Returns every item.
    pub fn finish(mut self) -> Result<Vec<Item>, ArtifactError> {
        // An incomplete artifact is refused here.
        self.builder()?;
        // Written from the entries in place: a copy of them would double
        // what an export of many small files holds at its end.
        let manifest = ManifestOut {
            format: FORMAT,
            created: self.created,
            finished: now(),
            compression: self.compression,
            items: EntriesOut(&self.items),
        };
        // Serialised twice, to learn its size for the header and then into
        // the stream, rather than held whole: it grows with the number of
        // items.
        let mut size = Counting(io::sink(), 0);
        serde_json::to_writer_pretty(&mut size, &manifest).expect("manifest serialises");
        let tmp = self.path.with_file_name(&self.tmp);
        let mut header = tar::Header::new_gnu();
        header.set_size(size.1);
        header.set_mode(0o644);
        header.set_mtime(now());
        header.set_entry_type(tar::EntryType::Regular);
        {
            let builder = self.builder.as_mut().expect("builder lives until finish");
            // The header alone: an empty reader writes no data and no padding.
            builder
                .append_data(&mut header, MANIFEST, io::empty())
                .map_err(io_err("writing the manifest of", &tmp))?;
            // serde_json writes token by token: buffered, so that zstd
            // (which takes a lock per call) sees 64 KiB at a time.
            let mut out = Counting(BufWriter::with_capacity(64 << 10, builder.get_mut()), 0);
            serde_json::to_writer_pretty(&mut out, &manifest)
                .map_err(|e| io_err("writing the manifest of", &tmp)(e.into()))?;
            if out.1 != size.1 {
                return Err(ArtifactError::Io(format!(
                    "the manifest of {} came out {} bytes long, not {}",
                    tmp.display(),
                    out.1,
                    size.1
                )));
            }
            let pad = (512 - size.1 % 512) % 512;
            out.write_all(&[0u8; 512][..pad as usize])
                .and_then(|()| out.flush())
                .map_err(io_err("writing the manifest of", &tmp))?;
        }
        let builder = self.builder.take().expect("not finished twice");
        let sink = builder.into_inner().map_err(io_err("finishing", &tmp))?;
        let file = sink.finish().map_err(io_err("compressing", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(file);
        rustix::fs::renameat(&self.dir, &self.tmp, &self.dir, &self.name)
            .map_err(|e| io_err("renaming into", &self.path)(e.into()))?;
        crate::sandbox::ops::sync_dir(self.dir.as_fd());
        self.progress.clear();
        Ok(self.items.iter().map(Entry::item).collect())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.builder.is_some() {
            // Not finished: the partial file must not outlive the writer.
            self.builder = None;
            let _ = rustix::fs::unlinkat(&self.dir, &self.tmp, rustix::fs::AtFlags::empty());
            self.progress.clear();
        }
    }
}

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
    pub fn open(path: &Path) -> Result<Reader, ArtifactError> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        let name = path.file_name().unwrap_or_default();
        let dir = rustix::fs::open(
            dir,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| {
            ArtifactError::NotFound(format!(
                "no artifact at {}: {}",
                path.display(),
                io::Error::from(e)
            ))
        })?;
        Reader::open_in(dir.as_fd(), Path::new(name), path)
    }

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

/// Finished artifacts (`*.tar`, `*.tar.zst`, `*.tar.gz`, `*.tgz`) in `dir`,
/// newest first; `.partial` files are left out.
pub fn list(dir: &Path) -> Result<Vec<Listed>, ArtifactError> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| io_err("cannot list", dir)(e.into()))?;
    list_in(&fd, dir)
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

/// What an unfinished artifact's name holds after `.stackhost-`, before
/// its writer's pid.
const PARTIAL_TAG: &str = "partial-";

/// Remove the unfinished artifacts in the open directory `fd` whose
/// writer process is gone from this machine (killed with -9, or the
/// machine restarted mid-export): `(file name, pid)` of each removed. A
/// file whose writer is alive is being written and is left alone.
pub fn remove_stale_partials(fd: &OwnedFd) -> Vec<(String, u32)> {
    let Ok(entries) = crate::sandbox::ops::entries(fd) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for (name, kind) in entries {
        let text = name.to_string_lossy().into_owned();
        let Some(rest) = text
            .strip_prefix('.')
            .and_then(|t| t.split_once(&format!(".stackhost-{PARTIAL_TAG}")))
            .map(|(_, rest)| rest)
        else {
            continue;
        };
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(p, _)| p.parse::<u32>().ok())
        else {
            continue;
        };
        if kind != crate::sandbox::FileKind::File || crate::process::alive(pid) {
            continue;
        }
        if rustix::fs::unlinkat(fd, &name, rustix::fs::AtFlags::empty()).is_ok() {
            removed.push((text, pid));
        }
    }
    removed
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let w = Writer::create(&dir.path().join("e.tar.zst"), Compression::Zstd, 1).unwrap();
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
        let mut w = Writer::create(&path, Compression::None, 1).unwrap();
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
        let mut r = Reader::open(&path).unwrap();
        assert!(r.verify().unwrap().is_empty());
    }

    #[test]
    fn round_trip_verify_and_unpack() {
        for compression in [Compression::Zstd, Compression::Gzip, Compression::None] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("a.tar.zst");
            let mut w = Writer::create(&path, compression, 2).unwrap();
            w.add_reader("meta.json", 2, &b"{}"[..]).unwrap();
            let (items, skipped) = w
                .add_tar("tree", &node_tar(&[("x", b"hello"), ("d/y", b"world")])[..])
                .unwrap();
            assert_eq!((items.len(), skipped), (2, 0));
            w.add_spooled("dump", &b"spooled bytes"[..]).unwrap();
            assert!(!path.exists(), "nothing under the final name before finish");
            let all = w.finish().unwrap();
            assert_eq!(all.len(), 4);
            let mut r = Reader::open(&path).unwrap();
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
        let mut w = Writer::create(&path, Compression::Zstd, 1).unwrap();
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
        let mut w = Writer::create(&path, Compression::Zstd, 1).unwrap();
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
        let mut w = Writer::create(&path, Compression::Zstd, 2).unwrap();
        let item = w.add_reader(&long, big.len() as u64, &big[..]).unwrap();
        assert_eq!(item.sha256, hex::encode(Sha256::digest(&big)));
        let (items, _) = w.add_tar("t", &node_tar(&[("m", &mid)])[..]).unwrap();
        assert_eq!(items[0].sha256, hex::encode(Sha256::digest(&mid)));
        w.finish().unwrap();
        let mut r = Reader::open(&path).unwrap();
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
        let mut w = Writer::create(&path, Compression::Zstd, 1).unwrap();
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
        let e = Reader::open(&path).unwrap().items().unwrap_err();
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
        let mut w = Writer::create(&path, Compression::None, 1).unwrap();
        w.add_reader("first", 5, &b"aaaaa"[..]).unwrap();
        w.add_reader("second", 5, &b"bbbbb"[..]).unwrap();
        w.finish().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(5).position(|w| w == b"bbbbb").unwrap();
        bytes[at] = b'c';
        std::fs::write(&path, bytes).unwrap();
        let bad = Reader::open(&path).unwrap().verify().unwrap();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].name, "second");
    }
}
