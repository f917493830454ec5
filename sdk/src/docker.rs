//! The Docker engine of a node, through the node's own socket (the host
//! reaches a remote node's `/var/run/docker.sock` over its SSH
//! connection). Needs the `docker` grant, with the operations used
//! (`list`, `inspect`, `build`, `tag`, `remove`, `push`, `pull`) and,
//! usually, image-name patterns (`images = ["stackato/stack-alsek:*"]`).
//! Under `--dry-run` listing and inspecting run for real; building,
//! tagging, removing, pushing and pulling are recorded and return as if
//! done ([`build`] and [`pull`] return an empty id).
//!
//! There is no `restart`: the guide says "Do not run the docker restart
//! command"; apps are restarted through the platform.

use crate::bindings::stackhost::host::docker as wit;
use crate::{Node, Result};

pub use wit::{BuildOptions, Container, Image, ImageDetails, RegistryAuth};

/// Images on `node` (`docker images`), untagged ones with no tags.
pub fn list_images(node: &Node) -> Result<Vec<Image>> {
    wit::list_images(node.name()).map_err(Into::into)
}

/// Containers on `node`, running or not (`docker ps -a`); each with the
/// id of the image it runs.
pub fn list_containers(node: &Node) -> Result<Vec<Container>> {
    wit::list_containers(node.name()).map_err(Into::into)
}

/// An image by name (`stackato/stack-alsek:latest`) or id; a missing
/// image is [`Error::NotFound`](crate::Error).
pub fn inspect_image(node: &Node, image: &str) -> Result<ImageDetails> {
    wit::inspect_image(node.name(), image).map_err(Into::into)
}

/// Build `tag` on `node` from `from` and the `run` steps (each one
/// `RUN /bin/sh -c STEP`), like `docker build --no-cache -t TAG` of a
/// Dockerfile with those lines; the build log goes to the progress
/// display. Returns the new image's id (empty under `--dry-run`). The
/// base image must already be on the node.
pub fn build(node: &Node, from: &str, run: &[String], tag: &str) -> Result<String> {
    build_with(node, from, run, tag, &BuildOptions::default())
}

/// [`build`] with options: labels, build args, `no_cache`, `pull` (the
/// last needs the `pull` operation).
pub fn build_with(
    node: &Node,
    from: &str,
    run: &[String],
    tag: &str,
    options: &BuildOptions,
) -> Result<String> {
    let source = wit::BuildSource::Steps(wit::BuildSteps {
        from: from.to_string(),
        run: run.to_vec(),
    });
    wit::build_with(node.name(), &source, tag, options).map_err(Into::into)
}

impl Default for BuildOptions {
    /// No build cache, no pull, no labels, no build args.
    fn default() -> BuildOptions {
        BuildOptions {
            no_cache: true,
            pull: false,
            labels: Vec::new(),
            build_args: Vec::new(),
        }
    }
}

/// Tag `source` as `target` on `node` (`docker tag`; an existing
/// `target` moves to `source`'s image).
pub fn tag(node: &Node, source: &str, target: &str) -> Result<()> {
    wit::tag(node.name(), source, target).map_err(Into::into)
}

/// Remove the name `image` from `node` (`docker rmi`, never forced): the
/// image goes once no name and no container uses it.
pub fn remove_image(node: &Node, image: &str) -> Result<()> {
    wit::remove_image(node.name(), image).map_err(Into::into)
}

/// Push `image` (`REGISTRY/NAME:TAG`) from `node` to the registry its
/// name gives (`docker push`), with `auth` if the registry wants it.
/// Needs the `push` operation.
pub fn push(node: &Node, image: &str, auth: Option<&RegistryAuth>) -> Result<()> {
    wit::push_with(node.name(), image, auth).map_err(Into::into)
}

/// Pull `image` (`REGISTRY/NAME:TAG`) onto `node` (`docker pull`), with
/// `auth` if the registry wants it; returns the image id (empty under
/// `--dry-run`). Needs the `pull` operation.
pub fn pull(node: &Node, image: &str, auth: Option<&RegistryAuth>) -> Result<String> {
    wit::pull(node.name(), image, auth).map_err(Into::into)
}
