//! The `docker` Host impl: check the grant, then call the node's engine
//! through bollard, or record the call under `--dry-run` when it mutates.
//! Listing, inspecting, tagging and removing are here; building is in
//! `build.rs`, pushing and pulling in `registry.rs`.

use super::Docker;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

use super::scope::{self, shown};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::docker::{
    self, BuildOptions, BuildSource, Container, Image, ImageDetails, RegistryAuth,
};
use crate::caps::ctx::CapView;
use crate::cluster::Node;
use bollard::query_parameters::{
    ListContainersOptions, ListImagesOptions, RemoveImageOptions, TagImageOptions,
};
use std::sync::Arc;

impl docker::Host for CapView<'_> {
    async fn list_images(
        &mut self,
        node: String,
    ) -> wasmtime::Result<Result<Vec<Image>, WitError>> {
        let call = self.call;
        Ok(call.timed(list_images(self, node)).await)
    }

    async fn list_containers(
        &mut self,
        node: String,
    ) -> wasmtime::Result<Result<Vec<Container>, WitError>> {
        let call = self.call;
        Ok(call.timed(list_containers(self, node)).await)
    }

    async fn build(
        &mut self,
        node: String,
        source: BuildSource,
        tag: String,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let options = BuildOptions {
            no_cache: true,
            pull: false,
            labels: vec![],
            build_args: vec![],
        };
        let call = self.call;
        Ok(call
            .timed(super::build::build(self, node, source, tag, options))
            .await)
    }

    async fn build_with(
        &mut self,
        node: String,
        source: BuildSource,
        tag: String,
        options: BuildOptions,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let call = self.call;
        Ok(call
            .timed(super::build::build(self, node, source, tag, options))
            .await)
    }

    async fn tag(
        &mut self,
        node: String,
        source: String,
        target: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let call = self.call;
        Ok(call.timed(tag(self, node, source, target)).await)
    }

    async fn push(
        &mut self,
        node: String,
        image: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let call = self.call;
        Ok(call
            .timed(super::registry::push(self, node, image, None))
            .await)
    }

    async fn push_with(
        &mut self,
        node: String,
        image: String,
        auth: Option<RegistryAuth>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let call = self.call;
        Ok(call
            .timed(super::registry::push(self, node, image, auth))
            .await)
    }

    async fn pull(
        &mut self,
        node: String,
        image: String,
        auth: Option<RegistryAuth>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let call = self.call;
        Ok(call
            .timed(super::registry::pull(self, node, image, auth))
            .await)
    }

    async fn restart(
        &mut self,
        node: String,
        _container: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        Ok(Err(WitError::PermissionDenied(format!(
            "docker restart on {} is never granted: the guide says \"Do not run the docker \
             restart command\"; restart the app through the platform (stackato client or console)",
            shown(&node)
        ))))
    }

    async fn inspect_image(
        &mut self,
        node: String,
        image: String,
    ) -> wasmtime::Result<Result<ImageDetails, WitError>> {
        let call = self.call;
        Ok(call.timed(inspect_image(self, node, image)).await)
    }

    async fn remove_image(
        &mut self,
        node: String,
        image: String,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let call = self.call;
        Ok(call.timed(remove_image(self, node, image)).await)
    }
}

/// The node, with `op` checked against the grant.
pub(super) fn granted(view: &CapView<'_>, node: &str, op: &str) -> Result<Arc<Node>, WitError> {
    let node = view.node(node)?;
    scope::check_operation(&view.call.grant, &node.info, op)?;
    Ok(node)
}

/// A bollard client for the node's engine, each request bounded by the
/// run's exec timeout.
pub(super) fn engine(view: &CapView<'_>, node: &Arc<Node>) -> Result<bollard::Docker, WitError> {
    let secs = view.call.exec_timeout.as_secs().max(1);
    crate::cluster::docker::engine(node, secs).map_err(WitError::from)
}

/// An engine error as a WIT error naming the node and the call.
pub(super) fn engine_error(node: &str, what: &str, e: bollard::errors::Error) -> WitError {
    use bollard::errors::Error as E;
    match e {
        E::DockerResponseServerError {
            status_code,
            message,
        } => {
            let msg = format!("docker {what} on node {node}: {}", engine_text(&message));
            match status_code {
                404 => WitError::NotFound(msg),
                400 => WitError::InvalidArgument(msg),
                _ => WitError::Failed(msg),
            }
        }
        E::RequestTimeoutError => WitError::Timeout(format!(
            "docker {what} on node {node} ran past the exec timeout"
        )),
        E::IOError { err } => WitError::Unreachable(format!("docker {what}: {err}")),
        E::HyperResponseError { err } => WitError::Unreachable(format!(
            "docker {what} on node {node}: the engine connection failed: {err}"
        )),
        other => WitError::Failed(format!(
            "docker {what} on node {node}: {}",
            engine_text(&other.to_string())
        )),
    }
}

/// Text from the engine (which may echo plugin input) for a message:
/// control characters escaped, at most 1000 characters.
pub(super) fn engine_text(s: &str) -> String {
    let s = s.trim_end();
    let mut out: String = s.chars().take(1000).flat_map(char::escape_debug).collect();
    if s.chars().count() > 1000 {
        out.push_str("...");
    }
    out
}

async fn list_images(view: &CapView<'_>, node: String) -> Result<Vec<Image>, WitError> {
    let node = granted(view, &node, "list")?;
    let docker = engine(view, &node)?;
    let images = docker
        .list_images(Some(ListImagesOptions::default()))
        .await
        .map_err(|e| engine_error(&node.info.name, "list-images", e))?;
    Ok(images
        .into_iter()
        .map(|i| Image {
            id: i.id,
            tags: i
                .repo_tags
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
            created: i.created,
            size: u64::try_from(i.size).unwrap_or(0),
        })
        .collect())
}

async fn list_containers(view: &CapView<'_>, node: String) -> Result<Vec<Container>, WitError> {
    let node = granted(view, &node, "list")?;
    let docker = engine(view, &node)?;
    let options = ListContainersOptions {
        all: true,
        ..Default::default()
    };
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| engine_error(&node.info.name, "list-containers", e))?;
    Ok(containers
        .into_iter()
        .map(|c| Container {
            id: c.id.unwrap_or_default(),
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            image: c.image_id.unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
        })
        .collect())
}

async fn inspect_image(
    view: &CapView<'_>,
    node: String,
    image: String,
) -> Result<ImageDetails, WitError> {
    let node = granted(view, &node, "inspect")?;
    // An id names one image whatever its tags; a name is checked against
    // the grant's patterns.
    let reference = if scope::is_image_id(&image) {
        image
    } else {
        scope::check_image(&view.call.grant, "inspect", &image)?
    };
    let docker = engine(view, &node)?;
    let i = docker
        .inspect_image(&reference)
        .await
        .map_err(|e| engine_error(&node.info.name, "inspect-image", e))?;
    let mut labels: Vec<(String, String)> = i
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.sort();
    Ok(ImageDetails {
        id: i.id.unwrap_or_default(),
        digests: i.repo_digests.unwrap_or_default(),
        tags: i.repo_tags.unwrap_or_default(),
        created: i.created.as_deref().and_then(rfc3339_seconds).unwrap_or(0),
        size: i.size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
        layers: i.root_fs.and_then(|r| r.layers).unwrap_or_default(),
        labels,
    })
}

async fn tag(
    view: &CapView<'_>,
    node: String,
    source: String,
    target: String,
) -> Result<(), WitError> {
    let node = granted(view, &node, "tag")?;
    let grant = &view.call.grant;
    let source = scope::check_image(grant, "tag", &source)?;
    let target = scope::check_image(grant, "tag", &target)?;
    let name = node.info.name.clone();
    view.call
        .refuse_mutation(&name, &format!("docker tag {source} {target}"))?;
    // A dry run does not ask whether the source exists: an earlier
    // recorded build in the same step would have made it.
    if view.call.dry_run {
        view.call
            .record(&name, "docker", format!("tag {source} {target}"));
        return Ok(());
    }
    let docker = engine(view, &node)?;
    let (repo, tag) = target
        .rsplit_once(':')
        .map(|(r, t)| (r.to_string(), t.to_string()))
        .unwrap_or((target.clone(), "latest".into()));
    docker
        .tag_image(
            &source,
            Some(TagImageOptions {
                repo: Some(repo),
                tag: Some(tag),
            }),
        )
        .await
        .map_err(|e| engine_error(&name, "tag", e))
}

async fn remove_image(view: &CapView<'_>, node: String, image: String) -> Result<(), WitError> {
    let node = granted(view, &node, "remove")?;
    if scope::is_image_id(&image) {
        return Err(WitError::InvalidArgument(format!(
            "docker remove-image takes a name, not an id (`{}`): the grant's image patterns \
             are checked against names",
            shown(&image)
        )));
    }
    let image = scope::check_image(&view.call.grant, "remove", &image)?;
    let name = node.info.name.clone();
    view.call
        .refuse_mutation(&name, &format!("docker rmi {image}"))?;
    if view.call.dry_run {
        view.call.record(&name, "docker", format!("rmi {image}"));
        return Ok(());
    }
    let docker = engine(view, &node)?;
    docker
        .remove_image(
            &image,
            Some(RemoveImageOptions {
                force: false,
                noprune: false,
                ..Default::default()
            }),
            None,
        )
        .await
        .map(|_| ())
        .map_err(|e| engine_error(&name, "remove-image", e))
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-06T01:02:03.45Z`,
/// or with a `+hh:mm` offset), as the engine writes `Created`.
pub fn rfc3339_seconds(s: &str) -> Option<i64> {
    let (date, rest) = s.split_once('T')?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let time_end = rest.find(['Z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(time_end);
    let mut t = time.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let min: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next()?.split('.').next()?.parse().ok()?;
    let offset = match zone.chars().next() {
        Some(sign @ ('+' | '-')) => {
            let (oh, om) = zone[1..].split_once(':')?;
            let o = oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60;
            if sign == '+' { o } else { -o }
        }
        _ => 0,
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec - offset)
}

impl HasData for Docker {
    type Data<'a> = CapView<'a>;
}

impl Link for Docker {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        docker::add_to_linker::<T, Docker>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_times() {
        assert_eq!(rfc3339_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            rfc3339_seconds("2026-12-06T01:02:03.123456789Z"),
            Some(1_796_518_923)
        );
        assert_eq!(rfc3339_seconds("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(rfc3339_seconds("junk"), None);
    }
}
