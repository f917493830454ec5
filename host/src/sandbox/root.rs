//! Grant roots: resolved once, checked for ancestors another user could
//! swap, and held as an open directory handle for the rest of the run.

use super::FsError;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How a pinned root is named between the host and a node's agent: its
/// resolved path and the identity of the directory found there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootRef {
    /// The nearest existing directory of the grant root, symlinks resolved.
    #[serde(with = "super::path::bytes")]
    pub canonical: PathBuf,
    pub dev: u64,
    pub ino: u64,
    /// The part of the grant root that did not exist yet when pinned.
    #[serde(with = "super::path::bytes")]
    pub tail: PathBuf,
}

/// A pinned grant root.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    pub id: RootRef,
}

impl Root {
    /// Resolve `path` (as the operator granted it, symlinks and all) and
    /// hold a handle on it. Refused: a root below a directory anyone may
    /// write without the sticky bit, below a sticky one in an entry another
    /// user owns, or below a directory another user owns, since they could
    /// swap it for a link; and a missing root whose existing parent others
    /// may write.
    pub fn pin(path: &Path) -> Result<Root, FsError> {
        let shown = path.display();
        let mut existing = path.to_path_buf();
        let mut missing = Vec::new();
        let canonical = loop {
            match std::fs::canonicalize(&existing) {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match (existing.parent(), existing.file_name()) {
                        (Some(parent), Some(name)) => {
                            missing.push(name.to_os_string());
                            existing = parent.to_path_buf();
                        }
                        _ => return Err(FsError::NotFound(format!("no part of `{shown}` exists"))),
                    }
                }
                Err(e) => return Err(FsError::Io(format!("resolving grant root `{shown}`: {e}"))),
            }
        };
        let mut tail: PathBuf = missing.iter().rev().collect();
        // A file granted by itself: hold its directory, and the file's
        // name as the tail.
        let mut canonical = canonical;
        if tail.as_os_str().is_empty()
            && !std::fs::metadata(&canonical).is_ok_and(|m| m.is_dir())
            && let (Some(dir), Some(name)) = (canonical.parent(), canonical.file_name())
        {
            tail = PathBuf::from(name);
            canonical = dir.to_path_buf();
        }
        check_ancestors(path, &canonical)?;
        let fd = open_no_symlinks(&canonical)
            .map_err(|e| FsError::os(&format!("grant root `{shown}`"), e))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| FsError::os(&format!("grant root `{shown}`"), e))?;
        if super::kind_of_mode(st.st_mode) != super::FileKind::Directory {
            return Err(FsError::Invalid(format!(
                "grant root `{shown}` is not a directory"
            )));
        }
        if !tail.as_os_str().is_empty() && !owned_safely(&st) {
            return Err(FsError::Denied(format!(
                "grant root `{shown}` does not exist and `{}` above it may be written by other users; create it first",
                canonical.display()
            )));
        }
        Ok(Root {
            fd,
            id: RootRef {
                canonical,
                dev: st.st_dev,
                ino: st.st_ino,
                tail,
            },
        })
    }

    /// Open the root named by `id` again (in an agent, for one call), and
    /// refuse it if another directory now stands at that path.
    pub fn reopen(id: &RootRef) -> Result<Root, FsError> {
        let shown = id.canonical.display();
        let fd = open_no_symlinks(&id.canonical)
            .map_err(|e| FsError::os(&format!("grant root `{shown}`"), e))?;
        let st =
            rustix::fs::fstat(&fd).map_err(|e| FsError::os(&format!("grant root `{shown}`"), e))?;
        if (st.st_dev, st.st_ino) != (id.dev, id.ino) {
            return Err(FsError::Denied(format!(
                "grant root `{shown}` was replaced by another directory during the run"
            )));
        }
        Ok(Root { fd, id: id.clone() })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `rel` (relative to the grant root as granted) relative to the
    /// pinned directory.
    pub fn rel(&self, rel: &Path) -> PathBuf {
        if rel.as_os_str().is_empty() {
            // `join("")` would add a trailing slash.
            return self.id.tail.clone();
        }
        self.id.tail.join(rel)
    }
}

/// Owned by root or by us, and writable by nobody else except under the
/// sticky bit's protection (`/tmp`, `/var/tmp`: others can add entries
/// but not replace ours, and everything stays beneath the handle).
fn owned_safely(st: &rustix::fs::Stat) -> bool {
    let me = rustix::process::geteuid().as_raw();
    (st.st_uid == 0 || st.st_uid == me) && (st.st_mode & 0o022 == 0 || st.st_mode & 0o1000 != 0)
}

fn check_ancestors(granted: &Path, canonical: &Path) -> Result<(), FsError> {
    let me = rustix::process::geteuid().as_raw();
    let mut dir = PathBuf::from("/");
    for name in canonical.components().skip(1) {
        let next = dir.join(name);
        let st = rustix::fs::lstat(&dir).map_err(|e| FsError::os(&dir.display().to_string(), e))?;
        let refuse = |why: String| {
            Err(FsError::Denied(format!(
                "grant root `{}` is refused: {why}, so another user could swap `{}` for a symlink",
                granted.display(),
                next.display()
            )))
        };
        if st.st_uid != 0 && st.st_uid != me {
            return refuse(format!("`{}` is owned by uid {}", dir.display(), st.st_uid));
        }
        if st.st_mode & 0o002 != 0 {
            if st.st_mode & 0o1000 == 0 {
                return refuse(format!(
                    "`{}` is writable by anyone (mode {:o}) without the sticky bit",
                    dir.display(),
                    st.st_mode & 0o7777
                ));
            }
            let child = rustix::fs::lstat(&next)
                .map_err(|e| FsError::os(&next.display().to_string(), e))?;
            if child.st_uid != 0 && child.st_uid != me {
                return refuse(format!(
                    "`{}` lies in the shared directory `{}` and is owned by uid {}",
                    next.display(),
                    dir.display(),
                    child.st_uid
                ));
            }
        }
        dir = next;
    }
    Ok(())
}

/// Open an absolute, already resolved path as a directory handle,
/// refusing any symlink on the way.
fn open_no_symlinks(path: &Path) -> Result<OwnedFd, Errno> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::openat2(
        rustix::fs::CWD,
        path,
        flags,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    ) {
        Err(Errno::NOSYS) => super::ops::walk(rustix::fs::CWD, path, flags),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn pins_and_detects_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("r");
        std::fs::create_dir(&root).unwrap();
        let pinned = Root::pin(&root).unwrap();
        assert!(Root::reopen(&pinned.id).is_ok());
        std::fs::rename(&root, dir.path().join("old")).unwrap();
        std::fs::create_dir(&root).unwrap();
        let err = Root::reopen(&pinned.id).unwrap_err();
        assert!(
            matches!(err, FsError::Denied(ref m) if m.contains("replaced")),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_root_under_world_writable_dir_without_sticky_bit() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::create_dir(open.join("root")).unwrap();
        let err = Root::pin(&open.join("root")).unwrap_err();
        assert!(
            matches!(err, FsError::Denied(ref m) if m.contains("writable by anyone")),
            "{err:?}"
        );
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Root::pin(&open.join("root")).is_ok());
    }

    #[test]
    fn a_file_root_is_held_by_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("real"), "x").unwrap();
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let pinned = Root::pin(&dir.path().join("link")).unwrap();
        assert_eq!(pinned.id.tail, PathBuf::from("real"));
        assert_eq!(pinned.id.canonical, dir.path().canonicalize().unwrap());
    }

    #[test]
    fn a_missing_root_keeps_its_tail() {
        let dir = tempfile::tempdir().unwrap();
        let pinned = Root::pin(&dir.path().join("a/b")).unwrap();
        assert_eq!(pinned.id.tail, PathBuf::from("a/b"));
        assert_eq!(pinned.rel(Path::new("c")), PathBuf::from("a/b/c"));
    }
}
