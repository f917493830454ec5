//! The operations a capability performs on a node, dispatched to the local
//! machine or to an SSH connection. Paths given here are already resolved
//! and scope-checked.

use super::local::{FileKind, Stat};
use super::{ExecOutput, ExecRequest, NodeError, Transport};
use std::path::{Path, PathBuf};

/// Remote fs operations, one small POSIX script each ("$1", "$2" are the
/// arguments); run through sudo when the inventory says so.
mod scripts {
    pub const STAT: &str =
        r#"if [ -e "$1" ] || [ -L "$1" ]; then stat -c '%F|%s|%a|%u|%g|%Y' -- "$1"; fi"#;
    pub const READ: &str = r#"head -c "$2" -- "$1""#;
    pub const WRITE: &str = r#"set -e; t="$1.stackhost-$$"; trap 'rm -f "$t"' EXIT
cat > "$t"
if [ -n "$2" ]; then chmod "$2" "$t"; elif [ -e "$1" ]; then chmod --reference="$1" "$t"; else chmod 644 "$t"; fi
sync "$t" 2>/dev/null || true
mv -f "$t" "$1""#;
    pub const LIST: &str = r#"[ -d "$1" ] || { echo "No such file or directory: $1" >&2; exit 1; }
find "$1" -mindepth 1 -maxdepth 1 -printf '%y %f\0'"#;
    pub const MKDIR: &str = r#"if [ "$2" = p ]; then mkdir -p -- "$1"; else mkdir -- "$1"; fi"#;
    pub const RENAME: &str = r#"mv -f -T -- "$1" "$2""#;
    pub const REMOVE: &str = r#"if [ -d "$1" ] && [ ! -L "$1" ]; then
  if [ "$2" = r ]; then rm -rf -- "$1"; else rmdir -- "$1"; fi
else rm -- "$1"; fi"#;
    pub const SYMLINK: &str = r#"ln -s -- "$1" "$2""#;
    pub const COPY: &str = r#"cp -a -T -- "$1" "$2" && du -sb -- "$2" | cut -f1"#;
    pub const RESOLVE: &str = r#"realpath -m -- "$1""#;
}

fn text(path: &Path) -> &str {
    path.to_str().unwrap_or("")
}

fn ssh_kind(f: &str) -> FileKind {
    match f {
        "directory" => FileKind::Directory,
        "symbolic link" => FileKind::Symlink,
        "regular file" | "regular empty file" => FileKind::File,
        _ => FileKind::Other,
    }
}

impl Transport {
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, NodeError> {
        match self {
            Transport::Local(l) => l.exec(req).await,
            Transport::Ssh(s) => s.exec(req).await,
        }
    }

    /// See [`super::LocalNode::resolve`].
    pub async fn resolve(&self, path: &Path, follow_last: bool) -> Result<PathBuf, NodeError> {
        match self {
            Transport::Local(l) => l.resolve(path, follow_last),
            Transport::Ssh(s) => {
                let (base, last) = match (follow_last, path.parent(), path.file_name()) {
                    (false, Some(parent), Some(name)) => (parent, Some(name)),
                    _ => (path, None),
                };
                let out = s
                    .script("resolve", scripts::RESOLVE, &[text(base)], None)
                    .await?;
                let mut resolved =
                    PathBuf::from(String::from_utf8_lossy(&out).trim_end_matches('\n'));
                if let Some(name) = last {
                    resolved.push(name);
                }
                Ok(resolved)
            }
        }
    }

    pub async fn stat(&self, path: &Path) -> Result<Option<Stat>, NodeError> {
        match self {
            Transport::Local(l) => l.stat(path),
            Transport::Ssh(s) => {
                let out = s.script("stat", scripts::STAT, &[text(path)], None).await?;
                let line = String::from_utf8_lossy(&out);
                let line = line.trim();
                if line.is_empty() {
                    return Ok(None);
                }
                let f: Vec<&str> = line.split('|').collect();
                let bad = || NodeError::Failed(format!("unexpected stat output `{line}`"));
                if f.len() != 6 {
                    return Err(bad());
                }
                Ok(Some(Stat {
                    kind: ssh_kind(f[0]),
                    size: f[1].parse().map_err(|_| bad())?,
                    mode: u32::from_str_radix(f[2], 8).map_err(|_| bad())?,
                    uid: f[3].parse().map_err(|_| bad())?,
                    gid: f[4].parse().map_err(|_| bad())?,
                    modified: f[5].parse().map_err(|_| bad())?,
                }))
            }
        }
    }

    pub async fn read(&self, path: &Path, max: u64) -> Result<Vec<u8>, NodeError> {
        match self {
            Transport::Local(l) => l.read(path, max),
            Transport::Ssh(s) => {
                let limit = max.saturating_add(1).to_string();
                let data = s
                    .script("read", scripts::READ, &[text(path), &limit], None)
                    .await?;
                if data.len() as u64 > max {
                    return Err(NodeError::InvalidArgument(format!(
                        "`{}` is larger than the {max} bytes asked for; move big files with fs.copy or archive",
                        path.display()
                    )));
                }
                Ok(data)
            }
        }
    }

    pub async fn write(
        &self,
        path: &Path,
        data: &[u8],
        mode: Option<u32>,
    ) -> Result<(), NodeError> {
        match self {
            Transport::Local(l) => l.write(path, data, mode),
            Transport::Ssh(s) => {
                let mode = mode.map(|m| format!("{m:o}")).unwrap_or_default();
                s.script("write", scripts::WRITE, &[text(path), &mode], Some(data))
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn list_dir(&self, path: &Path) -> Result<Vec<(String, FileKind)>, NodeError> {
        match self {
            Transport::Local(l) => l.list_dir(path),
            Transport::Ssh(s) => {
                let out = s.script("list", scripts::LIST, &[text(path)], None).await?;
                let mut entries: Vec<(String, FileKind)> = out
                    .split(|b| *b == 0)
                    .filter(|e| e.len() > 2)
                    .map(|e| {
                        let kind = match e[0] {
                            b'f' => FileKind::File,
                            b'd' => FileKind::Directory,
                            b'l' => FileKind::Symlink,
                            _ => FileKind::Other,
                        };
                        (String::from_utf8_lossy(&e[2..]).into_owned(), kind)
                    })
                    .collect();
                entries.sort();
                Ok(entries)
            }
        }
    }

    pub async fn mkdir(&self, path: &Path, recursive: bool) -> Result<(), NodeError> {
        match self {
            Transport::Local(l) => l.mkdir(path, recursive),
            Transport::Ssh(s) => {
                let p = if recursive { "p" } else { "" };
                s.script("mkdir", scripts::MKDIR, &[text(path), p], None)
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn rename(&self, from: &Path, to: &Path) -> Result<(), NodeError> {
        match self {
            Transport::Local(l) => l.rename(from, to),
            Transport::Ssh(s) => s
                .script("rename", scripts::RENAME, &[text(from), text(to)], None)
                .await
                .map(drop),
        }
    }

    pub async fn remove(&self, path: &Path, recursive: bool) -> Result<(), NodeError> {
        match self {
            Transport::Local(l) => l.remove(path, recursive),
            Transport::Ssh(s) => {
                let r = if recursive { "r" } else { "" };
                s.script("remove", scripts::REMOVE, &[text(path), r], None)
                    .await
                    .map(drop)
            }
        }
    }

    pub async fn symlink(&self, target: &Path, link: &Path) -> Result<(), NodeError> {
        match self {
            Transport::Local(l) => l.symlink(target, link),
            Transport::Ssh(s) => s
                .script(
                    "symlink",
                    scripts::SYMLINK,
                    &[text(target), text(link)],
                    None,
                )
                .await
                .map(drop),
        }
    }

    /// Copy within this node.
    pub async fn copy_within(&self, from: &Path, to: &Path) -> Result<u64, NodeError> {
        match self {
            Transport::Local(l) => tokio::task::block_in_place(|| l.copy(from, to)),
            Transport::Ssh(s) => {
                let out = s
                    .script("copy", scripts::COPY, &[text(from), text(to)], None)
                    .await?;
                Ok(String::from_utf8_lossy(&out).trim().parse().unwrap_or(0))
            }
        }
    }
}
