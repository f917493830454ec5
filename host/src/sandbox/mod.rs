//! Files touched through directory handles, never by re-resolving a
//! checked path. A grant root is resolved once and held as an open
//! directory; every operation then opens what it needs *beneath* that
//! handle with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`, so no
//! `..`, absolute symlink or concurrent swap of a directory for a link can
//! lead outside it. Final components that must not be followed use the
//! `*at` calls with `AT_SYMLINK_NOFOLLOW`; new files are written to an
//! `O_EXCL` temporary with a random name and renamed over the target, so a
//! planted symlink is replaced, never written through.
//!
//! The same code serves the local node (in the host's process, on a
//! blocking thread) and remote nodes (in `stackhost-agent`, which the host
//! copies to a node and drives over SSH; see [`wire`]).

pub mod ops;
pub mod path;
pub mod root;
pub mod tree;
pub mod wire;

pub use root::Root;

use serde::{Deserialize, Serialize};

/// Why a sandboxed file operation failed. The text names the path
/// relative to its grant root; the caller adds the node and the plugin's
/// own path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum FsError {
    #[error("{0}")]
    NotFound(String),
    /// The operation would leave the grant (a symlink pointing out, a
    /// swapped directory) or create something the sandbox never creates.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Io(String),
}

impl FsError {
    /// Map an OS error on `what` to the matching kind. `EXDEV` and `ELOOP`
    /// are what `RESOLVE_BENEATH` and `O_NOFOLLOW` return when a path
    /// would leave its root or pass through a link: those are denials.
    pub fn os(what: &str, e: rustix::io::Errno) -> FsError {
        use rustix::io::Errno;
        let io = std::io::Error::from(e);
        match e {
            Errno::NOENT => FsError::NotFound(format!("{what}: no such file or directory")),
            Errno::XDEV => FsError::Denied(format!(
                "{what} leads outside its grant root through a symlink"
            )),
            Errno::LOOP => FsError::Denied(format!(
                "{what} goes through a symlink where none may be followed"
            )),
            _ => FsError::Io(format!("{what}: {io}")),
        }
    }
}

/// Kind of a file, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

/// Metadata of one path, not following a final symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    pub kind: FileKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub modified: i64,
}

impl Stat {
    pub(crate) fn from_raw(st: &rustix::fs::Stat) -> Stat {
        Stat {
            kind: kind_of_mode(st.st_mode),
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            modified: st.st_mtime,
        }
    }
}

pub(crate) fn kind_of_mode(mode: u32) -> FileKind {
    match mode & libc_mode::S_IFMT {
        libc_mode::S_IFREG => FileKind::File,
        libc_mode::S_IFDIR => FileKind::Directory,
        libc_mode::S_IFLNK => FileKind::Symlink,
        _ => FileKind::Other,
    }
}

/// The file-type bits of `st_mode` (stable across Linux architectures).
pub(crate) mod libc_mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFLNK: u32 = 0o120000;
    pub const S_IFIFO: u32 = 0o010000;
    pub const S_IFSOCK: u32 = 0o140000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFBLK: u32 = 0o060000;
}

/// A word for a non-regular file's kind, for error messages.
pub(crate) fn kind_word(mode: u32) -> &'static str {
    match mode & libc_mode::S_IFMT {
        libc_mode::S_IFREG => "a regular file",
        libc_mode::S_IFDIR => "a directory",
        libc_mode::S_IFLNK => "a symlink",
        libc_mode::S_IFIFO => "a FIFO",
        libc_mode::S_IFSOCK => "a socket",
        libc_mode::S_IFCHR => "a character device",
        libc_mode::S_IFBLK => "a block device",
        _ => "a special file",
    }
}

/// Whether this process runs as root (then copies keep owners).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
