//! The `fs` Host impl: every call is scope-checked; under `--dry-run`
//! mutating calls are recorded after the check instead of being made.

use super::scope::{Access, Final, check};
use crate::bindings::WitError;
use crate::bindings::stackhost::host::fs::{self, DirEntry, FileType, Metadata};
use crate::caps::CapView;
use crate::cluster::{Node, NodeError, local::FileKind};
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
        last: Final,
    ) -> Result<(Arc<Node>, PathBuf), WitError> {
        let node = self.node(node)?;
        let resolved = check(&self.call.grant, &node, path, access, last).await?;
        Ok((node, resolved))
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
        self.call.refuse_mutation(&node.info.name, call)?;
        if self.call.dry_run {
            self.call.record(&node.info.name, call, detail);
            return Ok(T::default());
        }
        Ok(op.await?)
    }
}

impl fs::Host for CapView<'_> {
    async fn stat(&mut self, node: String, path: String) -> R<Option<Metadata>> {
        let this = &*self;
        this.timed(async {
            let (node, p) = this.scoped(&node, &path, Access::Read, Final::Keep).await?;
            Ok(node.transport.stat(&p).await?.map(|s| Metadata {
                file_type: kind(s.kind),
                size: s.size,
                mode: s.mode,
                uid: s.uid,
                gid: s.gid,
                modified: s.modified,
            }))
        })
        .await
    }

    async fn read(&mut self, node: String, path: String, max_bytes: u64) -> R<Vec<u8>> {
        let this = &*self;
        this.timed(async {
            let (node, p) = this
                .scoped(&node, &path, Access::Read, Final::Follow)
                .await?;
            Ok(node.transport.read(&p, max_bytes).await?)
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
            let (node, p) = this
                .scoped(&node, &path, Access::Write, Final::Follow)
                .await?;
            let detail = format!("{path} ({} bytes)", data.len());
            this.unless_recorded(
                &node,
                "fs.write",
                detail,
                node.transport.write(&p, &data, mode),
            )
            .await
        })
        .await
    }

    async fn list_dir(&mut self, node: String, path: String) -> R<Vec<DirEntry>> {
        let this = &*self;
        this.timed(async {
            let (node, p) = this
                .scoped(&node, &path, Access::Read, Final::Follow)
                .await?;
            let entries = node.transport.list_dir(&p).await?;
            Ok(entries
                .into_iter()
                .map(|(name, k)| DirEntry {
                    name,
                    file_type: kind(k),
                })
                .collect())
        })
        .await
    }

    async fn mkdir(&mut self, node: String, path: String, recursive: bool) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, p) = this
                .scoped(&node, &path, Access::Write, Final::Follow)
                .await?;
            this.unless_recorded(
                &node,
                "fs.mkdir",
                path.clone(),
                node.transport.mkdir(&p, recursive),
            )
            .await
        })
        .await
    }

    async fn rename(&mut self, node: String, source: String, target: String) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, from) = this
                .scoped(&node, &source, Access::Write, Final::Keep)
                .await?;
            let (_, to) = this
                .scoped(&node.info.name, &target, Access::Write, Final::Keep)
                .await?;
            let detail = format!("{source} -> {target}");
            this.unless_recorded(
                &node,
                "fs.rename",
                detail,
                node.transport.rename(&from, &to),
            )
            .await
        })
        .await
    }

    async fn remove(&mut self, node: String, path: String, recursive: bool) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, p) = this
                .scoped(&node, &path, Access::Write, Final::Keep)
                .await?;
            let detail = if recursive {
                format!("{path} (recursively)")
            } else {
                path.clone()
            };
            this.unless_recorded(
                &node,
                "fs.remove",
                detail,
                node.transport.remove(&p, recursive),
            )
            .await
        })
        .await
    }

    async fn symlink(&mut self, node: String, target: String, link: String) -> R<()> {
        let this = &*self;
        this.timed(async {
            let (node, l) = this
                .scoped(&node, &link, Access::Write, Final::Keep)
                .await?;
            // The target must lie in the write scope too, so a plugin cannot
            // plant a link that hands another program a way out.
            let (_, t) = this
                .scoped(&node.info.name, &target, Access::Write, Final::Follow)
                .await?;
            let detail = format!("{link} -> {target}");
            this.unless_recorded(&node, "fs.symlink", detail, node.transport.symlink(&t, &l))
                .await
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
            let (from_node, from) = this.scoped(&source_node, &source, Access::Read, Final::Follow).await?;
            let (to_node, to) = this.scoped(&target_node, &target, Access::Write, Final::Follow).await?;
            if !Arc::ptr_eq(&from_node, &to_node) {
                return Err(WitError::Unsupported(
                    "copying between two different nodes is not built yet; stream it through an artifact instead (archive add-path, then reader unpack)".into(),
                ));
            }
            let detail = format!("{source_node}:{source} -> {target}");
            this.unless_recorded(&to_node, "fs.copy", detail, from_node.transport.copy_within(&from, &to)).await
        })
        .await
    }
}
