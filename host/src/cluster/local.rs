//! The local node: programs run as child processes of the host, files are
//! touched with the host's own system calls.

use super::{CAPTURE_LIMIT, DEFAULT_PATH, ExecOutput, ExecRequest, NodeError};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The machine the host runs on.
#[derive(Debug, Clone, Copy)]
pub struct LocalNode;

/// Metadata of one path, as `lstat` reports it.
#[derive(Debug, Clone)]
pub struct Stat {
    pub kind: FileKind,
    pub size: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub modified: i64,
}

/// Kind of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    Other,
}

const NODE: &str = "local";

impl LocalNode {
    /// Run a program and capture its output.
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, NodeError> {
        let current_user = std::env::var("USER").unwrap_or_default();
        let is_root = is_root();
        let needs_sudo = match req.user.as_deref() {
            None => false,
            Some("root") => !is_root,
            Some(u) => u != current_user,
        };
        let mut cmd = if needs_sudo {
            let mut c = tokio::process::Command::new("sudo");
            c.arg("-n")
                .arg("-u")
                .arg(req.user.as_deref().unwrap_or("root"))
                .arg("--");
            c.arg(&req.program);
            c
        } else {
            tokio::process::Command::new(&req.program)
        };
        cmd.args(&req.args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(req.env.iter().map(|(k, v)| (k, v)))
            .stdin(if req.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &req.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let msg = format!("cannot start `{}` on node {NODE}: {e}", req.program);
            if e.kind() == std::io::ErrorKind::NotFound {
                NodeError::NotFound(msg)
            } else {
                NodeError::Failed(msg)
            }
        })?;
        let stdin = child.stdin.take();
        let input = req.stdin.clone();
        let feed = async move {
            if let (Some(mut pipe), Some(data)) = (stdin, input) {
                // A program that exits without reading its input is not an error.
                let _ = pipe.write_all(&data).await;
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let run = async {
            let ((out, out_cut), (err, err_cut), (), status) =
                tokio::join!(capture(stdout), capture(stderr), feed, child.wait());
            (out, out_cut || err_cut, err, status)
        };
        match tokio::time::timeout(req.timeout, run).await {
            Ok((stdout, truncated, stderr, status)) => {
                let status = status.map_err(|e| {
                    NodeError::Failed(format!("waiting for `{}`: {e}", req.program))
                })?;
                use std::os::unix::process::ExitStatusExt;
                Ok(ExecOutput {
                    status: status.code().unwrap_or(-1),
                    signal: status.signal().map(|s| s as u32),
                    stdout,
                    stderr,
                    truncated,
                })
            }
            Err(_) => Err(NodeError::Timeout(format!(
                "`{}` on node {NODE} ran past its timeout of {:?} and was killed",
                req.program, req.timeout
            ))),
        }
    }

    /// Resolve symlinks in `path`: the longest existing prefix is
    /// canonicalised, the rest appended. With `follow_last` false the final
    /// component is kept as it is (for operations on a link itself).
    pub fn resolve(&self, path: &Path, follow_last: bool) -> Result<PathBuf, NodeError> {
        let (base, last) = match (follow_last, path.parent(), path.file_name()) {
            (false, Some(parent), Some(name)) => (parent, Some(name)),
            _ => (path, None),
        };
        let mut existing = base.to_path_buf();
        let mut rest = Vec::new();
        let resolved = loop {
            match std::fs::canonicalize(&existing) {
                Ok(p) => break p,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    match (existing.parent(), existing.file_name()) {
                        (Some(parent), Some(name)) => {
                            rest.push(name.to_os_string());
                            existing = parent.to_path_buf();
                        }
                        _ => {
                            return Err(NodeError::NotFound(format!(
                                "no part of `{}` exists",
                                path.display()
                            )));
                        }
                    }
                }
                Err(e) => return Err(NodeError::io(NODE, "resolve", path, e)),
            }
        };
        let mut out = resolved;
        out.extend(rest.iter().rev());
        if let Some(name) = last {
            out.push(name);
        }
        Ok(out)
    }

    pub fn stat(&self, path: &Path) -> Result<Option<Stat>, NodeError> {
        match std::fs::symlink_metadata(path) {
            Ok(m) => {
                let ft = m.file_type();
                let kind = if ft.is_symlink() {
                    FileKind::Symlink
                } else if ft.is_dir() {
                    FileKind::Directory
                } else if ft.is_file() {
                    FileKind::File
                } else {
                    FileKind::Other
                };
                Ok(Some(Stat {
                    kind,
                    size: m.len(),
                    mode: m.mode() & 0o7777,
                    uid: m.uid(),
                    gid: m.gid(),
                    modified: m.mtime(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::io(NODE, "stat", path, e)),
        }
    }

    pub fn read(&self, path: &Path, max: u64) -> Result<Vec<u8>, NodeError> {
        let file = std::fs::File::open(path).map_err(|e| NodeError::io(NODE, "read", path, e))?;
        let mut data = Vec::new();
        use std::io::Read;
        file.take(max.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| NodeError::io(NODE, "read", path, e))?;
        if data.len() as u64 > max {
            return Err(NodeError::InvalidArgument(format!(
                "`{}` on node {NODE} is larger than the {max} bytes asked for; move big files with fs.copy or archive",
                path.display()
            )));
        }
        Ok(data)
    }

    /// Replace `path` atomically: temporary file in the same directory,
    /// fsync, rename, fsync the directory.
    pub fn write(&self, path: &Path, data: &[u8], mode: Option<u32>) -> Result<(), NodeError> {
        let err = |e| NodeError::io(NODE, "write", path, e);
        let dir = path
            .parent()
            .ok_or_else(|| NodeError::InvalidArgument("cannot write `/`".into()))?;
        let mode = mode
            .or_else(|| std::fs::metadata(path).ok().map(|m| m.mode() & 0o7777))
            .unwrap_or(0o644);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.stackhost-{}", std::process::id()));
        let result = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(data)?;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(err)
    }

    pub fn list_dir(&self, path: &Path) -> Result<Vec<(String, FileKind)>, NodeError> {
        let err = |e| NodeError::io(NODE, "list", path, e);
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path).map_err(err)? {
            let entry = entry.map_err(err)?;
            let ft = entry.file_type().map_err(err)?;
            let kind = if ft.is_symlink() {
                FileKind::Symlink
            } else if ft.is_dir() {
                FileKind::Directory
            } else if ft.is_file() {
                FileKind::File
            } else {
                FileKind::Other
            };
            entries.push((entry.file_name().to_string_lossy().into_owned(), kind));
        }
        entries.sort();
        Ok(entries)
    }

    pub fn mkdir(&self, path: &Path, recursive: bool) -> Result<(), NodeError> {
        let r = if recursive {
            std::fs::create_dir_all(path)
        } else {
            std::fs::create_dir(path)
        };
        r.map_err(|e| NodeError::io(NODE, "mkdir", path, e))
    }

    pub fn rename(&self, from: &Path, to: &Path) -> Result<(), NodeError> {
        std::fs::rename(from, to).map_err(|e| NodeError::io(NODE, "rename", from, e))
    }

    pub fn remove(&self, path: &Path, recursive: bool) -> Result<(), NodeError> {
        let meta =
            std::fs::symlink_metadata(path).map_err(|e| NodeError::io(NODE, "remove", path, e))?;
        let r = if meta.is_dir() {
            if recursive {
                std::fs::remove_dir_all(path)
            } else {
                std::fs::remove_dir(path)
            }
        } else {
            std::fs::remove_file(path)
        };
        r.map_err(|e| NodeError::io(NODE, "remove", path, e))
    }

    pub fn symlink(&self, target: &Path, link: &Path) -> Result<(), NodeError> {
        std::os::unix::fs::symlink(target, link)
            .map_err(|e| NodeError::io(NODE, "symlink", link, e))
    }

    /// Copy a file or tree, streaming. Returns bytes copied.
    pub fn copy(&self, from: &Path, to: &Path) -> Result<u64, NodeError> {
        let err = |p: &Path, e| NodeError::io(NODE, "copy", p, e);
        let meta = std::fs::symlink_metadata(from).map_err(|e| err(from, e))?;
        if meta.is_dir() {
            std::fs::create_dir_all(to).map_err(|e| err(to, e))?;
            let mut total = 0;
            for entry in std::fs::read_dir(from).map_err(|e| err(from, e))? {
                let entry = entry.map_err(|e| err(from, e))?;
                total += self.copy(&entry.path(), &to.join(entry.file_name()))?;
            }
            Ok(total)
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(from).map_err(|e| err(from, e))?;
            self.symlink(&target, to)?;
            Ok(0)
        } else {
            std::fs::copy(from, to).map_err(|e| err(from, e))
        }
    }
}

/// Read a stream to its end, keeping at most [`CAPTURE_LIMIT`] bytes.
async fn capture(mut stream: impl AsyncRead + Unpin) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut truncated = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = CAPTURE_LIMIT - kept.len();
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_follows_symlinks_in_existing_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let got = LocalNode
            .resolve(&dir.path().join("link/new/file"), true)
            .unwrap();
        assert_eq!(got, real.canonicalize().unwrap().join("new/file"));
    }

    #[test]
    fn resolve_keeps_final_link_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        let got = LocalNode.resolve(&dir.path().join("link"), false).unwrap();
        assert_eq!(got, dir.path().canonicalize().unwrap().join("link"));
        assert_eq!(
            LocalNode.resolve(&dir.path().join("link"), true).unwrap(),
            PathBuf::from("/etc")
        );
    }

    #[tokio::test]
    async fn exec_captures_output_and_status() {
        let req = ExecRequest {
            program: "sh".into(),
            args: vec!["-c".into(), "echo out; echo err >&2; exit 3".into()],
            env: vec![],
            stdin: None,
            user: None,
            cwd: None,
            timeout: std::time::Duration::from_secs(10),
        };
        let out = LocalNode.exec(&req).await.unwrap();
        assert_eq!(
            (out.status, out.stdout.as_slice(), out.stderr.as_slice()),
            (3, &b"out\n"[..], &b"err\n"[..])
        );
        let req = ExecRequest {
            args: vec!["-c".into(), "kill -TERM $$".into()],
            ..req
        };
        let out = LocalNode.exec(&req).await.unwrap();
        assert_eq!((out.status, out.signal), (-1, Some(15)));
    }
}
