//! `stackhost:host/patches`: the installed vendor patches, lent to the
//! plugin that manages them. Each patch runs sandboxed in its own store
//! under its own grant; its file and signature are verified before every
//! call, so a patch altered or signed by a key no longer trusted is never
//! run.

mod host;
mod runner;

pub use runner::{Lent, PatchFuture, PatchOp, PatchRunner};

use crate::caps::interface::{Granted, Group, Interface, PromptLine};
use crate::text::escape_line;
use semver::Version;
use serde::{Deserialize, Serialize};

/// Marker for the `patches` interface.
pub struct Patches;

impl Interface for Patches {
    const NAME: &'static str = "patches";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = false;
}

/// `[capabilities.patches]`: use of the installed vendor patches (list,
/// check, apply, revert).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatchesGrant {
    pub reason: String,
}

impl Granted for Patches {
    type Grant = PatchesGrant;

    fn reason(g: &PatchesGrant) -> &str {
        &g.reason
    }

    fn validate(_: &PatchesGrant) -> Result<(), String> {
        Ok(())
    }

    fn prompt(p: &PatchesGrant) -> Vec<PromptLine> {
        vec![
            PromptLine::new(
                Group::Other,
                "list, check, apply and revert the installed vendor patches",
            )
            .reason(&p.reason),
        ]
    }

    fn describe(p: &PatchesGrant) -> String {
        format!(
            "patches: list, check, apply and revert the installed vendor patches — {}",
            escape_line(&p.reason)
        )
    }
}
