//! `stackhost:host/archive`: artifacts on the operator's host, filled by
//! streaming from nodes (see [`crate::artifact`]). Host paths must lie
//! within the archive grant; node paths within the fs grant (read to
//! pack, write to unpack). Under `--dry-run` nothing is written: creating,
//! adding and unpacking are recorded.

mod host;

use crate::caps::interface::{
    Granted, Group, Interface, PromptLine, check_scope_path, list, on_roles,
};
use crate::text::escape_line;
use semver::Version;
use serde::{Deserialize, Serialize};

/// Marker for the `archive` interface.
pub struct Archive;

/// `[capabilities.archive]`: directories on the operator's host where
/// artifacts may be written.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveGrant {
    pub reason: String,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Interface for Archive {
    const NAME: &'static str = "archive";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = false;
}

impl Granted for Archive {
    type Grant = ArchiveGrant;

    fn reason(g: &ArchiveGrant) -> &str {
        &g.reason
    }

    fn validate(grant: &ArchiveGrant) -> Result<(), String> {
        grant
            .paths
            .iter()
            .try_for_each(|p| check_scope_path("archive", p))
    }

    fn prompt(a: &ArchiveGrant) -> Vec<PromptLine> {
        a.paths
            .iter()
            .map(|p| {
                PromptLine::new(
                    Group::Writes,
                    format!("{p} (archive artifacts, written and read)"),
                )
                .reason(&a.reason)
                .roles(&a.roles)
            })
            .collect()
    }

    fn describe(a: &ArchiveGrant) -> String {
        format!(
            "archive: artifacts in {}{} — {}",
            list(&a.paths),
            on_roles(&a.roles),
            escape_line(&a.reason)
        )
    }
}

pub(crate) use host::{art_err, run_blocking};
