//! Types describing files on nodes, as the host reports them. The calls
//! themselves are methods of [`Node`](crate::Node).

/// Kind of a directory entry: `File`, `Directory`, `Symlink` or `Other`.
pub use crate::bindings::stackhost::host::fs::FileType;

/// What [`Node::stat`](crate::Node::stat) reports: `file_type`, `size`,
/// `mode`, `uid`, `gid` and `modified` (seconds since the Unix epoch).
pub use crate::bindings::stackhost::host::fs::Metadata;

/// One entry of [`Node::list_dir`](crate::Node::list_dir): `name` and
/// `file_type`.
pub use crate::bindings::stackhost::host::fs::DirEntry;
