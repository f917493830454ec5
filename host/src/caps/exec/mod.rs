//! `stackhost:host/exec`: run granted programs on nodes.

mod grant;
mod host;
mod scope;

pub use grant::{ExecGrant, ExecPattern};
pub use scope::{ALWAYS_ALLOWED_ENV, env_never_allowed, root_equivalent};

use crate::caps::interface::{Granted, Interface, list, on_roles};
use crate::text::escape_line;
use semver::Version;

/// Marker for the `exec` interface.
pub struct Exec;

impl Interface for Exec {
    const NAME: &'static str = "exec";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;
}

impl Granted for Exec {
    type Grant = ExecGrant;

    fn validate(grant: &ExecGrant) -> Result<(), String> {
        grant.validate()
    }

    fn describe(e: &ExecGrant) -> String {
        let users = if e.users.is_empty() {
            String::new()
        } else {
            format!(" as users {}", list(&e.users))
        };
        let env = if e.env.is_empty() {
            String::new()
        } else {
            format!(" with environment {}", list(&e.env))
        };
        let reboot = if e.reboot { ", and reboot nodes" } else { "" };
        format!(
            "exec: run {}{users}{env}{reboot}{} — {}",
            patterns_text(e),
            on_roles(&e.roles),
            escape_line(&e.reason)
        )
    }

    fn root_warnings(e: &ExecGrant) -> Vec<String> {
        e.root_equivalent_grants()
            .into_iter()
            .map(|program| {
                format!(
                    "granting `{}` whole is equivalent to root on the node",
                    escape_line(program)
                )
            })
            .collect()
    }
}

/// The exec grant's patterns, escaped, comma-separated, each read-only one
/// marked: `touch, btrfs qgroup show (read-only)`.
fn patterns_text(e: &ExecGrant) -> String {
    let all: Vec<String> = e
        .patterns()
        .map(|(pattern, read_only)| {
            let text = escape_line(&pattern.to_string()).into_owned();
            if read_only {
                format!("{text} (read-only)")
            } else {
                text
            }
        })
        .collect();
    if all.is_empty() {
        "nothing".into()
    } else {
        all.join(", ")
    }
}
