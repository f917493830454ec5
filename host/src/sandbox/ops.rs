//! The single-path operations (stat, read, write, list, mkdir, rename,
//! remove, symlink), each on handles opened beneath a pinned root.

use super::{FileKind, FsError, Root, Stat, kind_word};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Most entries one `list` returns.
pub const MAX_LIST_ENTRIES: usize = 100_000;

/// A path below a pinned root.
pub struct At<'a> {
    pub root: &'a Root,
    /// Relative to the grant root as granted (may be empty: the root).
    pub rel: PathBuf,
}

impl<'a> At<'a> {
    pub fn new(root: &'a Root, rel: PathBuf) -> At<'a> {
        At { root, rel }
    }

    /// Relative to the pinned directory.
    fn full(&self) -> PathBuf {
        self.root.rel(&self.rel)
    }

    fn shown(&self) -> String {
        let full = self.full();
        if full.as_os_str().is_empty() {
            ".".into()
        } else {
            full.display().to_string()
        }
    }

    /// The parent directory (a handle) and the final name.
    fn split(&self, op: &str) -> Result<(OwnedFd, OsString), FsError> {
        let full = self.full();
        let Some(name) = full.file_name() else {
            return Err(FsError::Invalid(format!(
                "cannot {op} the grant root itself"
            )));
        };
        let parent = full.parent().unwrap_or(Path::new(""));
        let fd = open_beneath(self.root.fd(), parent, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| FsError::os(&parent_shown(parent), e))?;
        Ok((fd, name.to_os_string()))
    }
}

fn parent_shown(p: &Path) -> String {
    if p.as_os_str().is_empty() {
        ".".into()
    } else {
        p.display().to_string()
    }
}

/// Open `rel` beneath `dir`: no `..` above it, no absolute symlink, no
/// magic link; symlinks that stay beneath are followed.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let flags = flags | OFlags::CLOEXEC;
    for _ in 0..16 {
        match rustix::fs::openat2(
            dir,
            rel,
            flags,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            // A concurrent rename elsewhere on the system: try again.
            Err(Errno::AGAIN) => continue,
            Err(Errno::NOSYS) => return walk(dir, rel, flags),
            r => return r,
        }
    }
    Err(Errno::AGAIN)
}

/// The fallback for kernels without `openat2`: one component at a time,
/// refusing every symlink (stricter than `RESOLVE_BENEATH`).
pub fn walk(dir: BorrowedFd<'_>, path: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::fs::openat(
        dir,
        if path.is_absolute() { "/" } else { "." },
        dir_flags,
        Mode::empty(),
    )?;
    let names: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::ParentDir => Some(Err(Errno::XDEV)),
            _ => None,
        })
        .collect::<Result<_, _>>()?;
    let Some((last, parents)) = names.split_last() else {
        return rustix::fs::openat(&cur, ".", flags, Mode::empty());
    };
    for name in parents {
        cur = rustix::fs::openat(&cur, *name, dir_flags, Mode::empty())?;
    }
    rustix::fs::openat(&cur, *last, flags | OFlags::NOFOLLOW, Mode::empty())
}

/// Open a regular file for reading. Anything else (FIFO, socket, device,
/// directory) is refused before it is opened for I/O, so a FIFO cannot
/// block the caller and a device is never touched.
pub fn open_regular(dir: BorrowedFd<'_>, rel: &Path) -> Result<(std::fs::File, Stat), FsError> {
    let shown = parent_shown(rel);
    let path_fd = open_beneath(dir, rel, OFlags::PATH).map_err(|e| FsError::os(&shown, e))?;
    let st = rustix::fs::fstat(&path_fd).map_err(|e| FsError::os(&shown, e))?;
    if super::kind_of_mode(st.st_mode) != FileKind::File {
        return Err(FsError::Invalid(format!(
            "{shown} is {}; only regular files can be read",
            kind_word(st.st_mode)
        )));
    }
    let fd = reopen_for_reading(&path_fd, dir, rel).map_err(|e| FsError::os(&shown, e))?;
    let now = rustix::fs::fstat(&fd).map_err(|e| FsError::os(&shown, e))?;
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
        return Err(FsError::Denied(format!(
            "{shown} was replaced while it was being opened"
        )));
    }
    Ok((std::fs::File::from(fd), Stat::from_raw(&now)))
}

/// Reopen an `O_PATH` handle for reading through `/proc/self/fd` (the
/// same inode, whatever happened to its name since); without `/proc`,
/// open the name again beneath `dir` (the caller compares identities).
fn reopen_for_reading(
    path_fd: &OwnedFd,
    dir: BorrowedFd<'_>,
    rel: &Path,
) -> Result<OwnedFd, Errno> {
    use std::os::fd::AsRawFd;
    let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let reopened = match proc_fds() {
        Some(fds) => rustix::fs::openat(
            fds,
            path_fd.as_raw_fd().to_string().as_str(),
            flags,
            Mode::empty(),
        ),
        None => Err(Errno::NOENT),
    };
    match reopened {
        Err(Errno::NOENT) => open_beneath(dir, rel, flags | OFlags::NOFOLLOW),
        r => r,
    }
}

/// This process's `/proc/self/fd`, opened once: reopening a handle through
/// it looks up one name, where `/proc/self/fd/N` walks four, `self` a magic
/// link (per file of an export of many small files, that walk was a
/// tenth of the whole run's CPU time). `None` without `/proc`.
fn proc_fds() -> Option<BorrowedFd<'static>> {
    static FDS: std::sync::OnceLock<Option<OwnedFd>> = std::sync::OnceLock::new();
    FDS.get_or_init(|| {
        rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    })
    .as_ref()
    .map(|fd| fd.as_fd())
}

/// Metadata of `at`; with `follow` a final symlink that stays beneath the
/// root is followed.
pub fn stat(at: &At<'_>, follow: bool) -> Result<Option<Stat>, FsError> {
    let full = at.full();
    if follow {
        return match open_beneath(at.root.fd(), &full, OFlags::PATH) {
            Ok(fd) => Ok(Some(Stat::from_raw(
                &rustix::fs::fstat(&fd).map_err(|e| FsError::os(&at.shown(), e))?,
            ))),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(FsError::os(&at.shown(), e)),
        };
    }
    if full.as_os_str().is_empty() {
        let st = rustix::fs::fstat(at.root.fd()).map_err(|e| FsError::os(".", e))?;
        return Ok(Some(Stat::from_raw(&st)));
    }
    let (parent, name) = match at.split("stat") {
        Ok(p) => p,
        Err(FsError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    match rustix::fs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Stat::from_raw(&st))),
        Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
        Err(e) => Err(FsError::os(&at.shown(), e)),
    }
}

/// Where `at` really is, after every symlink (each of which must stay
/// beneath the root): the path the kernel gives its handle. With
/// `may_be_missing`, a path whose last part does not exist yet resolves to
/// its directory's real path and that last name. For exec's path holes:
/// the program is handed this path, not the plugin's.
pub fn resolve(at: &At<'_>, may_be_missing: bool) -> Result<PathBuf, FsError> {
    let full = at.full();
    match open_beneath(at.root.fd(), &full, OFlags::PATH) {
        Ok(fd) => real_path(&fd, &at.shown()),
        Err(Errno::NOENT) if may_be_missing => {
            let (dir, name) = at.split("resolve")?;
            Ok(real_path(&dir, &at.shown())?.join(name))
        }
        Err(e) => Err(FsError::os(&at.shown(), e)),
    }
}

fn real_path(fd: &OwnedFd, shown: &str) -> Result<PathBuf, FsError> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|e| FsError::Io(format!("{shown}: finding where it resolves: {e}")))
}

/// Read a whole regular file of at most `max` bytes.
pub fn read(at: &At<'_>, max: u64) -> Result<Vec<u8>, FsError> {
    let (file, st) = open_regular(at.root.fd(), &at.full())?;
    let too_big = |size: u64| {
        FsError::Invalid(format!(
            "{} is {size} bytes, larger than the {max} bytes asked for; move big files with fs.copy or archive",
            at.shown()
        ))
    };
    if st.size > max {
        return Err(too_big(st.size));
    }
    let mut data = Vec::with_capacity(st.size as usize);
    file.take(max.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(|e| FsError::Io(format!("reading {}: {e}", at.shown())))?;
    if data.len() as u64 > max {
        return Err(too_big(data.len() as u64));
    }
    Ok(data)
}

/// A new file named `.NAME.stackhost-RANDOM` in `dir`, created with
/// `O_EXCL | O_NOFOLLOW`, so nothing planted under that name is used.
pub fn create_temp(
    dir: BorrowedFd<'_>,
    name: &OsStr,
) -> Result<(std::fs::File, OsString), FsError> {
    create_temp_tagged(dir, name, "")
}

/// [`create_temp`], with `tag` in the name after `.stackhost-`
/// (`.NAME.stackhost-TAGRANDOM`).
pub fn create_temp_tagged(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    tag: &str,
) -> Result<(std::fs::File, OsString), FsError> {
    let stem: Vec<u8> = name.as_bytes().iter().copied().take(180).collect();
    for _ in 0..16 {
        let mut random = [0u8; 8];
        rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
            .map_err(|e| FsError::os("random temporary name", e))?;
        let mut tmp = b".".to_vec();
        tmp.extend_from_slice(&stem);
        tmp.extend_from_slice(format!(".stackhost-{tag}{}", hex::encode(random)).as_bytes());
        let tmp = OsString::from(OsStr::from_bytes(&tmp));
        match rustix::fs::openat(
            dir,
            &tmp,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        ) {
            Ok(fd) => return Ok((std::fs::File::from(fd), tmp)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(FsError::os("creating a temporary file", e)),
        }
    }
    Err(FsError::Io("no free temporary name after 16 tries".into()))
}

/// fsync a directory (best effort: a directory we may only search, not
/// read, cannot be opened for it).
pub fn sync_dir(dir: BorrowedFd<'_>) {
    if let Ok(fd) = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        let _ = rustix::fs::fsync(&fd);
    }
}

/// Permission bits a plugin may set: no set-uid, set-gid or sticky bit.
pub fn check_mode(mode: u32) -> Result<u32, FsError> {
    if mode & !0o777 != 0 {
        return Err(FsError::Denied(format!(
            "mode {mode:o} has set-uid, set-gid or sticky bits; only permission bits (0o777) may be set"
        )));
    }
    Ok(mode)
}

/// Replace the file at `at` with `data`: temporary file, fsync, rename
/// over the name (a symlink there is replaced, not followed), fsync the
/// directory. `mode` defaults to the old file's permission bits or 0o644;
/// an existing file keeps its owner. Data that ends before `len` bytes
/// (a lost connection) replaces nothing.
pub fn write(
    at: &At<'_>,
    data: &mut dyn Read,
    mode: Option<u32>,
    len: u64,
) -> Result<u64, FsError> {
    let mode = mode.map(check_mode).transpose()?;
    let (parent, name) = at.split("write")?;
    let old = rustix::fs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
    let old_file = old
        .as_ref()
        .filter(|st| super::kind_of_mode(st.st_mode) == FileKind::File);
    if let Some(st) = &old
        && super::kind_of_mode(st.st_mode) == FileKind::Directory
    {
        return Err(FsError::Invalid(format!("{} is a directory", at.shown())));
    }
    let mode = mode
        .or(old_file.map(|st| st.st_mode & 0o777))
        .unwrap_or(0o644);
    let (mut file, tmp) = create_temp(parent.as_fd(), &name)?;
    let result = (|| {
        let written = std::io::copy(&mut data.take(len), &mut file)?;
        if written != len {
            return Err(std::io::Error::other(format!(
                "the data ended after {written} of {len} bytes; nothing was replaced"
            )));
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))?;
        if let Some(st) = old_file
            && super::is_root()
        {
            rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            )?;
        }
        file.flush()?;
        rustix::fs::fsync(&file)?;
        rustix::fs::renameat(&parent, &tmp, &parent, &name)?;
        Ok::<u64, std::io::Error>(written)
    })();
    match result {
        Ok(n) => {
            sync_dir(parent.as_fd());
            Ok(n)
        }
        Err(e) => {
            let _ = rustix::fs::unlinkat(&parent, &tmp, AtFlags::empty());
            Err(FsError::Io(format!("writing {}: {e}", at.shown())))
        }
    }
}

/// Entries of a directory, sorted by name.
pub fn list(at: &At<'_>) -> Result<Vec<(OsString, FileKind)>, FsError> {
    let fd = open_beneath(at.root.fd(), &at.full(), OFlags::RDONLY | OFlags::DIRECTORY)
        .map_err(|e| FsError::os(&at.shown(), e))?;
    let mut out = entries(&fd).map_err(|e| FsError::os(&at.shown(), e))?;
    out.sort();
    Ok(out)
}

/// The entries of an open directory (not `.` and `..`), with their kinds.
pub fn entries(fd: &OwnedFd) -> Result<Vec<(OsString, FileKind)>, Errno> {
    let mut dir = rustix::fs::Dir::read_from(fd)?;
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        if out.len() >= MAX_LIST_ENTRIES {
            return Err(Errno::FBIG);
        }
        let name = OsString::from(OsStr::from_bytes(name));
        use rustix::fs::FileType as T;
        let kind = match entry.file_type() {
            T::RegularFile => FileKind::File,
            T::Directory => FileKind::Directory,
            T::Symlink => FileKind::Symlink,
            T::Unknown => match rustix::fs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => super::kind_of_mode(st.st_mode),
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e),
            },
            _ => FileKind::Other,
        };
        out.push((name, kind));
    }
    Ok(out)
}

/// Create a directory; with `recursive`, its missing parents too (each
/// step opened beneath the one before, never through a link leaving it).
pub fn mkdir(at: &At<'_>, recursive: bool) -> Result<(), FsError> {
    if !recursive {
        let (parent, name) = at.split("create")?;
        return rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755))
            .map_err(|e| FsError::os(&at.shown(), e));
    }
    mkdir_all(at.root.fd(), &at.full()).map(drop)
}

/// `mkdir -p` of `rel` beneath `dir`; returns the innermost directory.
pub fn mkdir_all(dir: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, FsError> {
    let shown = parent_shown(rel);
    let mut cur = rustix::fs::openat(
        dir,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::os(&shown, e))?;
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(FsError::os(&shown, e)),
        }
        cur = open_beneath(
            cur.as_fd(),
            Path::new(name),
            OFlags::PATH | OFlags::DIRECTORY,
        )
        .map_err(|e| FsError::os(&shown, e))?;
    }
    Ok(cur)
}

pub fn rename(from: &At<'_>, to: &At<'_>) -> Result<(), FsError> {
    let (p1, n1) = from.split("rename")?;
    let (p2, n2) = to.split("rename onto")?;
    rustix::fs::renameat(&p1, &n1, &p2, &n2).map_err(|e| FsError::os(&from.shown(), e))
}

/// Remove a file, a symlink (never what it points to) or an empty
/// directory; with `recursive` a whole tree, walked by handles.
pub fn remove(at: &At<'_>, recursive: bool) -> Result<(), FsError> {
    let (parent, name) = at.split("remove")?;
    let st = rustix::fs::statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| FsError::os(&at.shown(), e))?;
    let r = if super::kind_of_mode(st.st_mode) == FileKind::Directory {
        if recursive {
            remove_tree(parent.as_fd(), &name, 0)
        } else {
            rustix::fs::unlinkat(&parent, &name, AtFlags::REMOVEDIR)
        }
    } else {
        rustix::fs::unlinkat(&parent, &name, AtFlags::empty())
    };
    r.map_err(|e| FsError::os(&at.shown(), e))
}

/// Deepest tree `remove` and the tree copies walk.
pub const MAX_DEPTH: usize = 256;

fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr, depth: usize) -> Result<(), Errno> {
    if depth > MAX_DEPTH {
        return Err(Errno::NAMETOOLONG);
    }
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for (child, kind) in entries(&fd)? {
        if kind == FileKind::Directory {
            remove_tree(fd.as_fd(), &child, depth + 1)?;
        } else {
            rustix::fs::unlinkat(&fd, &child, AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)
}

/// Create a symlink at `at` holding `target` (the caller has checked the
/// target against the grant). An existing name is an error: nothing is
/// created through a link already there.
pub fn symlink(at: &At<'_>, target: &Path) -> Result<(), FsError> {
    let (parent, name) = at.split("link")?;
    rustix::fs::symlinkat(target, &parent, &name).map_err(|e| FsError::os(&at.shown(), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink as ln;

    fn root(dir: &Path) -> Root {
        Root::pin(dir).unwrap()
    }

    fn at<'a>(r: &'a Root, rel: &str) -> At<'a> {
        At {
            root: r,
            rel: PathBuf::from(rel),
        }
    }

    #[test]
    fn reads_inside_and_refuses_links_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "inside").unwrap();
        ln(outside.path().join("secret"), dir.path().join("abs")).unwrap();
        ln("../../../../../../../../etc/passwd", dir.path().join("rel")).unwrap();
        ln("f", dir.path().join("ok")).unwrap();
        let r = root(dir.path());
        assert_eq!(read(&at(&r, "f"), 100).unwrap(), b"inside");
        assert_eq!(read(&at(&r, "ok"), 100).unwrap(), b"inside");
        for bad in ["abs", "rel"] {
            let e = read(&at(&r, bad), 100).unwrap_err();
            assert!(matches!(e, FsError::Denied(_)), "{bad}: {e:?}");
        }
        assert!(matches!(read(&at(&r, "f"), 3), Err(FsError::Invalid(_))));
    }

    #[test]
    fn read_refuses_a_fifo_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            dir.path().join("p"),
            Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let r = root(dir.path());
        let e = read(&at(&r, "p"), 100).unwrap_err();
        assert!(
            matches!(e, FsError::Invalid(ref m) if m.contains("a FIFO")),
            "{e:?}"
        );
    }

    #[test]
    fn write_replaces_a_planted_symlink_instead_of_following_it() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let dir = tempfile::tempdir().unwrap();
        ln(&victim, dir.path().join("f")).unwrap();
        let r = root(dir.path());
        write(&at(&r, "f"), &mut &b"new"[..], None, 3).unwrap();
        let e = write(&at(&r, "f"), &mut &b"cut"[..], None, 10).unwrap_err();
        assert!(
            matches!(e, FsError::Io(ref m) if m.contains("after 3 of 10")),
            "{e:?}"
        );
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"new");
        assert!(
            !std::fs::symlink_metadata(dir.path().join("f"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let e = write(&at(&r, "x"), &mut &b""[..], Some(0o4755), 0).unwrap_err();
        assert!(matches!(e, FsError::Denied(_)), "{e:?}");
    }

    #[test]
    fn write_through_a_directory_link_out_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        ln(outside.path(), dir.path().join("d")).unwrap();
        let r = root(dir.path());
        let e = write(&at(&r, "d/new"), &mut &b"x"[..], None, 1).unwrap_err();
        assert!(matches!(e, FsError::Denied(_)), "{e:?}");
        assert!(!outside.path().join("new").exists());
    }

    #[test]
    fn remove_takes_the_link_not_its_target() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("keep")).unwrap();
        std::fs::write(outside.path().join("keep/f"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("t")).unwrap();
        ln(outside.path().join("keep"), dir.path().join("t/link")).unwrap();
        let r = root(dir.path());
        remove(&at(&r, "t"), true).unwrap();
        assert!(outside.path().join("keep/f").exists());
        assert!(!dir.path().join("t").exists());
    }

    #[test]
    fn symlink_refuses_an_existing_name() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        ln(outside.path(), dir.path().join("dirlink")).unwrap();
        let r = root(dir.path());
        assert!(symlink(&at(&r, "dirlink"), Path::new("x")).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn mkdir_recursive_does_not_follow_links_out() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        ln(outside.path(), dir.path().join("d")).unwrap();
        let r = root(dir.path());
        assert!(mkdir(&at(&r, "d/x/y"), true).is_err());
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        mkdir(&at(&r, "a/b/c"), true).unwrap();
        assert!(dir.path().join("a/b/c").is_dir());
    }
}
