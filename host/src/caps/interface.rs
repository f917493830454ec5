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
    /// The section's `reason`, shown to the operator (refused empty).
    fn reason(grant: &Self::Grant) -> &str;
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
    /// Where the install prompt lists the grant, when it is one line.
    const GROUP: Group = Group::Other;
    /// The grant as the install prompt and `plugin info` list it, one line
    /// per thing it allows (texts unescaped: the view escapes them). By
    /// default the one [`Granted::describe`] line in [`Granted::GROUP`].
    fn prompt(grant: &Self::Grant) -> Vec<PromptLine> {
        vec![PromptLine::new(Self::GROUP, Self::describe(grant))]
    }
}

/// The groups of the install prompt, in the order it shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Group {
    Reads,
    Writes,
    RunsReadOnly,
    RunsAndChanges,
    Databases,
    Docker,
    Secrets,
    Network,
    Other,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Reads => "reads files",
            Group::Writes => "writes files",
            Group::RunsReadOnly => "runs, read-only (also under --dry-run)",
            Group::RunsAndChanges => "runs and changes the node",
            Group::Databases => "databases",
            Group::Docker => "Docker",
            Group::Secrets => "secrets",
            Group::Network => "network",
            Group::Other => "other",
        }
    }
}

/// One thing a grant allows, as the operator reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromptLine {
    /// The capability it belongs to (filled in by the registry).
    pub capability: &'static str,
    pub group: Group,
    /// What is allowed: a path, a command with its holes, ...
    pub text: String,
    /// The user it runs as, when not the login user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Where (` on roles a, b`), when limited.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The plugin's reason for it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Why it amounts to root on the node, if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
}

impl PromptLine {
    pub fn new(group: Group, text: impl Into<String>) -> PromptLine {
        PromptLine {
            capability: "",
            group,
            text: text.into(),
            user: None,
            roles: Vec::new(),
            reason: String::new(),
            root: None,
        }
    }

    pub fn reason(mut self, reason: &str) -> PromptLine {
        self.reason = reason.to_string();
        self
    }

    pub fn roles(mut self, roles: &[String]) -> PromptLine {
        self.roles = roles.to_vec();
        self
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
    /// Its lines in the install prompt's groups.
    pub lines: Vec<PromptLine>,
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
