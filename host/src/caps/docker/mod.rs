//! `stackhost:host/docker`: each node's own Docker engine through bollard
//! (see [`crate::cluster::docker`] for how a request reaches it). Calls
//! are checked against the grant's operations, roles and image-name
//! patterns; under `--dry-run` listing and inspecting run for real, and
//! build, tag, remove, push and pull are recorded. `restart` is in the WIT
//! since 0.1.0 but never granted (the guide forbids `docker restart` for
//! apps).

mod build;
mod host;
mod registry;
mod scope;

pub use scope::{ImagePattern, OPERATIONS, normalize};

use crate::caps::interface::{Granted, Group, Interface, PromptLine, list, on_roles};
use crate::text::escape_line;
use semver::Version;
use serde::{Deserialize, Serialize};

/// Marker for the `docker` interface.
pub struct Docker;

impl Interface for Docker {
    const NAME: &'static str = "docker";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = false;
}

/// `[capabilities.docker]`: Docker operations a plugin may use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DockerGrant {
    pub reason: String,
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Patterns every image name a call names must match
    /// (`stackato/stack-alsek:*`, `registry.local:5000/*`); empty: any
    /// name. See [`ImagePattern`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

impl Granted for Docker {
    type Grant = DockerGrant;

    fn reason(g: &DockerGrant) -> &str {
        &g.reason
    }

    fn validate(grant: &DockerGrant) -> Result<(), String> {
        scope::validate_request(grant)
    }

    fn prompt(d: &DockerGrant) -> Vec<PromptLine> {
        let images = if d.images.is_empty() {
            String::new()
        } else {
            format!(" on images {}", d.images.join(", "))
        };
        vec![
            PromptLine::new(
                Group::Docker,
                format!("{}{images}", d.operations.join(", ")),
            )
            .reason(&d.reason)
            .roles(&d.roles),
        ]
    }

    fn describe(d: &DockerGrant) -> String {
        let images = if d.images.is_empty() {
            String::new()
        } else {
            format!(" on images {}", list(&d.images))
        };
        format!(
            "docker: {}{images}{} — {}",
            list(&d.operations),
            on_roles(&d.roles),
            escape_line(&d.reason)
        )
    }
}
