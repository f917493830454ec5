//! The `archive` Host impls: scope checks, then the bytes stream between
//! a program on the node and the artifact on a blocking thread.

use super::Archive;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

use crate::artifact::handle::{ArtifactReader, ArtifactWriter};
use crate::artifact::{self, ArtifactError, Compression as ArtCompression};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::archive::{
    Compression, Host, HostReader, HostWriter, Item, Listed, Mismatch,
};
use crate::caps::ctx::CallCtx;
use crate::caps::ctx::CapView;
use crate::caps::ctx::CapsCtxView;
use crate::caps::fs::scope::{self, Access};
use crate::caps::roles_allow;
use crate::cluster::Node;
use crate::cluster::files::{Input, Output, RECEIVER_GONE};
use crate::cluster::stream::{self, ChunkReader, ChunkWriter};
use crate::sandbox::FileKind;
use crate::sandbox::path::normalize;
use crate::sandbox::wire::{Reply, Request};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use wasmtime::component::Resource;

type R<T> = wasmtime::Result<Result<T, WitError>>;

pub(crate) fn art_err(e: ArtifactError) -> WitError {
    match e {
        ArtifactError::InvalidName(m) => WitError::InvalidArgument(m),
        ArtifactError::NotFound(m) => WitError::NotFound(m),
        ArtifactError::Corrupt(m) => WitError::Failed(m),
        ArtifactError::Io(m) => WitError::Io(m),
    }
}

/// Run synchronous artifact work on a blocking thread.
pub(crate) async fn run_blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, WitError> + Send + 'static,
) -> Result<T, WitError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| WitError::Failed(format!("archive worker failed: {e}")))?
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A path on the operator's host within the archive grant: the grant
/// root it lies under, pinned for this call, and the rest of the path.
pub(crate) struct HostPath {
    pub root: crate::sandbox::Root,
    pub rel: PathBuf,
    /// The plugin's path, normalised, for messages and records.
    pub shown: PathBuf,
}

impl HostPath {
    /// The directory the path names an entry of, created if missing
    /// (beneath the root, never through a link leaving it), and the
    /// entry's name.
    fn parent_dir(&self) -> Result<(std::os::fd::OwnedFd, std::ffi::OsString), WitError> {
        let full = self.root.rel(&self.rel);
        let name = full.file_name().ok_or_else(|| {
            WitError::InvalidArgument(format!(
                "archive path `{}` is the grant root itself; give a file name",
                self.shown.display()
            ))
        })?;
        let dir =
            crate::sandbox::ops::mkdir_all(self.root.fd(), full.parent().unwrap_or(Path::new("")))
                .map_err(|e| fs_err(&self.shown, e))?;
        Ok((dir, name.to_os_string()))
    }
}

fn fs_err(shown: &Path, e: crate::sandbox::FsError) -> WitError {
    let msg = format!("archive path `{}`: {e}", shown.display());
    crate::cluster::files::fs_error(msg, &e).into()
}

/// Check a path on the operator's host against the archive grant, and pin
/// the grant root it lies under.
fn host_path(call: &CallCtx, path: &str) -> Result<HostPath, WitError> {
    let Some(grant) = call.grant.get::<super::Archive>() else {
        return Err(WitError::PermissionDenied(
            "the plugin has no archive grant".into(),
        ));
    };
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(WitError::InvalidArgument(format!(
            "archive path `{path}` is not absolute"
        )));
    }
    let outside = || {
        WitError::PermissionDenied(format!(
            "archive path `{path}` is outside the grant (archive paths: {})",
            grant.paths.join(", ")
        ))
    };
    let shown = normalize(p)
        .filter(|_| !path.contains('\0'))
        .ok_or_else(outside)?;
    let root = grant
        .paths
        .iter()
        .filter_map(|r| normalize(Path::new(r)))
        .filter(|r| shown.starts_with(r))
        .max_by_key(|r| r.components().count())
        .ok_or_else(outside)?;
    let rel = shown
        .strip_prefix(&root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let root = crate::sandbox::Root::pin(&root).map_err(|e| fs_err(&root, e))?;
    Ok(HostPath { root, rel, shown })
}

/// The node, checked against the archive grant's roles.
fn archive_node(call: &CallCtx, name: &str) -> Result<Arc<Node>, WitError> {
    let node = CapView { call }.node(name)?;
    let roles = call
        .grant
        .get::<super::Archive>()
        .map(|a| a.roles.as_slice())
        .unwrap_or_default();
    if !roles_allow(roles, &node.info.roles) {
        return Err(WitError::PermissionDenied(format!(
            "archive on node {name} is outside the grant (archive roles: {})",
            roles.join(", ")
        )));
    }
    Ok(node)
}

fn item(i: artifact::Item) -> Item {
    Item {
        name: i.name,
        size: i.size,
        sha256: i.sha256,
    }
}

/// Mark the writer incomplete after a failure on the node's side.
fn poison(inner: &Mutex<Option<artifact::Writer>>, why: &str) {
    if let Some(w) = lock(inner).as_mut() {
        w.poison(why);
    }
}

/// Stream `path` on `node` into the writer under `name`.
// Long because it is one stream from node to artifact, with the dry-run
// record, the scope check and the writer poisoned on each way it can fail.
async fn add_path(
    call: &CallCtx,
    writer: (PathBuf, Option<Arc<Mutex<Option<artifact::Writer>>>>),
    node: &str,
    path: &str,
    name: String,
) -> Result<Vec<Item>, WitError> {
    artifact::check_name(&name).map_err(art_err)?;
    let node = archive_node(call, node)?;
    let checked = scope::check(&call.grant, &node, path, Access::Read).await?;
    let (artifact_path, inner) = writer;
    let Some(inner) = inner else {
        call.record(
            &node.info.name,
            "archive.add",
            format!("{path} as {name} into {}", artifact_path.display()),
        );
        return Ok(Vec::new());
    };
    let what = format!("archive.add-path `{path}`");
    let stat = match node
        .files(
            &what,
            Request::Stat {
                at: checked.loc.clone(),
                follow: true,
            },
            Input::None,
            None,
        )
        .await?
        .0
    {
        Reply::Stat(Some(s)) => s,
        Reply::Stat(None) => {
            return Err(WitError::NotFound(format!(
                "{path} does not exist on node {}",
                node.info.name
            )));
        }
        other => {
            return Err(WitError::Failed(format!(
                "{what}: unexpected reply {other:?}"
            )));
        }
    };
    if !matches!(stat.kind, FileKind::Directory | FileKind::File) {
        return Err(WitError::InvalidArgument(format!(
            "{path} on node {} is neither a file nor a directory",
            node.info.name
        )));
    }
    let (tx, rx) = stream::chunks();
    // Dropped with this future (a timeout, SIGINT): the consumer stops at
    // its next read and the unfinished artifact is removed then.
    let stop = stream::StopFlag::default();
    let _stop = stop.on_drop();
    let consumer = {
        let inner = inner.clone();
        let name = name.clone();
        let kind = stat.kind;
        let size = stat.size;
        tokio::task::spawn_blocking(move || {
            let mut guard = lock(&inner);
            let w = guard
                .as_mut()
                .ok_or_else(|| WitError::Failed("the artifact is already finished".into()))?;
            let reader = ChunkReader::new(rx).stop_on(stop);
            match kind {
                FileKind::Directory => w.add_tar(&name, reader).map(|(items, _)| items),
                _ => w.add_reader(&name, size, reader).map(|i| vec![i]),
            }
            .map_err(art_err)
        })
    };
    let status = node
        .files(
            &what,
            Request::Pack { at: checked.loc },
            Input::None,
            Some(Output::Stream(tx)),
        )
        .await;
    let added = consumer
        .await
        .map_err(|e| WitError::Failed(format!("archive worker failed: {e}")))?;
    let failed = match status {
        // The consumer stopped taking the data (disk full, say): its own
        // error below is the cause.
        Err(e) if e.to_string().contains(RECEIVER_GONE) && added.is_err() => None,
        Err(e) => Some(WitError::from(e)),
        Ok(_) => None,
    };
    match (failed, added) {
        (None, Ok(items)) => Ok(items.into_iter().map(item).collect()),
        // The node's failure is the cause (the consumer only saw the
        // stream end); what went in is incomplete.
        (Some(e), _) => {
            poison(&inner, &crate::caps::describe_error(&e));
            Err(e)
        }
        (None, Err(e)) => Err(e),
    }
}

impl HostWriter for CapsCtxView<'_> {
    async fn add_path(
        &mut self,
        this: Resource<ArtifactWriter>,
        node: String,
        path: String,
        name: String,
    ) -> R<Vec<Item>> {
        let w = self.table.get(&this)?;
        let writer = (w.path.clone(), w.inner.clone());
        let call = self.call;
        Ok(call.timed(add_path(call, writer, &node, &path, name)).await)
    }

    async fn add_bytes(
        &mut self,
        this: Resource<ArtifactWriter>,
        name: String,
        data: Vec<u8>,
    ) -> R<Item> {
        let w = self.table.get(&this)?;
        let (path, inner) = (w.path.clone(), w.inner.clone());
        let call = self.call;
        Ok(call
            .timed(async move {
                artifact::check_name(&name).map_err(art_err)?;
                let Some(inner) = inner else {
                    call.record(
                        "local",
                        "archive.add",
                        format!("{name} ({} bytes) into {}", data.len(), path.display()),
                    );
                    return Ok(Item {
                        name,
                        size: data.len() as u64,
                        sha256: String::new(),
                    });
                };
                run_blocking(move || {
                    let mut guard = lock(&inner);
                    let w = guard.as_mut().ok_or_else(|| {
                        WitError::Failed("the artifact is already finished".into())
                    })?;
                    w.add_reader(&name, data.len() as u64, &data[..])
                        .map(item)
                        .map_err(art_err)
                })
                .await
            })
            .await)
    }

    async fn finish(&mut self, this: Resource<ArtifactWriter>) -> R<Vec<Item>> {
        let w = self.table.delete(this)?;
        let call = self.call;
        Ok(call
            .timed(async move {
                let Some(inner) = w.inner else {
                    call.record(
                        "local",
                        "archive.finish",
                        format!("write {}", w.path.display()),
                    );
                    return Ok(Vec::new());
                };
                run_blocking(move || {
                    let writer = lock(&inner).take().ok_or_else(|| {
                        WitError::Failed("the artifact is already finished".into())
                    })?;
                    writer
                        .finish()
                        .map(|items| items.into_iter().map(item).collect())
                        .map_err(art_err)
                })
                .await
            })
            .await)
    }

    async fn drop(&mut self, rep: Resource<ArtifactWriter>) -> wasmtime::Result<()> {
        // Dropping the last handle on an unfinished writer removes its
        // temporary file (artifact::Writer's Drop).
        self.table.delete(rep)?;
        Ok(())
    }
}

impl HostReader for CapsCtxView<'_> {
    async fn items(&mut self, this: Resource<ArtifactReader>) -> R<Vec<Item>> {
        let inner = self.table.get(&this)?.inner.clone();
        Ok(self
            .call
            .timed(run_blocking(move || {
                lock(&inner)
                    .items()
                    .map(|v| v.into_iter().map(item).collect())
                    .map_err(art_err)
            }))
            .await)
    }

    async fn read(
        &mut self,
        this: Resource<ArtifactReader>,
        name: String,
        max_bytes: u64,
    ) -> R<Vec<u8>> {
        let inner = self.table.get(&this)?.inner.clone();
        Ok(self
            .call
            .timed(run_blocking(move || {
                // Like fs.read: big items move with unpack, not through
                // the plugin's memory.
                let max = max_bytes.min(crate::caps::fs::READ_CAP);
                lock(&inner).read(&name, max).map_err(art_err)
            }))
            .await)
    }

    async fn verify(&mut self, this: Resource<ArtifactReader>) -> R<Vec<Mismatch>> {
        let inner = self.table.get(&this)?.inner.clone();
        Ok(self
            .call
            .timed(run_blocking(move || {
                lock(&inner)
                    .verify()
                    .map(|v| {
                        v.into_iter()
                            .map(|m| Mismatch {
                                name: m.name,
                                expected_sha256: m.expected,
                                actual_sha256: m.actual,
                            })
                            .collect()
                    })
                    .map_err(art_err)
            }))
            .await)
    }

    async fn unpack(
        &mut self,
        this: Resource<ArtifactReader>,
        prefix: String,
        node: String,
        path: String,
    ) -> R<u64> {
        let inner = self.table.get(&this)?.inner.clone();
        let call = self.call;
        Ok(call.timed(unpack(call, inner, prefix, &node, &path)).await)
    }

    async fn extract(
        &mut self,
        this: Resource<ArtifactReader>,
        name: String,
        path: String,
    ) -> R<u64> {
        let inner = self.table.get(&this)?.inner.clone();
        let call = self.call;
        let extracted = async {
            let at = host_path(call, &path)?;
            call.refuse_mutation("local", "archive.extract")?;
            if call.dry_run {
                call.record(
                    "local",
                    "archive.extract",
                    format!("{name} to {}", at.shown.display()),
                );
                return Ok(0);
            }
            let (dir, file) = at.parent_dir()?;
            let shown = at.shown.clone();
            run_blocking(move || {
                artifact::extract_in(&inner, &name, dir, &file, &shown).map_err(art_err)
            })
            .await
        };
        Ok(call.timed(extracted).await)
    }

    async fn drop(&mut self, rep: Resource<ArtifactReader>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

async fn unpack(
    call: &CallCtx,
    inner: Arc<Mutex<artifact::Reader>>,
    prefix: String,
    node: &str,
    path: &str,
) -> Result<u64, WitError> {
    let node = archive_node(call, node)?;
    let checked = scope::check(&call.grant, &node, path, Access::Write).await?;
    call.refuse_mutation(&node.info.name, "archive.unpack")?;
    if call.dry_run {
        call.record(
            &node.info.name,
            "archive.unpack",
            format!(
                "{prefix} from {} into {path}",
                lock(&inner).path().display()
            ),
        );
        return Ok(0);
    }
    let (tx, rx) = stream::chunks();
    let producer = tokio::task::spawn_blocking(move || {
        lock(&inner)
            .unpack(&prefix, ChunkWriter::new(tx))
            .map_err(art_err)
    });
    let what = format!("archive.unpack into `{path}`");
    let req = Request::Unpack {
        at: checked.loc,
        links: scope::link_policy(&call.grant),
    };
    let status = node.files(&what, req, Input::Stream(rx), None).await;
    let produced = producer
        .await
        .map_err(|e| WitError::Failed(format!("archive worker failed: {e}")))?;
    // The node's refusal (a link out, a device) is the cause when both
    // failed: the artifact side then only saw its reader stop.
    let written = status?;
    produced?;
    match written.0 {
        Reply::Bytes(n) => Ok(n),
        other => Err(WitError::Failed(format!(
            "{what}: unexpected reply {other:?}"
        ))),
    }
}

impl Host for CapsCtxView<'_> {
    async fn create(
        &mut self,
        path: String,
        compression: Compression,
    ) -> R<Resource<ArtifactWriter>> {
        let call = self.call;
        let made = (|| {
            let at = host_path(call, &path)?;
            call.refuse_mutation("local", "archive.create")?;
            if call.dry_run {
                call.record("local", "archive.create", at.shown.display().to_string());
                return Ok(ArtifactWriter {
                    path: at.shown,
                    inner: None,
                });
            }
            let (dir, name) = at.parent_dir()?;
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
            let compression = match compression {
                Compression::None => ArtCompression::None,
                Compression::Gzip => ArtCompression::Gzip,
                Compression::Zstd => ArtCompression::Zstd,
            };
            let w = artifact::Writer::create_in(dir, &name, &at.shown, compression, threads)
                .map_err(art_err)?;
            Ok(ArtifactWriter {
                path: at.shown,
                inner: Some(Arc::new(Mutex::new(Some(w)))),
            })
        })();
        Ok(match made {
            Ok(w) => Ok(self.table.push(w)?),
            Err(e) => Err(e),
        })
    }

    async fn open(&mut self, path: String) -> R<Resource<ArtifactReader>> {
        let opened = host_path(self.call, &path).and_then(|at| {
            artifact::Reader::open_in(at.root.fd(), &at.root.rel(&at.rel), &at.shown)
                .map_err(art_err)
        });
        Ok(match opened {
            Ok(r) => Ok(self.table.push(ArtifactReader {
                inner: Arc::new(Mutex::new(r)),
            })?),
            Err(e) => Err(e),
        })
    }

    async fn list(&mut self, dir: String) -> R<Vec<Listed>> {
        let call = self.call;
        Ok(host_path(self.call, &dir).and_then(|at| {
            let fd = crate::sandbox::ops::open_beneath(
                at.root.fd(),
                &at.root.rel(&at.rel),
                rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            )
            .map_err(|e| fs_err(&at.shown, crate::sandbox::FsError::os(&dir, e)))?;
            // Leftovers of a killed export are cleaned up where exports
            // are looked at (not under --dry-run or in a read-only call).
            if !call.dry_run && call.refuse_mutation("local", "archive.list").is_ok() {
                for (name, pid) in artifact::remove_stale_partials(&fd) {
                    call.event(
                        "warn",
                        format!(
                            "removed {name} from {}: an unfinished artifact whose writer (pid \
                             {pid}) is gone",
                            at.shown.display()
                        ),
                    );
                }
            }
            artifact::list_in(&fd, &at.shown).map_err(art_err).map(|v| {
                v.into_iter()
                    .map(|l| Listed {
                        path: l.path.display().to_string(),
                        size: l.size,
                        modified: l.modified,
                    })
                    .collect()
            })
        }))
    }

    async fn remove(&mut self, path: String) -> R<()> {
        let call = self.call;
        Ok((|| {
            let at = host_path(call, &path)?;
            call.refuse_mutation("local", "archive.remove")?;
            let name = at
                .shown
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if ![".tar", ".tar.zst", ".tar.gz", ".tgz"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                return Err(WitError::InvalidArgument(format!(
                    "{} is not an artifact (.tar, .tar.zst, .tar.gz, .tgz)",
                    at.shown.display()
                )));
            }
            if call.dry_run {
                call.record("local", "archive.remove", at.shown.display().to_string());
                return Ok(());
            }
            // Removes the file or a link by that name, never what a link
            // points to.
            let target = crate::sandbox::ops::At {
                root: &at.root,
                rel: at.rel.clone(),
            };
            crate::sandbox::ops::remove(&target, false).map_err(|e| fs_err(&at.shown, e))
        })())
    }
}

impl HasData for Archive {
    type Data<'a> = CapsCtxView<'a>;
}

impl Link for Archive {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        crate::caps::bindings::stackhost::host::archive::add_to_linker::<T, Archive>(linker, |s| {
            s.caps()
        })
        .map_err(anyhow::Error::from)
    }
}
