//! The `docker` Host impl: check the grant, then call the node's engine
//! through bollard, or record the call under `--dry-run` when it mutates.

use super::scope::{self, shown};
use crate::bindings::WitError;
use crate::bindings::stackhost::host::docker::{
    self, BuildOptions, BuildSource, Container, Image, ImageDetails, RegistryAuth,
};
use crate::caps::CapView;
use crate::cluster::Node;
use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, ListContainersOptions, ListImagesOptions,
    PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;

/// At most this many `RUN` steps in one build.
pub const MAX_STEPS: usize = 64;
/// At most this many bytes in one `RUN` step.
pub const MAX_STEP: usize = 8 << 10;
/// At most this many labels, and as many build args.
pub const MAX_PAIRS: usize = 32;
/// Longest label or build-arg key, and value.
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 4 << 10;
/// Build-log lines kept for the error of a failed build.
const TAIL_LINES: usize = 8;

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
        Ok(call.timed(build(self, node, source, tag, options)).await)
    }

    async fn build_with(
        &mut self,
        node: String,
        source: BuildSource,
        tag: String,
        options: BuildOptions,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let call = self.call;
        Ok(call.timed(build(self, node, source, tag, options)).await)
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
        Ok(call.timed(push(self, node, image, None)).await)
    }

    async fn push_with(
        &mut self,
        node: String,
        image: String,
        auth: Option<RegistryAuth>,
    ) -> wasmtime::Result<Result<(), WitError>> {
        let call = self.call;
        Ok(call.timed(push(self, node, image, auth)).await)
    }

    async fn pull(
        &mut self,
        node: String,
        image: String,
        auth: Option<RegistryAuth>,
    ) -> wasmtime::Result<Result<String, WitError>> {
        let call = self.call;
        Ok(call.timed(pull(self, node, image, auth)).await)
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
fn granted(view: &CapView<'_>, node: &str, op: &str) -> Result<Arc<Node>, WitError> {
    let node = view.node(node)?;
    scope::check_operation(&view.call.grant, &node.info, op)?;
    Ok(node)
}

/// A bollard client for the node's engine, each request bounded by the
/// run's exec timeout.
fn engine(view: &CapView<'_>, node: &Arc<Node>) -> Result<bollard::Docker, WitError> {
    let secs = view.call.exec_timeout.as_secs().max(1);
    crate::cluster::docker::engine(node, secs).map_err(WitError::from)
}

/// An engine error as a WIT error naming the node and the call.
fn engine_error(node: &str, what: &str, e: bollard::errors::Error) -> WitError {
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
fn engine_text(s: &str) -> String {
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

/// Check label or build-arg pairs: count, sizes, no NUL, no empty key.
fn check_pairs(
    what: &str,
    pairs: &[(String, String)],
) -> Result<HashMap<String, String>, WitError> {
    if pairs.len() > MAX_PAIRS {
        return Err(WitError::InvalidArgument(format!(
            "{} {what} given; a build takes at most {MAX_PAIRS}",
            pairs.len()
        )));
    }
    let mut out = HashMap::new();
    for (k, v) in pairs {
        if k.is_empty() || k.len() > MAX_KEY || v.len() > MAX_VALUE {
            return Err(WitError::InvalidArgument(format!(
                "{what} `{}`: a key is 1 to {MAX_KEY} bytes and a value at most {MAX_VALUE}",
                shown(k)
            )));
        }
        if k.contains('\0') || v.contains('\0') || k.chars().any(char::is_control) {
            return Err(WitError::InvalidArgument(format!(
                "{what} `{}` has a NUL or control character in it",
                shown(k)
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    Ok(out)
}

/// A Dockerfile of `FROM` and exec-form `RUN` steps: each step is a JSON
/// string (`RUN ["/bin/sh","-c","..."]`), so a newline or a backslash in
/// a step cannot start another instruction.
fn dockerfile(from: &str, run: &[String]) -> String {
    let mut f = format!("FROM {from}\n");
    for step in run {
        let json = serde_json::to_string(&["/bin/sh", "-c", step.as_str()])
            .unwrap_or_else(|_| "[]".into());
        f.push_str("RUN ");
        f.push_str(&json);
        f.push('\n');
    }
    f
}

/// A build context holding only `Dockerfile`.
fn context(dockerfile: &str) -> Result<Vec<u8>, WitError> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())
        .and_then(|_| tar.into_inner())
        .map_err(|e| WitError::Failed(format!("build context: {e}")))
}

async fn build(
    view: &CapView<'_>,
    node: String,
    source: BuildSource,
    tag: String,
    options: BuildOptions,
) -> Result<String, WitError> {
    let node = granted(view, &node, "build")?;
    let steps = match source {
        BuildSource::Steps(s) => s,
        BuildSource::ContextDir(_) => {
            return Err(WitError::Unsupported(
                "docker build from a context directory is not built into this host yet; \
                 give FROM/RUN steps"
                    .into(),
            ));
        }
    };
    let grant = &view.call.grant;
    let target = scope::check_image(grant, "build", &tag)?;
    let from = scope::check_image(grant, "build (FROM)", &steps.from)?;
    if options.pull {
        scope::check_operation(grant, &node.info, "pull")?;
    }
    if steps.run.len() > MAX_STEPS {
        return Err(WitError::InvalidArgument(format!(
            "{} RUN steps given; a build takes at most {MAX_STEPS}",
            steps.run.len()
        )));
    }
    for (i, step) in steps.run.iter().enumerate() {
        if step.len() > MAX_STEP {
            return Err(WitError::InvalidArgument(format!(
                "RUN step {} is {} bytes; a step is at most {MAX_STEP}",
                i + 1,
                step.len()
            )));
        }
        if step.trim().is_empty() || step.contains('\0') {
            return Err(WitError::InvalidArgument(format!(
                "RUN step {} is empty or holds a NUL byte",
                i + 1
            )));
        }
    }
    let labels = check_pairs("label", &options.labels)?;
    let build_args = check_pairs("build arg", &options.build_args)?;
    let name = node.info.name.clone();
    view.call
        .refuse_mutation(&name, &format!("docker build {target}"))?;
    let docker = engine(view, &node)?;
    if !options.pull {
        // The classic builder pulls a missing base image by itself; without
        // the `pull` operation that must not happen.
        match docker.inspect_image(&from).await {
            Ok(_) => {}
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => {
                return Err(WitError::NotFound(format!(
                    "base image `{from}` is not on node {name}; a build does not pull it \
                     (that needs docker operation `pull` and the build option `pull`)"
                )));
            }
            Err(e) => return Err(engine_error(&name, "build", e)),
        }
    }
    let file = dockerfile(&from, &steps.run);
    if view.call.dry_run {
        let mut detail = format!(
            "build {target} FROM {from}, {} RUN step(s){}{}",
            steps.run.len(),
            if options.no_cache { ", no cache" } else { "" },
            if options.pull { ", pull" } else { "" },
        );
        for step in &steps.run {
            detail.push_str(&format!("; RUN {}", shown(step)));
        }
        view.call.record(&name, "docker", detail);
        return Ok(String::new());
    }
    let body = context(&file)?;
    let build_options = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(target.clone()),
        nocache: options.no_cache,
        pull: options.pull.then(|| "1".to_string()),
        rm: true,
        forcerm: true,
        labels: Some(labels),
        buildargs: Some(build_args),
        ..Default::default()
    };
    let progress = view.call.progress.clone();
    let mut lines = crate::progress::LineSplitter::new();
    let mut tail: std::collections::VecDeque<String> = Default::default();
    let mut keep = |line: &str| {
        if let Some(p) = &progress {
            p.line(line);
        }
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.to_string());
    };
    let mut id = None;
    let mut failure = None;
    {
        let mut stream =
            docker.build_image(build_options, None, Some(bollard::body_full(body.into())));
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(s) = info.stream {
                        lines.feed(s.as_bytes(), &mut keep);
                    }
                    if let Some(d) = info.error_detail {
                        failure = Some(d.message.unwrap_or_default());
                    }
                    if let Some(aux) = info.aux.and_then(|a| a.id) {
                        id = Some(aux);
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    failure = Some(error);
                    break;
                }
                Err(e) => return Err(engine_error(&name, "build", e)),
            }
        }
    }
    lines.finish(&mut keep);
    if let Some(why) = failure {
        let tail: Vec<String> = tail.iter().map(|l| engine_text(l)).collect();
        return Err(WitError::Failed(format!(
            "docker build of {target} on node {name} failed: {}; last lines of the log: {}",
            engine_text(&why),
            tail.join(" | ")
        )));
    }
    match id {
        Some(id) => Ok(id),
        // Older engines only name the image in the log; ask for it.
        None => docker
            .inspect_image(&target)
            .await
            .map(|i| i.id.unwrap_or_default())
            .map_err(|e| engine_error(&name, "build", e)),
    }
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

/// The registry host of a normalised name (`docker.io` when it names
/// none).
fn registry_of(name: &str) -> &str {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// `NAME:TAG` split at the tag (names are normalised, so there is one).
fn split_tag(name: &str) -> (&str, &str) {
    name.rsplit_once(':').unwrap_or((name, "latest"))
}

fn credentials(name: &str, auth: Option<RegistryAuth>) -> Option<bollard::auth::DockerCredentials> {
    auth.map(|a| bollard::auth::DockerCredentials {
        username: Some(a.username),
        password: Some(a.password),
        serveraddress: Some(registry_of(name).to_string()),
        ..Default::default()
    })
}

/// Drain a push or pull progress stream; the engine's error, if any.
async fn drain<T>(
    name: &str,
    what: &str,
    stream: impl futures_util::Stream<Item = Result<T, bollard::errors::Error>>,
    error_of: impl Fn(&T) -> Option<String>,
) -> Result<(), WitError> {
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let why = match item {
            Ok(info) => error_of(&info),
            Err(bollard::errors::Error::DockerStreamError { error }) => Some(error),
            Err(e) => return Err(engine_error(name, what, e)),
        };
        if let Some(why) = why {
            return Err(WitError::Failed(format!(
                "docker {what} on node {name} failed: {}",
                engine_text(&why)
            )));
        }
    }
    Ok(())
}

async fn push(
    view: &CapView<'_>,
    node: String,
    image: String,
    auth: Option<RegistryAuth>,
) -> Result<(), WitError> {
    let node = granted(view, &node, "push")?;
    let image = scope::check_image(&view.call.grant, "push", &image)?;
    let name = node.info.name.clone();
    view.call
        .refuse_mutation(&name, &format!("docker push {image}"))?;
    if view.call.dry_run {
        let with = if auth.is_some() {
            " (with credentials)"
        } else {
            ""
        };
        view.call
            .record(&name, "docker", format!("push {image}{with}"));
        return Ok(());
    }
    let docker = engine(view, &node)?;
    let (repo, tag) = split_tag(&image);
    let options = PushImageOptions {
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let stream = docker.push_image(repo, Some(options), credentials(&image, auth));
    drain(
        &name,
        "push",
        stream,
        |i: &bollard::models::PushImageInfo| {
            i.error_detail
                .as_ref()
                .map(|d| d.message.clone().unwrap_or_default())
        },
    )
    .await
}

async fn pull(
    view: &CapView<'_>,
    node: String,
    image: String,
    auth: Option<RegistryAuth>,
) -> Result<String, WitError> {
    let node = granted(view, &node, "pull")?;
    let image = scope::check_image(&view.call.grant, "pull", &image)?;
    let name = node.info.name.clone();
    view.call
        .refuse_mutation(&name, &format!("docker pull {image}"))?;
    if view.call.dry_run {
        let with = if auth.is_some() {
            " (with credentials)"
        } else {
            ""
        };
        view.call
            .record(&name, "docker", format!("pull {image}{with}"));
        return Ok(String::new());
    }
    let docker = engine(view, &node)?;
    let (repo, tag) = split_tag(&image);
    let options = CreateImageOptions {
        from_image: Some(repo.to_string()),
        tag: Some(tag.to_string()),
        ..Default::default()
    };
    let stream = docker.create_image(Some(options), None, credentials(&image, auth));
    drain(
        &name,
        "pull",
        stream,
        |i: &bollard::models::CreateImageInfo| {
            i.error_detail
                .as_ref()
                .map(|d| d.message.clone().unwrap_or_default())
        },
    )
    .await?;
    docker
        .inspect_image(&image)
        .await
        .map(|i| i.id.unwrap_or_default())
        .map_err(|e| engine_error(&name, "pull", e))
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

    #[test]
    fn run_steps_cannot_add_instructions() {
        let f = dockerfile("a:latest", &["echo hi\nFROM evil\\".into()]);
        assert_eq!(f.lines().count(), 2, "{f}");
        assert!(
            f.contains(r#"RUN ["/bin/sh","-c","echo hi\nFROM evil\\"]"#),
            "{f}"
        );
    }
}
