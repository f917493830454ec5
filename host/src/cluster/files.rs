//! Sandboxed file operations on a node (see [`crate::sandbox`]): on the
//! local node in the host's process on a blocking thread, on a remote
//! node through `stackhost-agent`, which the host copies there once
//! (checked by sha256) and runs over the node's SSH connection. Grant
//! roots are pinned once per run and node and named by identity after.
//!
//! Why an agent rather than shell commands: a script that checks a path
//! and then acts on it by name races a concurrent swap, and reading the
//! checked path back as text loses bytes (trailing newlines, non-UTF-8).
//! The agent does the same handle-based operations as the local node, so
//! one implementation and one set of tests covers both.

use super::stream::{self, CHUNK, ChunkReader, ChunkWriter};
use super::{Node, NodeError, Transport};
use crate::sandbox::root::RootRef;
use crate::sandbox::wire::{self, FrameReader, Reply, Request};
use crate::sandbox::{FsError, Root};
use crate::text::shell_quote;
use sha2::Digest;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tokio::sync::mpsc;

/// The error text when the receiver of an operation's output stopped
/// taking it: its own error is then the cause.
pub const RECEIVER_GONE: &str = "the receiver of the data went away";

/// A node's pinned roots and, for a remote node, where its agent is.
#[derive(Debug, Default)]
pub struct Files {
    roots: tokio::sync::Mutex<HashMap<PathBuf, Pinned>>,
    agent: tokio::sync::OnceCell<String>,
}

#[derive(Debug, Clone)]
struct Pinned {
    id: RootRef,
    /// The held handle, on the local node.
    local: Option<Arc<Root>>,
}

/// What an operation reads.
pub enum Input {
    None,
    Bytes(Vec<u8>),
    Stream(mpsc::Receiver<Vec<u8>>),
}

/// Where an operation's output goes.
pub enum Output {
    /// Kept in memory, at most this many bytes.
    Collect(u64),
    Stream(mpsc::Sender<Vec<u8>>),
}

impl Node {
    /// Pin the grant root `root` (as the grant writes it) on this node, once
    /// per run.
    pub async fn pin(&self, root: &Path) -> Result<RootRef, NodeError> {
        let mut roots = self.files.roots.lock().await;
        if let Some(p) = roots.get(root) {
            return Ok(p.id.clone());
        }
        let what = format!("grant root `{}`", root.display());
        let pinned = match &self.transport {
            Transport::Local(_) => {
                let path = root.to_path_buf();
                let r = tokio::task::spawn_blocking(move || Root::pin(&path))
                    .await
                    .map_err(|e| NodeError::Failed(format!("pinning {what}: {e}")))?
                    .map_err(|e| self.fs_error(&what, e))?;
                Pinned {
                    id: r.id.clone(),
                    local: Some(Arc::new(r)),
                }
            }
            Transport::Ssh(_) => {
                let req = Request::Pin {
                    path: root.to_path_buf(),
                };
                match self.files_remote(&what, req, Input::None, None).await? {
                    (Reply::Pinned(id), _) => Pinned { id, local: None },
                    (other, _) => return Err(unexpected(&other)),
                }
            }
        };
        let id = pinned.id.clone();
        roots.insert(root.to_path_buf(), pinned);
        Ok(id)
    }

    /// Carry out `req`. `what` names the operation and the plugin's path
    /// for error messages (`fs.read \`/srv/x\``). Returns the reply and the
    /// collected output.
    pub async fn files(
        &self,
        what: &str,
        req: Request,
        input: Input,
        output: Option<Output>,
    ) -> Result<(Reply, Vec<u8>), NodeError> {
        match &self.transport {
            Transport::Local(_) => self.files_local(what, req, input, output).await,
            Transport::Ssh(_) => self.files_remote(what, req, input, output).await,
        }
    }

    fn fs_error(&self, what: &str, e: FsError) -> NodeError {
        fs_error(format!("{what} on node {}: {e}", self.info.name), &e)
    }

    async fn files_local(
        &self,
        what: &str,
        req: Request,
        input: Input,
        output: Option<Output>,
    ) -> Result<(Reply, Vec<u8>), NodeError> {
        let roots: Vec<Arc<Root>> = self
            .files
            .roots
            .lock()
            .await
            .values()
            .filter_map(|p| p.local.clone())
            .collect();
        let work = move || {
            let mut input: Box<dyn Read> = match input {
                Input::None => Box::new(std::io::empty()),
                Input::Bytes(v) => Box::new(std::io::Cursor::new(v)),
                Input::Stream(rx) => Box::new(ChunkReader::new(rx)),
            };
            let mut collected = Vec::new();
            let mut open = |id: &RootRef| {
                roots
                    .iter()
                    .find(|r| r.id == *id)
                    .cloned()
                    .ok_or_else(|| FsError::Denied("a root that was never pinned".into()))
            };
            let reply = match output {
                Some(Output::Stream(tx)) => {
                    let mut w = ChunkWriter::new(tx);
                    let r = wire::serve(req, &mut input, &mut w, &mut open);
                    if r.is_err() && w.receiver_gone() {
                        return Err(FsError::Io(RECEIVER_GONE.into()));
                    }
                    r
                }
                _ => wire::serve(req, &mut input, &mut collected, &mut open),
            };
            reply.map(|r| (r, collected))
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| NodeError::Failed(format!("{what} on node local: {e}")))?
            .map_err(|e| self.fs_error(what, e))
    }

    /// Run a program on the node; on a remote node through its agent as
    /// the program's reaper (see [`super::ssh::SshNode::exec_via`]). When
    /// the agent cannot be copied there, the program runs without it.
    pub async fn exec(&self, req: &super::ExecRequest) -> Result<super::ExecOutput, NodeError> {
        let Transport::Ssh(ssh) = &self.transport else {
            return self.transport.exec(req).await;
        };
        let agent = self
            .files
            .agent
            .get_or_try_init(|| install_agent(ssh, &self.info.name))
            .await;
        let agent = match agent {
            Ok(a) => Some(a.as_str()),
            Err(e) => {
                tracing::warn!(
                    "node {}: running `{}` without its reaper ({e}): a timeout kills its \
                     process group only",
                    self.info.name,
                    req.program
                );
                None
            }
        };
        ssh.exec_via(req, agent).await
    }

    // Long because it is one request to the node's agent: copying the agent
    // on first use, framing and reading its reply share the channel.
    async fn files_remote(
        &self,
        what: &str,
        req: Request,
        input: Input,
        output: Option<Output>,
    ) -> Result<(Reply, Vec<u8>), NodeError> {
        let Transport::Ssh(ssh) = &self.transport else {
            unreachable!("files_remote on the local node");
        };
        let agent = self
            .files
            .agent
            .get_or_try_init(|| install_agent(ssh, &self.info.name))
            .await?;
        let mut words: Vec<String> = Vec::new();
        if ssh.sudo() {
            words.extend(["sudo", "-n", "--"].map(String::from));
        }
        words.push(agent.clone());
        let line = format!(
            "exec {}",
            words
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let mut header = serde_json::to_vec(&req)
            .map_err(|e| NodeError::Failed(format!("{what}: encoding the request: {e}")))?;
        header.push(b'\n');
        let (in_tx, in_rx) = stream::chunks();
        let (out_tx, mut out_rx) = stream::chunks();
        let feed = async move {
            if in_tx.send(header).await.is_err() {
                return;
            }
            match input {
                Input::None => {}
                Input::Bytes(v) => {
                    for piece in v.chunks(CHUNK) {
                        if in_tx.send(piece.to_vec()).await.is_err() {
                            return;
                        }
                    }
                }
                Input::Stream(mut rx) => {
                    while let Some(c) = rx.recv().await {
                        if in_tx.send(c).await.is_err() {
                            return;
                        }
                    }
                }
            }
        };
        let drain = async move {
            let mut frames = FrameReader::default();
            let mut collected = Vec::new();
            let (cap, tx) = match output {
                Some(Output::Collect(cap)) => (cap, None),
                Some(Output::Stream(tx)) => (0, Some(tx)),
                None => (0, None),
            };
            while let Some(chunk) = out_rx.recv().await {
                let mut pieces = Vec::new();
                frames.feed(&chunk, &mut |d| pieces.push(d.to_vec()))?;
                for piece in pieces {
                    match &tx {
                        Some(tx) => {
                            if tx.send(piece).await.is_err() {
                                return Err(RECEIVER_GONE.to_string());
                            }
                        }
                        None if (collected.len() + piece.len()) as u64 <= cap => {
                            collected.extend_from_slice(&piece)
                        }
                        None => return Err(format!("the node sent more than {cap} bytes")),
                    }
                }
            }
            Ok((frames.result(), collected))
        };
        let run = ssh.pipe(&line, Some(in_rx), Some(out_tx));
        let ((), status, drained) = tokio::join!(feed, run, drain);
        let status = status?;
        let (result, collected) = drained.map_err(|e| {
            NodeError::Failed(format!(
                "{what} on node {}: the agent's answer: {e}",
                self.info.name
            ))
        })?;
        match result {
            Some(Ok(reply)) => Ok((reply, collected)),
            Some(Err(e)) => Err(self.fs_error(what, e)),
            None => Err(NodeError::Failed(format!(
                "{what} on node {}: the agent ended without an answer (exit {}){}",
                self.info.name,
                status.status,
                if status.stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {}", status.stderr)
                }
            ))),
        }
    }
}

/// A sandbox refusal as a node error of the same kind, saying `msg`.
pub fn fs_error(msg: String, e: &FsError) -> NodeError {
    match e {
        FsError::NotFound(_) => NodeError::NotFound(msg),
        FsError::Denied(_) => NodeError::Denied(msg),
        FsError::Invalid(_) => NodeError::InvalidArgument(msg),
        FsError::Io(_) => NodeError::Io(msg),
    }
}

fn unexpected(reply: &Reply) -> NodeError {
    NodeError::Failed(format!("the agent gave an unexpected reply: {reply:?}"))
}

/// Where the agent binary is on this machine: beside the host's own, or
/// `$STACKHOST_AGENT`.
pub(crate) fn agent_path() -> Result<PathBuf, String> {
    match std::env::var_os("STACKHOST_AGENT") {
        Some(p) => Ok(PathBuf::from(p)),
        None => Ok(std::env::current_exe()
            .map_err(|e| format!("cannot find the host's own binary: {e}"))?
            .with_file_name("stackhost-agent")),
    }
}

/// The agent binary (see [`agent_path`]), read once, with its sha256.
fn local_agent() -> Result<&'static (Vec<u8>, String), NodeError> {
    static AGENT: OnceLock<Result<(Vec<u8>, String), String>> = OnceLock::new();
    AGENT
        .get_or_init(|| {
            let path = agent_path()?;
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read {} ({e}); it is built beside stackhost (cargo build -p stackhost), or set STACKHOST_AGENT",
                    path.display()
                )
            })?;
            let digest = hex::encode(sha2::Sha256::digest(&bytes));
            Ok((bytes, digest))
        })
        .as_ref()
        .map_err(|e| NodeError::Failed(format!("stackhost-agent: {e}")))
}

/// Where the agent lives on a node: root's copy under /var/lib, another
/// login's under its home; keyed by digest, so versions never mix.
const FIND_AGENT: &str = r#"if [ "$(id -u)" = 0 ]; then d=/var/lib/stackhost/agent; else d="${HOME:?}/.cache/stackhost/agent"; fi
p="$d/stackhost-agent-$1"
if [ -x "$p" ] && [ "$(sha256sum < "$p" | cut -c1-64)" = "$1" ]; then echo "ok $p"; else echo "missing $p"; fi"#;

/// Copy the agent to "$1", checking its digest "$2" before it is used.
const COPY_AGENT: &str = r#"set -e; umask 077
d=$(dirname -- "$1"); mkdir -p -- "$d"; chmod 700 -- "$d"
t=$(mktemp "$d/.upload.XXXXXX"); trap 'rm -f -- "$t"' EXIT
cat > "$t"
[ "$(sha256sum < "$t" | cut -c1-64)" = "$2" ] || { echo "the copied agent does not match its sha256" >&2; exit 1; }
chmod 700 -- "$t"; mv -f -- "$t" "$1"; trap - EXIT"#;

async fn install_agent(ssh: &super::ssh::SshNode, node: &str) -> Result<String, NodeError> {
    let (bytes, digest) = local_agent()?;
    let found = ssh
        .script("find agent", FIND_AGENT, &[digest], None)
        .await?;
    let found = String::from_utf8_lossy(&found);
    let (state, path) = found.trim().split_once(' ').ok_or_else(|| {
        NodeError::Failed(format!("finding stackhost-agent on node {node}: `{found}`"))
    })?;
    if state != "ok" {
        ssh.script("copy agent", COPY_AGENT, &[path, digest], Some(bytes))
            .await?;
    }
    Ok(path.to_string())
}
