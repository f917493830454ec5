//! `stackhost:host/fs`: files on nodes, within granted path scopes.

pub mod diff;
mod host;
pub mod judge;
pub use host::{READ_CAP, WRITE_CAP};
pub(crate) mod scope;

use crate::caps::interface::{
    Granted, Group, Interface, PromptLine, check_scope_path, list, on_roles,
};
use crate::text::escape_line;
use semver::Version;
use serde::{Deserialize, Serialize};

/// Marker for the `fs` interface.
pub struct Fs;

impl Interface for Fs {
    const NAME: &'static str = "fs";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;
}

/// `[capabilities.fs]`: paths a plugin may read and write on nodes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FsGrant {
    pub reason: String,
    #[serde(default)]
    pub read: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Granted for Fs {
    type Grant = FsGrant;

    fn reason(g: &FsGrant) -> &str {
        &g.reason
    }

    fn validate(fs: &FsGrant) -> Result<(), String> {
        fs.read
            .iter()
            .chain(&fs.write)
            .try_for_each(|p| check_scope_path("fs", p))
    }

    fn prompt(f: &FsGrant) -> Vec<PromptLine> {
        let line = |group, path: &String| {
            PromptLine::new(group, path.as_str())
                .reason(&f.reason)
                .roles(&f.roles)
        };
        let write = |path: &String| {
            let mut l = line(Group::Writes, path);
            l.root = judge::write_root_reason(path).map(|why| format!("writes there: {why}"));
            l
        };
        f.read
            .iter()
            .map(|p| line(Group::Reads, p))
            .chain(f.write.iter().map(write))
            .collect()
    }

    fn root_warnings(f: &FsGrant) -> Vec<String> {
        f.write
            .iter()
            .filter_map(|p| {
                let why = judge::write_root_reason(p)?;
                Some(format!(
                    "writing `{}` is equivalent to root on the node: {why}",
                    escape_line(p)
                ))
            })
            .collect()
    }

    fn describe(f: &FsGrant) -> String {
        format!(
            "fs: read {}, write {}{} — {}",
            list(&f.read),
            list(&f.write),
            on_roles(&f.roles),
            escape_line(&f.reason)
        )
    }
}
