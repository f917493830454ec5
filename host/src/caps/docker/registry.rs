//! `docker.push`, `push-with` and `pull`: the registry is the host in the
//! image's name, checked against the grant's patterns like any name;
//! credentials go to the engine in its `X-Registry-Auth` header and are
//! never recorded.

use super::host::{engine, engine_error, engine_text, granted};
use super::scope;
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::docker::RegistryAuth;
use crate::caps::ctx::CapView;
use bollard::query_parameters::{CreateImageOptions, PushImageOptions};
use futures_util::StreamExt;

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

pub(super) async fn push(
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

pub(super) async fn pull(
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
