//! The inventory: a TOML file listing the cluster's nodes with address,
//! port, user and roles. Without one, the cluster is the local node.
//!
//! ```toml
//! [defaults]              # optional; each node may override
//! user = "stackato"
//! port = 22
//! identity = "/home/stackato/.ssh/id_ed25519"
//! sudo = true             # file operations through `sudo -n`
//!
//! [[node]]
//! name = "core"
//! address = "10.0.0.10"
//! roles = ["core", "controller", "postgresql"]
//!
//! [[node]]
//! name = "this-machine"
//! local = true            # the machine stackhost runs on: no SSH
//! roles = ["filesystem"]
//! ```

use super::ssh::{SshNode, SshOptions, SshTarget};
use super::{Cluster, LocalNode, Node, NodeInfo, Transport};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why an inventory was refused.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("cannot read the inventory {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("the inventory {0} is not valid: {1}")]
    Toml(PathBuf, toml::de::Error),
    #[error("the inventory {0} is not valid: {1}")]
    Invalid(PathBuf, String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    user: Option<String>,
    port: Option<u16>,
    identity: Option<PathBuf>,
    sudo: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeEntry {
    name: String,
    address: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    identity: Option<PathBuf>,
    sudo: Option<bool>,
    /// The node's own host name, for plugins (Nagios, New Relic) that
    /// describe it; the host connects to `address`.
    hostname: Option<String>,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "node", default)]
    nodes: Vec<NodeEntry>,
}

/// Load the inventory at `path` into a cluster.
pub fn load(path: &Path, ssh: SshOptions) -> Result<Cluster, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| InventoryError::Read(path.into(), e))?;
    parse(path, &text, ssh)
}

fn parse(path: &Path, text: &str, ssh: SshOptions) -> Result<Cluster, InventoryError> {
    let file: InventoryFile =
        toml::from_str(text).map_err(|e| InventoryError::Toml(path.into(), e))?;
    let invalid = |m: String| InventoryError::Invalid(path.into(), m);
    if file.nodes.is_empty() {
        return Err(invalid("it lists no [[node]]".into()));
    }
    let ssh = Arc::new(ssh);
    let mut names = BTreeSet::new();
    let mut nodes = Vec::new();
    for n in file.nodes {
        let name_ok = !n.name.is_empty()
            && n.name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return Err(invalid(format!(
                "node name `{}` must be letters, digits, `-`, `_` or `.`",
                n.name
            )));
        }
        if !names.insert(n.name.clone()) {
            return Err(invalid(format!("node `{}` is listed twice", n.name)));
        }
        if let Some(role) = n
            .roles
            .iter()
            .find(|r| r.is_empty() || r.contains([',', ':', ' ']))
        {
            return Err(invalid(format!(
                "node `{}` has a malformed role `{role}`",
                n.name
            )));
        }
        if let Some(h) = &n.hostname
            && !valid_hostname(h)
        {
            return Err(invalid(format!(
                "node `{}` has a malformed hostname `{}` (letters, digits, `-` and `.`, \
                 at most 253 characters)",
                n.name,
                h.escape_default()
            )));
        }
        let (address, port, user, transport) = if n.local {
            if n.address.is_some() || n.port.is_some() || n.user.is_some() {
                return Err(invalid(format!(
                    "node `{}` is local; it takes no address, port or user",
                    n.name
                )));
            }
            (
                "127.0.0.1".to_string(),
                0,
                super::local_user(),
                Transport::Local(LocalNode::new(&n.name)),
            )
        } else {
            let address = n.address.ok_or_else(|| {
                invalid(format!(
                    "node `{}` has no address (or `local = true`)",
                    n.name
                ))
            })?;
            let target = SshTarget {
                address: address.clone(),
                port: n.port.or(file.defaults.port).unwrap_or(22),
                user: n
                    .user
                    .or(file.defaults.user.clone())
                    .unwrap_or_else(|| "root".into()),
                identity: n.identity.or(file.defaults.identity.clone()),
                sudo: n.sudo.or(file.defaults.sudo).unwrap_or(false),
            };
            (
                address,
                target.port,
                target.user.clone(),
                Transport::Ssh(SshNode::new(&n.name, target, ssh.clone())),
            )
        };
        let info = NodeInfo {
            name: n.name,
            address,
            roles: n.roles,
            is_local: n.local,
            hostname: n.hostname,
            port,
            user,
        };
        nodes.push(Arc::new(Node {
            info,
            transport,
            files: Default::default(),
        }));
    }
    Ok(Cluster::new(nodes))
}

/// A DNS host name: labels of letters, digits and `-`, not starting or
/// ending with `-`.
fn valid_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn opts() -> SshOptions {
        SshOptions {
            known_hosts: "/dev/null".into(),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(1),
        }
    }

    fn parse_str(text: &str) -> Result<Cluster, InventoryError> {
        parse(Path::new("inv.toml"), text, opts())
    }

    #[test]
    fn parses_nodes_with_defaults() {
        let c = parse_str(
            r#"
[defaults]
user = "stackato"
port = 2222
[[node]]
name = "core"
address = "127.0.0.1"
roles = ["core", "controller"]
[[node]]
name = "me"
local = true
"#,
        )
        .unwrap();
        assert_eq!(c.nodes().len(), 2);
        assert_eq!(
            c.get("core").unwrap().info.roles,
            vec!["core", "controller"]
        );
        assert!(c.get("me").unwrap().info.is_local);
    }

    #[test]
    fn refuses_bad_inventories() {
        let err = |t: &str| parse_str(t).expect_err("refused").to_string();
        assert!(err("").contains("lists no [[node]]"));
        assert!(err("[[node]]\nname = \"a\"\n").contains("has no address"));
        assert!(
            err("[[node]]\nname = \"a\"\naddress = \"x\"\ncolour = 1\n")
                .contains("unknown field `colour`")
        );
        assert!(
            err("[[node]]\nname = \"a\"\nlocal = true\n[[node]]\nname = \"a\"\nlocal = true\n")
                .contains("listed twice")
        );
        assert!(err("[[node]]\nname = \"a\"\naddress = \"x\"\nport = 99999\n").contains("port"));
    }
}
