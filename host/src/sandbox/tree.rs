//! Whole trees: copy within a node, pack into a tar stream, unpack a tar
//! stream. Sources are walked by handles without following links;
//! destinations are created entry by entry through handles, files land by
//! `O_EXCL` temporary and rename (a planted link is replaced, never
//! written through), a symlink is created only when [`LinkPolicy`] allows
//! its target, and no set-uid, set-gid or world-writable entry is made.

use super::ops::{At, MAX_DEPTH, create_temp, entries, mkdir_all, open_beneath, open_regular};
use super::path::LinkPolicy;
use super::{FileKind, FsError, Stat, is_root, kind_of_mode, kind_word};
use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Permission bits the sandbox gives what it creates from a source or an
/// artifact: no set-uid, set-gid or sticky bit, and nothing writable by
/// every user.
fn safe_mode(mode: u32) -> u32 {
    mode & 0o775
}

fn shown(rel: &Path) -> String {
    if rel.as_os_str().is_empty() {
        ".".into()
    } else {
        rel.display().to_string()
    }
}

fn keep_owner(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<(), Errno> {
    if is_root() {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )?;
    }
    Ok(())
}

/// Write `data` into a new file that replaces `name` in `dir`.
fn land_file(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    data: &mut dyn Read,
    mode: u32,
    owner: (u32, u32),
    what: &str,
    expect: Option<u64>,
) -> Result<u64, FsError> {
    if let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        && kind_of_mode(st.st_mode) == FileKind::Directory
    {
        return Err(FsError::Invalid(format!(
            "{what}: a directory is in the way"
        )));
    }
    let (mut file, tmp) = create_temp(dir, name)?;
    let result = (|| {
        let n = std::io::copy(data, &mut file)?;
        if let Some(size) = expect.filter(|size| *size != n) {
            return Err(std::io::Error::other(format!(
                "the stream ended after {n} of {size} bytes; nothing was replaced"
            )));
        }
        rustix::fs::fchmod(&file, Mode::from_raw_mode(safe_mode(mode)))?;
        keep_owner(file.as_fd(), owner.0, owner.1)?;
        file.flush()?;
        rustix::fs::renameat(dir, &tmp, dir, name)?;
        Ok::<u64, std::io::Error>(n)
    })();
    result.map_err(|e| {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
        FsError::Io(format!("{what}: {e}"))
    })
}

/// Create (or replace) the symlink `name` in `dir`, through a temporary
/// link and a rename.
fn land_link(dir: BorrowedFd<'_>, name: &OsStr, target: &Path, what: &str) -> Result<(), FsError> {
    let mut random = [0u8; 8];
    rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty())
        .map_err(|e| FsError::os(what, e))?;
    let mut tmp = b".".to_vec();
    tmp.extend(name.as_bytes().iter().take(180));
    tmp.extend_from_slice(format!(".stackhost-{}", hex::encode(random)).as_bytes());
    let tmp = OsString::from(OsStr::from_bytes(&tmp));
    rustix::fs::symlinkat(target, dir, &tmp).map_err(|e| FsError::os(what, e))?;
    rustix::fs::renameat(dir, &tmp, dir, name).map_err(|e| {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
        FsError::os(what, e)
    })
}

/// Make directory `name` in `dir` or take the one there (never a link
/// standing in its place); a directory it creates gets `mode` and
/// `owner`, an existing one is left as it is.
fn land_dir(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    mode: u32,
    owner: Option<(u32, u32)>,
    what: &str,
) -> Result<OwnedFd, FsError> {
    let created = match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(FsError::os(what, e)),
    };
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        let link = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| kind_of_mode(st.st_mode) == FileKind::Symlink);
        match e {
            _ if link => FsError::Denied(format!(
                "{what} is a symlink, and nothing is written through a symlink"
            )),
            Errno::NOTDIR => FsError::Invalid(format!("{what} exists and is not a directory")),
            e => FsError::os(what, e),
        }
    })?;
    if created {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(safe_mode(mode)))
            .map_err(|e| FsError::os(what, e))?;
        if let Some((uid, gid)) = owner {
            keep_owner(fd.as_fd(), uid, gid).map_err(|e| FsError::os(what, e))?;
        }
    }
    Ok(fd)
}

/// Copy a file or tree from `from` to `to` (on the same node). Returns
/// the bytes of file data copied.
pub fn copy(from: &At<'_>, to: &At<'_>, links: &LinkPolicy) -> Result<u64, FsError> {
    let src_rel = from.root.rel(&from.rel);
    let probe = open_beneath(from.root.fd(), &src_rel, OFlags::PATH)
        .map_err(|e| FsError::os(&shown(&src_rel), e))?;
    let st = rustix::fs::fstat(&probe).map_err(|e| FsError::os(&shown(&src_rel), e))?;
    let dst_full = to.root.rel(&to.rel);
    let Some(dst_name) = dst_full.file_name().map(OsStr::to_os_string) else {
        return Err(FsError::Invalid(
            "cannot copy onto the grant root itself".into(),
        ));
    };
    let dst_parent_rel = dst_full.parent().unwrap_or(Path::new(""));
    let dst_parent = open_beneath(
        to.root.fd(),
        dst_parent_rel,
        OFlags::PATH | OFlags::DIRECTORY,
    )
    .map_err(|e| FsError::os(&shown(dst_parent_rel), e))?;
    match kind_of_mode(st.st_mode) {
        FileKind::File => {
            let (mut file, st) = open_regular(from.root.fd(), &src_rel)?;
            land_file(
                dst_parent.as_fd(),
                &dst_name,
                &mut file,
                st.mode,
                (st.uid, st.gid),
                &shown(&dst_full),
                None,
            )
        }
        FileKind::Directory => {
            let src = open_beneath(from.root.fd(), &src_rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| FsError::os(&shown(&src_rel), e))?;
            let mut walk = CopyWalk { links, total: 0 };
            walk.dir(
                &src,
                &Stat::from_raw(&st),
                dst_parent.as_fd(),
                &dst_name,
                to.rel.clone(),
                0,
            )?;
            Ok(walk.total)
        }
        _ => Err(FsError::Invalid(format!(
            "{} is {}; copy takes files, directories and symlinks",
            shown(&src_rel),
            kind_word(st.st_mode)
        ))),
    }
}

struct CopyWalk<'a> {
    links: &'a LinkPolicy,
    total: u64,
}

impl CopyWalk<'_> {
    /// Copy the open directory `src` to `name` in `dst_parent`; `rel` is
    /// that destination relative to its grant root (for link checks).
    // Long because it is a directory walk copying each kind of entry beneath
    // handles in one loop.
    fn dir(
        &mut self,
        src: &OwnedFd,
        st: &Stat,
        dst_parent: BorrowedFd<'_>,
        name: &OsStr,
        rel: PathBuf,
        depth: usize,
    ) -> Result<(), FsError> {
        if depth > MAX_DEPTH {
            return Err(FsError::Invalid(format!(
                "{} is more than {MAX_DEPTH} directories deep",
                shown(&rel)
            )));
        }
        let dst = land_dir(
            dst_parent,
            name,
            st.mode,
            Some((st.uid, st.gid)),
            &shown(&rel),
        )?;
        let children = entries(src).map_err(|e| FsError::os(&shown(&rel), e))?;
        for (child, kind) in children {
            let child_rel = rel.join(&child);
            let what = shown(&child_rel);
            match kind {
                FileKind::Directory => {
                    let fd = rustix::fs::openat(
                        src,
                        &child,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| FsError::os(&what, e))?;
                    let cst = rustix::fs::fstat(&fd).map_err(|e| FsError::os(&what, e))?;
                    self.dir(
                        &fd,
                        &Stat::from_raw(&cst),
                        dst.as_fd(),
                        &child,
                        child_rel,
                        depth + 1,
                    )?;
                }
                FileKind::File => {
                    let (mut file, fst) = open_regular(src.as_fd(), Path::new(&child))?;
                    self.total += land_file(
                        dst.as_fd(),
                        &child,
                        &mut file,
                        fst.mode,
                        (fst.uid, fst.gid),
                        &what,
                        None,
                    )?;
                }
                FileKind::Symlink => {
                    let target = rustix::fs::readlinkat(src, &child, Vec::new())
                        .map_err(|e| FsError::os(&what, e))?;
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if !self.links.allows(&child_rel, &target) {
                        return Err(FsError::Denied(format!(
                            "{what} is a symlink to `{}`, which would point outside the grant; copy refuses to make it",
                            target.display()
                        )));
                    }
                    land_link(dst.as_fd(), &child, &target, &what)?;
                }
                FileKind::Other => {
                    let st = rustix::fs::statat(src, &child, AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| FsError::os(&what, e))?;
                    return Err(FsError::Invalid(format!(
                        "{what} is {}; copy takes files, directories and symlinks",
                        kind_word(st.st_mode)
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Pack `at` into `out`: a regular file as its bytes, a directory as a
/// tar stream (links stored as links, never followed; FIFOs, sockets and
/// devices left out). Returns what `at` is.
pub fn pack(at: &At<'_>, out: &mut dyn Write) -> Result<FileKind, FsError> {
    let rel = at.root.rel(&at.rel);
    let probe =
        open_beneath(at.root.fd(), &rel, OFlags::PATH).map_err(|e| FsError::os(&shown(&rel), e))?;
    let st = rustix::fs::fstat(&probe).map_err(|e| FsError::os(&shown(&rel), e))?;
    match kind_of_mode(st.st_mode) {
        FileKind::File => {
            let (file, st) = open_regular(at.root.fd(), &rel)?;
            exact(file, st.size, out)
                .map_err(|e| FsError::Io(format!("reading {}: {e}", shown(&rel))))?;
            Ok(FileKind::File)
        }
        FileKind::Directory => {
            let dir = open_beneath(at.root.fd(), &rel, OFlags::RDONLY | OFlags::DIRECTORY)
                .map_err(|e| FsError::os(&shown(&rel), e))?;
            let mut tar = tar::Builder::new(out);
            let mut header = header(&Stat::from_raw(&st), tar::EntryType::Directory);
            tar.append_data(&mut header, "./", std::io::empty())
                .map_err(|e| FsError::Io(format!("packing {}: {e}", shown(&rel))))?;
            pack_dir(&mut tar, &dir, Path::new(""), 0, &mut Vec::new())?;
            tar.finish()
                .map_err(|e| FsError::Io(format!("packing {}: {e}", shown(&rel))))?;
            Ok(FileKind::Directory)
        }
        _ => Err(FsError::Invalid(format!(
            "{} is {}; only files and directories can be packed",
            shown(&rel),
            kind_word(st.st_mode)
        ))),
    }
}

/// Bytes read at a time when a member's data is copied into a tar stream
/// (the tar crate's own copy moves 8 KiB per call: per GB, 131,072 reads
/// and as many writes down the stream, against 4,096).
pub const MEMBER_BUF: usize = 256 << 10;

/// Append a regular member to `tar`: `header` (its size already set)
/// under `path`, then exactly that many bytes of `data`, read into `buf`
/// (reused across members) piece by piece, each piece shown to `written`
/// once it is written, then the padding to the next 512-byte block. Data
/// that ends early is an error, and the stream is then incomplete.
pub fn append_member<W: Write>(
    tar: &mut tar::Builder<W>,
    header: &mut tar::Header,
    path: &Path,
    data: &mut dyn Read,
    buf: &mut Vec<u8>,
    written: &mut dyn FnMut(&[u8]),
) -> std::io::Result<()> {
    let size = header.entry_size()?;
    // The header alone: the builder writes no data and no padding for an
    // empty reader, whatever size the header gives.
    tar.append_data(header, path, std::io::empty())?;
    if buf.len() < MEMBER_BUF {
        buf.resize(MEMBER_BUF, 0);
    }
    let out = tar.get_mut();
    let mut left = size;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let n = match data.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the data ended after {} of {size} bytes", size - left),
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        out.write_all(&buf[..n])?;
        written(&buf[..n]);
        left -= n as u64;
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])
}

/// Copy exactly `size` bytes of `file` to `out`: a file that shrank while
/// being read is padded with zeros, one that grew is cut, so the tar
/// header stays true.
fn exact(file: std::fs::File, size: u64, out: &mut dyn Write) -> std::io::Result<u64> {
    let mut data = file.take(size).chain(std::io::repeat(0)).take(size);
    // Read straight into the buffer's spare room, MEMBER_BUF at a time.
    let mut out = std::io::BufWriter::with_capacity(MEMBER_BUF, out);
    let n = std::io::copy(&mut data, &mut out)?;
    out.flush()?;
    Ok(n)
}

fn header(st: &Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.mode);
    h.set_uid(st.uid.into());
    h.set_gid(st.gid.into());
    h.set_mtime(st.modified.max(0) as u64);
    h.set_size(0);
    h
}

fn pack_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &OwnedFd,
    rel: &Path,
    depth: usize,
    buf: &mut Vec<u8>,
) -> Result<(), FsError> {
    if depth > MAX_DEPTH {
        return Err(FsError::Invalid(format!(
            "{} is more than {MAX_DEPTH} directories deep",
            shown(rel)
        )));
    }
    let mut children = entries(dir).map_err(|e| FsError::os(&shown(rel), e))?;
    children.sort();
    let io =
        |what: &Path, e: std::io::Error| FsError::Io(format!("packing {}: {e}", what.display()));
    for (name, kind) in children {
        let child = rel.join(&name);
        match kind {
            FileKind::Directory => {
                let fd = match rustix::fs::openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    // Gone or replaced since it was listed: like tar, go on.
                    Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) => continue,
                    Err(e) => return Err(FsError::os(&shown(&child), e)),
                };
                let st = rustix::fs::fstat(&fd).map_err(|e| FsError::os(&shown(&child), e))?;
                let mut h = header(&Stat::from_raw(&st), tar::EntryType::Directory);
                let mut name = child.as_os_str().to_os_string();
                name.push("/");
                tar.append_data(&mut h, Path::new(&name), std::io::empty())
                    .map_err(|e| io(&child, e))?;
                pack_dir(tar, &fd, &child, depth + 1, buf)?;
            }
            FileKind::File => {
                let (file, st) = match open_regular(dir.as_fd(), Path::new(&name)) {
                    Ok(f) => f,
                    Err(FsError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                let mut h = header(&st, tar::EntryType::Regular);
                h.set_size(st.size);
                let mut data = file.take(st.size).chain(std::io::repeat(0)).take(st.size);
                append_member(tar, &mut h, &child, &mut data, buf, &mut |_| {})
                    .map_err(|e| io(&child, e))?;
            }
            FileKind::Symlink => {
                let st = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(FsError::os(&shown(&child), e)),
                };
                let target = rustix::fs::readlinkat(dir, &name, Vec::new())
                    .map_err(|e| FsError::os(&shown(&child), e))?;
                let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                let mut h = header(&Stat::from_raw(&st), tar::EntryType::Symlink);
                tar.append_link(&mut h, &child, &target)
                    .map_err(|e| io(&child, e))?;
            }
            // FIFOs, sockets and devices are not data to back up.
            FileKind::Other => {}
        }
    }
    Ok(())
}

/// A member name made safe: relative, no `..`, no root; `None` for the
/// destination itself.
fn member_path(raw: &[u8]) -> Result<Option<PathBuf>, FsError> {
    let path = Path::new(OsStr::from_bytes(raw));
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(FsError::Denied(format!(
                    "member `{}` would land outside the destination",
                    path.display()
                )));
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Open (creating what is missing) the directories `rel` below `dest`,
/// refusing to pass through any symlink.
fn member_dir(dest: BorrowedFd<'_>, rel: &Path, what: &str) -> Result<OwnedFd, FsError> {
    let mut cur = rustix::fs::openat(
        dest,
        ".",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| FsError::os(what, e))?;
    for c in rel.components() {
        let Component::Normal(name) = c else { continue };
        match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(FsError::os(what, e)),
        }
        cur = rustix::fs::openat2(
            &cur,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH,
        )
        .or_else(|e| match e {
            Errno::NOSYS => rustix::fs::openat(
                &cur,
                name,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ),
            e => Err(e),
        })
        .map_err(|e| match e {
            Errno::LOOP | Errno::XDEV => FsError::Denied(format!(
                "{what} would be written through a symlink; unpack never follows one"
            )),
            e => FsError::os(what, e),
        })?;
    }
    Ok(cur)
}

/// Unpack the tar stream `input` into `at` (created when missing; an
/// existing destination keeps its mode). Returns the bytes of file data
/// written.
// Long because it is one pass over a tar stream, each member kind handled
// beneath the handle in the same loop.
pub fn unpack(at: &At<'_>, input: &mut dyn Read, links: &LinkPolicy) -> Result<u64, FsError> {
    let dest = mkdir_all(at.root.fd(), &at.root.rel(&at.rel))?;
    let mut archive = tar::Archive::new(input);
    let mut bytes = 0u64;
    let entries = archive
        .entries()
        .map_err(|e| FsError::Io(format!("reading the tar stream: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| FsError::Io(format!("reading the tar stream: {e}")))?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let Some(rel) = member_path(&entry.path_bytes())? else {
            continue;
        };
        let what = shown(&rel);
        let name = rel.file_name().map(OsStr::to_os_string).unwrap_or_default();
        let parent = member_dir(dest.as_fd(), rel.parent().unwrap_or(Path::new("")), &what)?;
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o644);
        let owner = (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        );
        match kind {
            tar::EntryType::Directory => {
                land_dir(parent.as_fd(), &name, mode, Some(owner), &what)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                let mut data = (&mut entry).take(size);
                bytes += land_file(
                    parent.as_fd(),
                    &name,
                    &mut data,
                    mode,
                    owner,
                    &what,
                    Some(size),
                )?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| PathBuf::from(OsStr::from_bytes(&t)))
                    .unwrap_or_default();
                if !links.allows(&at.rel.join(&rel), &target) {
                    return Err(FsError::Denied(format!(
                        "member {what} is a symlink to `{}`, which would point outside the grant; unpack refuses to make it",
                        target.display()
                    )));
                }
                land_link(parent.as_fd(), &name, &target, &what)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let Some(target) = member_path(&target)? else {
                    return Err(FsError::Invalid(format!(
                        "member {what} links to the destination itself"
                    )));
                };
                let (mut file, st) = open_regular(dest.as_fd(), &target)?;
                bytes += land_file(
                    parent.as_fd(),
                    &name,
                    &mut file,
                    st.mode,
                    (st.uid, st.gid),
                    &what,
                    None,
                )?;
            }
            other => {
                let word = match other {
                    tar::EntryType::Char => "a character device",
                    tar::EntryType::Block => "a block device",
                    tar::EntryType::Fifo => "a FIFO",
                    _ => "of an unknown kind",
                };
                return Err(FsError::Invalid(format!(
                    "member {what} is {word}; unpack makes files, directories and symlinks only"
                )));
            }
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Root;
    use std::os::unix::fs::{PermissionsExt, symlink as ln};

    fn policy(roots: &[&Path]) -> LinkPolicy {
        LinkPolicy {
            write_roots: roots.iter().map(|p| p.to_path_buf()).collect(),
        }
    }

    fn at<'a>(r: &'a Root, rel: &str) -> At<'a> {
        At {
            root: r,
            rel: PathBuf::from(rel),
        }
    }

    #[test]
    fn copy_refuses_outward_links_and_never_writes_through_one() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("t")).unwrap();
        ln(&victim, src.path().join("t/victim")).unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (rs, rd) = (
            Root::pin(src.path()).unwrap(),
            Root::pin(dst.path()).unwrap(),
        );
        let links = policy(&[dst.path()]);
        let e = copy(&at(&rs, "t"), &at(&rd, "t"), &links).unwrap_err();
        assert!(
            matches!(e, FsError::Denied(ref m) if m.contains("outside the grant")),
            "{e:?}"
        );
        // A link planted in the destination is replaced, not written through.
        std::fs::remove_file(src.path().join("t/victim")).unwrap();
        std::fs::write(src.path().join("t/victim"), "copied").unwrap();
        std::fs::create_dir_all(dst.path().join("t")).unwrap();
        let _ = std::fs::remove_file(dst.path().join("t/victim"));
        ln(&victim, dst.path().join("t/victim")).unwrap();
        copy(&at(&rs, "t"), &at(&rd, "t"), &links).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(
            std::fs::read(dst.path().join("t/victim")).unwrap(),
            b"copied"
        );
    }

    #[test]
    fn copy_drops_setuid_bits() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("prog"), "x").unwrap();
        std::fs::set_permissions(
            src.path().join("prog"),
            std::fs::Permissions::from_mode(0o4777),
        )
        .unwrap();
        let dst = tempfile::tempdir().unwrap();
        let (rs, rd) = (
            Root::pin(src.path()).unwrap(),
            Root::pin(dst.path()).unwrap(),
        );
        copy(&at(&rs, "prog"), &at(&rd, "prog"), &policy(&[dst.path()])).unwrap();
        let mode = std::fs::metadata(dst.path().join("prog"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o775);
    }

    /// What sdk/README.md ("What `copy_to` (fs.copy) does with
    /// metadata") promises plugin authors.
    #[test]
    fn copy_metadata_is_what_the_sdk_readme_says() {
        use std::os::unix::fs::MetadataExt;
        let src = tempfile::tempdir().unwrap();
        let d = src.path().join("d");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("f"), "data").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        std::fs::File::options()
            .write(true)
            .open(d.join("f"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        std::fs::hard_link(d.join("f"), d.join("g")).unwrap();
        ln("f", d.join("l")).unwrap();
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(&d.join("f"), 0o666);
        set(&d.join("sub"), 0o777);
        set(&d, 0o777);
        let dst = tempfile::tempdir().unwrap();
        // An existing directory is used as it is; what is in it stays.
        std::fs::create_dir(dst.path().join("d")).unwrap();
        std::fs::write(dst.path().join("d/keep"), "mine").unwrap();
        set(&dst.path().join("d"), 0o700);
        let (rs, rd) = (
            Root::pin(src.path()).unwrap(),
            Root::pin(dst.path()).unwrap(),
        );
        let links = policy(&[dst.path()]);
        assert_eq!(copy(&at(&rs, "d"), &at(&rd, "d"), &links).unwrap(), 8);
        let meta = |p: &str| std::fs::symlink_metadata(dst.path().join(p)).unwrap();
        assert_eq!(meta("d").mode() & 0o7777, 0o700);
        assert_eq!(std::fs::read(dst.path().join("d/keep")).unwrap(), b"mine");
        // Created entries: the source's bits without world-write.
        assert_eq!(meta("d/sub").mode() & 0o7777, 0o775);
        assert_eq!(meta("d/f").mode() & 0o7777, 0o664);
        // No timestamps kept; hard links become separate files.
        assert!(meta("d/f").modified().unwrap() > old);
        assert_ne!(meta("d/f").ino(), meta("d/g").ino());
        assert!(meta("d/l").file_type().is_symlink());
        assert_eq!(
            std::fs::read_link(dst.path().join("d/l")).unwrap(),
            Path::new("f")
        );
        // FIFOs (and sockets, devices) are refused, and the copy stops.
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("pipe"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let e = copy(&at(&rs, "d"), &at(&rd, "d2"), &links).unwrap_err();
        assert!(
            matches!(e, FsError::Invalid(ref m) if m.contains("copy takes files, directories and symlinks")),
            "{e:?}"
        );
    }

    #[test]
    fn pack_then_unpack_round_trips_and_refuses_a_second_stage_slip() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("d/e")).unwrap();
        std::fs::write(src.path().join("d/e/f"), "data").unwrap();
        ln("e/f", src.path().join("d/link")).unwrap();
        let rs = Root::pin(src.path()).unwrap();
        let mut tar = Vec::new();
        assert_eq!(pack(&at(&rs, "d"), &mut tar).unwrap(), FileKind::Directory);
        let dst = tempfile::tempdir().unwrap();
        let rd = Root::pin(dst.path()).unwrap();
        let links = policy(&[dst.path()]);
        assert_eq!(unpack(&at(&rd, "out"), &mut &tar[..], &links).unwrap(), 4);
        assert_eq!(std::fs::read(dst.path().join("out/link")).unwrap(), b"data");

        // A crafted artifact: first a link out, then a member through it.
        let outside = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "esc", outside.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/planted", &b"x"[..]).unwrap();
        let crafted = b.into_inner().unwrap();
        let e = unpack(&at(&rd, "out2"), &mut &crafted[..], &links).unwrap_err();
        assert!(matches!(e, FsError::Denied(_)), "{e:?}");
        // Even with the link already there (made by an earlier unpack).
        ln(outside.path(), dst.path().join("out2/esc")).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        b.append_data(&mut h, "esc/planted", &b"x"[..]).unwrap();
        let second = b.into_inner().unwrap();
        let e = unpack(&at(&rd, "out2"), &mut &second[..], &links).unwrap_err();
        assert!(matches!(e, FsError::Denied(_)), "{e:?}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }

    #[test]
    fn unpack_keeps_an_existing_destination_mode_and_strips_dangerous_bits() {
        let dst = tempfile::tempdir().unwrap();
        std::fs::create_dir(dst.path().join("d")).unwrap();
        std::fs::set_permissions(dst.path().join("d"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_data(&mut h, "./", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o1777);
        h.set_size(0);
        b.append_data(&mut h, "pub/", std::io::empty()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o4755);
        h.set_size(1);
        b.append_data(&mut h, "pub/suid", &b"x"[..]).unwrap();
        let data = b.into_inner().unwrap();
        let rd = Root::pin(dst.path()).unwrap();
        unpack(&at(&rd, "d"), &mut &data[..], &policy(&[dst.path()])).unwrap();
        let mode = |p: &str| {
            std::fs::symlink_metadata(dst.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("d"), 0o700);
        assert_eq!(mode("d/pub"), 0o775);
        assert_eq!(mode("d/pub/suid"), 0o755);
    }
}
