//! The `fs` Host impl: every call is scope-checked and then carried out
//! beneath its pinned grant root on the node (`crate::sandbox`); under
//! `--dry-run` mutating calls are recorded after the check instead.

use super::Fs;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

use super::diff;
use super::scope::{Access, Checked, check, link_policy};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::fs::{self, DirEntry, FileType, Metadata};
use crate::caps::ctx::CapView;
use crate::cluster::files::{Input, Output};
use crate::cluster::{Node, NodeError};
use crate::sandbox::wire::{Loc, Reply, Request};
use crate::sandbox::{FileKind, ops::check_mode};
use std::path::PathBuf;
use std::sync::Arc;

type R<T> = wasmtime::Result<Result<T, WitError>>;

/// Most bytes one `fs.read` returns, whatever `max-bytes` asks for:
/// bigger files move with `fs.copy` or the archive, never through a
/// plugin's memory.
pub const READ_CAP: u64 = 16 << 20;
/// Most bytes one `fs.write` takes.
pub const WRITE_CAP: usize = 16 << 20;

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::File,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Other => FileType::Other,
    }
}

fn unexpected(reply: Reply) -> WitError {
    WitError::Failed(format!("the node gave an unexpected reply: {reply:?}"))
}

impl CapView<'_> {
    /// Run one call, counting its time as host time (not the plugin's CPU).
    async fn timed<T>(&self, call: impl Future<Output = Result<T, WitError>>) -> R<T> {
        Ok(self.call.timed(call).await)
    }

    async fn scoped(
        &self,
        node: &str,
        path: &str,
        access: Access,
    ) -> Result<(Arc<Node>, Checked), WitError> {
        let node = self.node(node)?;
        let checked = check(&self.call.grant, &node, path, access).await?;
        Ok((node, checked))
    }

    /// Make the mutation `op`, or under `--dry-run` record it (the future
    /// is then dropped unpolled, so nothing happens on the node).
    async fn unless_recorded<T: Default>(
        &self,
        node: &Node,
        call: &str,
        detail: String,
        op: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, WitError> {
        self.unless_recorded_with(node, call, detail, None, op)
            .await
    }

    /// [`Self::unless_recorded`], recording `diff` with the mutation.
    async fn unless_recorded_with<T: Default>(
        &self,
        node: &Node,
        call: &str,
        detail: String,
        diff: Option<String>,
        op: impl Future<Output = Result<T, NodeError>>,
    ) -> Result<T, WitError> {
        self.call.refuse_mutation(&node.info.name, call)?;
        if self.call.dry_run {
            self.call.record_diff(&node.info.name, call, detail, diff);
            return Ok(T::default());
        }
        Ok(op.await?)
    }
}

/// What `loc` on `node` holds now, for the diff of a recorded write. The
/// host reads it for the operator; the plugin never sees it.
async fn current(node: &Node, path: &str, loc: &Loc) -> diff::Current {
    let what = format!("fs.write `{path}` (reading it for the dry-run diff)");
    let stat = Request::Stat {
        at: loc.clone(),
        follow: false,
    };
    let st = match node.files(&what, stat, Input::None, None).await {
        Ok((Reply::Stat(Some(st)), _)) => st,
        Ok((Reply::Stat(None), _)) => return diff::Current::Missing,
        _ => return diff::Current::Other("unreadable"),
    };
    match st.kind {
        FileKind::File if st.size <= diff::MAX_TEXT_DIFF => {}
        FileKind::File => return diff::Current::Large(st.size),
        FileKind::Directory => return diff::Current::Other("a directory"),
        FileKind::Symlink => return diff::Current::Other("a symlink (it would be replaced)"),
        FileKind::Other => return diff::Current::Other("not a regular file"),
    }
    let max = diff::MAX_TEXT_DIFF;
    let read = Request::Read {
        at: loc.clone(),
        max,
    };
    match node
        .files(&what, read, Input::None, Some(Output::Collect(max)))
        .await
    {
        Ok((Reply::Bytes(_), data)) => diff::Current::Small(data),
        // Grown past the cap since the stat, or gone: say its size.
        _ => diff::Current::Large(st.size),
    }
}

/// Run `req` on `node` and expect [`Reply::Done`].
async fn done(node: &Node, what: String, req: Request) -> Result<(), NodeError> {
    match node.files(&what, req, Input::None, None).await?.0 {
        Reply::Done => Ok(()),
        other => Err(NodeError::Failed(format!(
            "{what}: unexpected reply {other:?}"
        ))),
    }
}

impl fs::Host for CapView<'_> {
    async fn stat(&mut self, node: String, path: String) -> R<Option<Metadata>> {
        let this = &*self;
        this.timed(async {
            let (node, c) = this.scoped(&node, &path, Access::Read).await?;
            let what = format!("fs.stat `{path}`");
            match node
                .files(
                    &what,
                    Request::Stat {
                        at: c.loc,
                        follow: false,
                    },
                    Input::None,
                    None,
                )
                .await?
                .0
            {
                Reply::Stat(s) => Ok(s.map(|s| Metadata {
                    file_type: kind(s.kind),
                    size: s.size,
                    mode: s.mode,
                    uid: s.uid,
                    gid: s.gid,
                    modified: s.modified,
                })),
                other => Err(unexpected(other)),
            }
        })
        .await
    }

    async fn read(&mut self, node: String, path: String, max_bytes: u64) -> R<Vec<u8>> {
        let this = &*self;
        this.timed(async {
            let (node, c) = this.scoped(&node, &path, Access::Read).await?;
            let max = max_bytes.min(READ_CAP);
            let what = format!("fs.read `{path}`");
            let req = Request::Read { at: c.loc, max };
            match node
                .files(&what, req, Input::None, Some(Output::Collect(max)))
                .await
            {
                Ok((Reply::Bytes(_), data)) => Ok(data),
                Ok((other, _)) => Err(unexpected(other)),
                Err(NodeError::InvalidArgument(m)) if max < max_bytes => {
                    Err(WitError::InvalidArgument(format!(
                        "{m} (fs.read returns at most {READ_CAP} bytes)"
                    )))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await
    }

    async fn write(
        &mut self,
        node: String,
        path: String,
        data: Vec<u8>,
        mode: Option<u32>,
    ) -> R<()> {
        let this = &*self;
        this.timed(async {
            if data.len() > WRITE_CAP {
                return Err(WitError::InvalidArgument(format!(
                    "fs.write of `{path}` is {} bytes, more than the {WRITE_CAP} bytes fs.write takes; move big files with fs.copy or archive",
                    data.len()
                )));
            }
            if let Some(m) = mode {
                check_mode(m).map_err(|e| WitError::PermissionDenied(format!("fs.write `{path}`: {e}")))?;
            }
            let (node, c) = this.scoped(&node, &path, Access::Write).await?;
            let detail = format!("{path} ({} bytes)", data.len());
            let what = format!("fs.write `{path}`");
            let len = data.len() as u64;
            let req = Request::Write { at: c.loc.clone(), mode, len };
            let diff = if this.call.dry_run
                && this.call.refuse_mutation(&node.info.name, "fs.write").is_ok()
            {
                Some(diff::of_write(&path, &current(&node, &path, &c.loc).await, &data))
            } else {
                None
            };
            let op = async {
                node.files(&what, req, Input::Bytes(data), None).await.map(drop)
            };
            this.unless_recorded_with(&node, "fs.write", detail, diff, op).await
        })
        .await
    }

    async fn list_dir(&mut self, node: String, path: String) -> R<Vec<DirEntry>> {
        let this = &*self;
        this.timed(async {
            let (node, c) = this.scoped(&node, &path, Access::Read).await?;
            let what = format!("fs.list-dir `{path}`");
            match node
                .files(&what, Request::List { at: c.loc }, Input::None, None)
                .await?
                .0
            {
                Reply::List(entries) => Ok(entries
                    .into_iter()
                    .map(|e| DirEntry {
                        name: e.name.to_string_lossy().into_owned(),
                        file_type: kind(e.kind),
                    })
                    .collect()),
                other => Err(unexpected(other)),
            }
        })
        .await
    }

    async fn mkdir(&mut self, node: String, path: String, recursive: bool) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, c) = this.scoped(&node, &path, Access::Write).await?;
            let req = Request::Mkdir {
                at: c.loc,
                recursive,
            };
            let op = done(&node, format!("fs.mkdir `{path}`"), req);
            this.unless_recorded(&node, "fs.mkdir", path.clone(), op)
                .await
        })
        .await
    }

    async fn rename(&mut self, node: String, source: String, target: String) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, from) = this.scoped(&node, &source, Access::Write).await?;
            let (_, to) = this.scoped(&node.info.name, &target, Access::Write).await?;
            let detail = format!("{source} -> {target}");
            let req = Request::Rename {
                from: from.loc,
                to: to.loc,
            };
            let op = done(&node, format!("fs.rename `{source}`"), req);
            this.unless_recorded(&node, "fs.rename", detail, op).await
        })
        .await
    }

    async fn remove(&mut self, node: String, path: String, recursive: bool) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, c) = this.scoped(&node, &path, Access::Write).await?;
            let detail = if recursive {
                format!("{path} (recursively)")
            } else {
                path.clone()
            };
            let req = Request::Remove {
                at: c.loc,
                recursive,
            };
            let op = done(&node, format!("fs.remove `{path}`"), req);
            this.unless_recorded(&node, "fs.remove", detail, op).await
        })
        .await
    }

    async fn symlink(&mut self, node: String, target: String, link: String) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, l) = this.scoped(&node, &link, Access::Write).await?;
            // The target must stay in the write scope, so a plugin cannot
            // plant a link that hands another program a way out.
            let target_path = PathBuf::from(&target);
            if target.contains('\0') || !link_policy(&this.call.grant).allows(&l.loc.rel, &target_path) {
                return Err(WitError::PermissionDenied(format!(
                    "fs.symlink `{link}` -> `{target}` on node {}: the target is outside the write grant (a relative target may not climb above the link's grant root)",
                    node.info.name
                )));
            }
            let detail = format!("{link} -> {target}");
            let req = Request::Symlink { at: l.loc, target: target_path };
            let op = done(&node, format!("fs.symlink `{link}`"), req);
            this.unless_recorded(&node, "fs.symlink", detail, op).await
        })
        .await
    }

    async fn copy(
        &mut self,
        source_node: String,
        source: String,
        target_node: String,
        target: String,
    ) -> R<u64> {
        let this = &*self;
        this.timed(async {
            let (from_node, from) = this.scoped(&source_node, &source, Access::Read).await?;
            let (to_node, to) = this.scoped(&target_node, &target, Access::Write).await?;
            if !Arc::ptr_eq(&from_node, &to_node) {
                return Err(WitError::Unsupported(
                    "copying between two different nodes is not built yet; stream it through an artifact instead (archive add-path, then reader unpack)".into(),
                ));
            }
            let detail = format!("{source_node}:{source} -> {target}");
            let req = Request::Copy { from: from.loc, to: to.loc, links: link_policy(&this.call.grant) };
            let what = format!("fs.copy `{source}` to `{target}`");
            let op = async {
                match to_node.files(&what, req, Input::None, None).await?.0 {
                    Reply::Bytes(n) => Ok(n),
                    other => Err(NodeError::Failed(format!("{what}: unexpected reply {other:?}"))),
                }
            };
            this.unless_recorded(&to_node, "fs.copy", detail, op).await
        })
        .await
    }
}

impl HasData for Fs {
    type Data<'a> = CapView<'a>;
}

impl Link for Fs {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        fs::add_to_linker::<T, Fs>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}
