//! Writing an artifact: items streamed in (tar members hashed on the way
//! through a multi-threaded zstd), to a hidden temporary file written
//! behind as it grows, fsynced and renamed at the end; and the removal of
//! unfinished ones left by writers that died.

use super::format::*;
use super::{ArtifactError, io_err};
use super::{Compression, Item, MANIFEST, check_name};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes each zstd worker compresses at a time. zstd's own choice at level
/// 3 is 8 MiB (four windows), and each worker holds its job's input and
/// output: 2 MiB keeps an export's peak RSS near 54 MiB at 1 GB (85-98
/// MiB with zstd's default; 1 MiB: 45 MiB but 20% slower; 4 MiB: 66 MiB),
/// at a small cost in ratio at the jobs' seams (measured by the export
/// bench).
const JOB_SIZE: u32 = 2 << 20;

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
            // The artifact's name comes from the plugin.
            label: crate::text::escape_line(&label).into_owned(),
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

    pub(super) fn line(&self) -> String {
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
    pub(super) tmp: OsString,
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
            created: crate::time::now_secs(),
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
        let mut r = f(self);
        if let Err(ArtifactError::Io(m)) = &mut r
            && m.contains("(os error 28)")
        {
            m.push_str(&self.disk_full());
        }
        if let Err(e) = &r
            && !matches!(e, ArtifactError::InvalidName(_))
        {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// What an operator needs when the disk fills: where, how much is
    /// free, and that nothing partial stays.
    fn disk_full(&self) -> String {
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        let free = rustix::fs::fstatvfs(&self.dir)
            .map(|v| v.f_bavail.saturating_mul(v.f_frsize))
            .ok();
        let free = free.map_or_else(String::new, |b| {
            format!(" ({:.1} MiB free there)", b as f64 / f64::from(1 << 20))
        });
        format!(
            ": the filesystem holding {} is full{free}; {} was not written and the partial \
             artifact is removed (make room there, or write the artifact elsewhere)",
            dir.display(),
            self.path.display()
        )
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
            header.set_mtime(crate::time::now_secs());
            header.set_entry_type(tar::EntryType::Regular);
            w.append_hashed(&mut header, name, &mut data.take(size), |e| {
                ArtifactError::Io(format!("adding {name}: {e}"))
            })?;
            w.progress.add(size);
            Ok(w.items.last().expect("just added").item())
        })
    }

    /// An unnamed temporary file in the artifact's directory, made
    /// through the directory's handle (never by its path, which may have
    /// changed since the artifact was begun): `O_TMPFILE`, or where the
    /// filesystem has none a private file unlinked at once. For an item
    /// whose size is not known up front, filled first and then added
    /// with [`Writer::add_reader`], so a failed fill adds nothing.
    pub fn spool_file(&self) -> Result<File, ArtifactError> {
        let fail = |e: io::Error| {
            ArtifactError::Io(format!("cannot spool beside {}: {e}", self.path.display()))
        };
        match rustix::fs::openat(
            &self.dir,
            ".",
            rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => Ok(File::from(fd)),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::ISDIR) => {
                let (file, name) =
                    crate::sandbox::ops::create_temp_tagged(self.dir.as_fd(), &self.name, "spool-")
                        .map_err(|e| fail(io::Error::other(e.to_string())))?;
                rustix::fs::unlinkat(&self.dir, &name, rustix::fs::AtFlags::empty())
                    .map_err(|e| fail(e.into()))?;
                Ok(file)
            }
            Err(e) => Err(fail(e.into())),
        }
    }

    /// Add the first `size` bytes of `spool` (a [`Writer::spool_file`]
    /// that was filled) as item `name`.
    pub fn add_spool(
        &mut self,
        name: &str,
        mut spool: File,
        size: u64,
    ) -> Result<Item, ArtifactError> {
        use std::io::Seek;
        spool
            .seek(io::SeekFrom::Start(0))
            .map_err(|e| ArtifactError::Io(format!("rewinding the spool of {name}: {e}")))?;
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
    pub fn finish(self) -> Result<Vec<Item>, ArtifactError> {
        let full = self.disk_full();
        self.finish_inner().map_err(|e| match e {
            ArtifactError::Io(m) if m.contains("(os error 28)") => ArtifactError::Io(m + &full),
            e => e,
        })
    }

    fn finish_inner(mut self) -> Result<Vec<Item>, ArtifactError> {
        // An incomplete artifact is refused here.
        self.builder()?;
        // Written from the entries in place: a copy of them would double
        // what an export of many small files holds at its end.
        let manifest = ManifestOut {
            format: FORMAT,
            created: self.created,
            finished: crate::time::now_secs(),
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
        header.set_mtime(crate::time::now_secs());
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
