//! What every capability declares about itself, in its own folder's
//! `mod.rs`: its WIT interface (name, the version that added it, whether a
//! vendor patch's world imports it) and, for one that needs a grant, its
//! manifest section (its own grant type), the checks that section passes
//! at install, its line in the install prompt and `plugin info`, and why
//! it may amount to root on a node. How it is linked is in its `host.rs`
//! ([`crate::caps::ctx::Link`]); [`crate::caps::registry`] lists them all.

use semver::Version;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The WIT worlds a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// A maintenance plugin (world `plugin`).
    Plugin,
    /// A vendor patch (world `patch`), driven by the `patches` capability.
    Patch,
}

/// One interface of the `stackhost:host` WIT package that this host
/// provides.
pub trait Interface: 'static {
    /// The interface's name in the WIT package (`exec`); for a granted
    /// capability also its manifest section, `[capabilities.exec]`.
    const NAME: &'static str;
    /// The first version of the WIT package with this interface.
    const SINCE: Version;
    /// Whether world `patch` imports it (every interface is in `plugin`).
    const IN_PATCH_WORLD: bool;
}

/// A capability a plugin must request in its manifest and the operator
/// must grant; without a grant it is not linked at all.
pub trait Granted: Interface {
    /// The manifest section, as requested and as granted.
    type Grant: Serialize + DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Send + Sync;
    /// Checks the section must pass at install (beyond its syntax).
    fn validate(grant: &Self::Grant) -> Result<(), String>;
    /// What the grant lets the plugin do, on one line for the install
    /// prompt and `plugin info`, every text from the manifest escaped.
    fn describe(grant: &Self::Grant) -> String;
    /// Each part of the grant that amounts to root on the node, said as a
    /// warning the operator reads before granting (escaped).
    fn root_warnings(_grant: &Self::Grant) -> Vec<String> {
        Vec::new()
    }
}

/// A requested capability as the operator is shown it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: &'static str,
    /// What it lets the plugin do, and why (the manifest's reason).
    pub line: String,
    /// Parts of it that amount to root on a node.
    pub root_warnings: Vec<String>,
}

/// Items from a manifest, escaped, comma-separated (`none` for none).
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|i| crate::text::escape_line(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// ` on roles a, b` for a section limited to roles, else nothing.
pub fn on_roles(roles: &[String]) -> String {
    if roles.is_empty() {
        String::new()
    } else {
        format!(" on roles {}", list(roles))
    }
}

/// A grant's path: absolute, with no `..`.
pub fn check_scope_path(capability: &str, path: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "{capability} path `{path}` must be absolute and contain no `..`"
        ));
    }
    Ok(())
}
