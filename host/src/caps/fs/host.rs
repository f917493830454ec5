//! The `fs` Host impl: every call is scope-checked; under `--dry-run`
//! mutating calls are recorded after the check instead of being made.

use super::scope::{Access, Final, check};
use crate::bindings::WitError;
use crate::bindings::stackhost::host::fs::{self, DirEntry, FileType, Metadata};
use crate::caps::CapView;
use crate::cluster::{LocalNode, Node, Transport, local::FileKind};
use std::path::PathBuf;
use std::sync::Arc;

type R<T> = wasmtime::Result<Result<T, WitError>>;

fn kind(k: FileKind) -> FileType {
    match k {
        FileKind::File => FileType::File,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Other => FileType::Other,
    }
}

fn local(node: &Node) -> &LocalNode {
    match &node.transport {
        Transport::Local(l) => l,
    }
}

impl CapView<'_> {
    fn scoped(
        &self,
        node: &str,
        path: &str,
        access: Access,
        last: Final,
    ) -> Result<(Arc<Node>, PathBuf), WitError> {
        let node = self.node(node)?;
        let resolved = check(&self.call.grant, &node, path, access, last)?;
        Ok((node, resolved))
    }

    /// Under `--dry-run`, record the mutation and report that it was.
    fn recorded(&self, node: &Node, call: &str, detail: String) -> bool {
        if self.call.dry_run {
            self.call.record(&node.info.name, call, detail);
        }
        self.call.dry_run
    }
}

impl fs::Host for CapView<'_> {
    async fn stat(&mut self, node: String, path: String) -> R<Option<Metadata>> {
        Ok((|| {
            let (node, p) = self.scoped(&node, &path, Access::Read, Final::Keep)?;
            Ok(local(&node).stat(&p)?.map(|s| Metadata {
                file_type: kind(s.kind),
                size: s.size,
                mode: s.mode,
                uid: s.uid,
                gid: s.gid,
                modified: s.modified,
            }))
        })())
    }

    async fn read(&mut self, node: String, path: String, max_bytes: u64) -> R<Vec<u8>> {
        Ok((|| {
            let (node, p) = self.scoped(&node, &path, Access::Read, Final::Follow)?;
            Ok(local(&node).read(&p, max_bytes)?)
        })())
    }

    async fn write(
        &mut self,
        node: String,
        path: String,
        data: Vec<u8>,
        mode: Option<u32>,
    ) -> R<()> {
        Ok((|| {
            let (node, p) = self.scoped(&node, &path, Access::Write, Final::Follow)?;
            if self.recorded(&node, "fs.write", format!("{path} ({} bytes)", data.len())) {
                return Ok(());
            }
            Ok(local(&node).write(&p, &data, mode)?)
        })())
    }

    async fn list_dir(&mut self, node: String, path: String) -> R<Vec<DirEntry>> {
        Ok((|| {
            let (node, p) = self.scoped(&node, &path, Access::Read, Final::Follow)?;
            let entries = local(&node).list_dir(&p)?;
            Ok(entries
                .into_iter()
                .map(|(name, k)| DirEntry {
                    name,
                    file_type: kind(k),
                })
                .collect())
        })())
    }

    async fn mkdir(&mut self, node: String, path: String, recursive: bool) -> R<()> {
        Ok((|| {
            let (node, p) = self.scoped(&node, &path, Access::Write, Final::Follow)?;
            if self.recorded(&node, "fs.mkdir", path.clone()) {
                return Ok(());
            }
            Ok(local(&node).mkdir(&p, recursive)?)
        })())
    }

    async fn rename(&mut self, node: String, source: String, target: String) -> R<()> {
        Ok((|| {
            let (node, from) = self.scoped(&node, &source, Access::Write, Final::Keep)?;
            let (_, to) = self.scoped(&node.info.name, &target, Access::Write, Final::Keep)?;
            if self.recorded(&node, "fs.rename", format!("{source} -> {target}")) {
                return Ok(());
            }
            Ok(local(&node).rename(&from, &to)?)
        })())
    }

    async fn remove(&mut self, node: String, path: String, recursive: bool) -> R<()> {
        Ok((|| {
            let (node, p) = self.scoped(&node, &path, Access::Write, Final::Keep)?;
            let what = if recursive {
                format!("{path} (recursively)")
            } else {
                path.clone()
            };
            if self.recorded(&node, "fs.remove", what) {
                return Ok(());
            }
            Ok(local(&node).remove(&p, recursive)?)
        })())
    }

    async fn symlink(&mut self, node: String, target: String, link: String) -> R<()> {
        Ok((|| {
            let (node, l) = self.scoped(&node, &link, Access::Write, Final::Keep)?;
            // The target must lie in the write scope too, so a plugin cannot
            // plant a link that hands another program a way out.
            let (_, t) = self.scoped(&node.info.name, &target, Access::Write, Final::Follow)?;
            if self.recorded(&node, "fs.symlink", format!("{link} -> {target}")) {
                return Ok(());
            }
            Ok(local(&node).symlink(&t, &l)?)
        })())
    }

    async fn copy(
        &mut self,
        source_node: String,
        source: String,
        target_node: String,
        target: String,
    ) -> R<u64> {
        let call = self.call;
        let result = call
            .timed(async {
                let (from_node, from) =
                    self.scoped(&source_node, &source, Access::Read, Final::Follow)?;
                let (to_node, to) =
                    self.scoped(&target_node, &target, Access::Write, Final::Follow)?;
                if self.recorded(
                    &to_node,
                    "fs.copy",
                    format!("{source_node}:{source} -> {target}"),
                ) {
                    return Ok(0);
                }
                match (&from_node.transport, &to_node.transport) {
                    (Transport::Local(l), Transport::Local(_)) => {
                        tokio::task::block_in_place(|| l.copy(&from, &to)).map_err(WitError::from)
                    }
                }
            })
            .await;
        Ok(result)
    }
}
