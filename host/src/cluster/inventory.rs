//! The inventory: a TOML file listing the cluster's nodes with address,
//! port, user and roles ([`EXAMPLE`] shows every field). Without one, the
//! cluster is the local node alone, holding the roles the operator stored
//! with `stackhost node local` ([`LocalNodeRoles`]), else `core`.

use super::ssh::{SshNode, SshOptions, SshTarget};
use super::{Cluster, LocalNode, Node, NodeInfo, Transport};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A complete, commented inventory: what `stackhost inventory init` writes
/// and README.md shows. It must parse (a unit test holds it to that).
pub const EXAMPLE: &str = r#"# stackhost inventory: the nodes of one cluster, how to reach each, and
# their roles. `stackhost inventory check` shows what stackhost reads from
# it. Unknown fields are errors.

# The cluster's name (default "default"): operators sharing a PostgreSQL
# journal each take this cluster's own lock.
cluster = "production"

# Defaults for every node reached over SSH; a [[node]] may override each.
[defaults]
user = "stackato"          # SSH login user (default "root")
port = 22                  # SSH port (default 22)
identity = "/home/stackato/.ssh/id_ed25519"  # private key; without one: ssh-agent,
                           # then ~/.ssh/id_ed25519, id_ecdsa, id_rsa
sudo = true                # file operations through `sudo -n` (default false);
                           # for a login user that is not root
http-proxy = "http://proxy.example.internal:3128"   # optional, also per node:
https-proxy = "http://proxy.example.internal:3128"  # what plugins download through
                           # on the nodes (apt, agents); never used by stackhost

# One [[node]] per machine. `name`: unique; letters, digits, `-`, `_`, `.`.
# `roles`: what runs there (not empty, no `,`, `:` or space); a run picks
# nodes with --nodes NAME, --nodes 'dea-*' or --nodes role:dea.
[[node]]
name = "core"
local = true               # the machine stackhost runs on: no SSH, so no
                           # address, port or user (it runs as you)
hostname = "core-1.example.internal"  # optional: the node's own host name,
                           # for plugins (Nagios, New Relic); never dialled
roles = ["core", "controller", "primary", "router"]

[[node]]
name = "db"
address = "10.0.0.11"      # IP or DNS name stackhost connects to
hostname = "db-1.example.internal"
roles = ["postgresql", "filesystem"]

[[node]]
name = "dea-1"
address = "10.0.0.21"
roles = ["dea"]

[[node]]
name = "dea-2"
address = "10.0.0.22"
port = 2222                # these four override [defaults] for this node
user = "root"
identity = "/root/.ssh/dea_ed25519"
sudo = false
roles = ["dea"]
"#;

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
    #[serde(rename = "http-proxy")]
    http_proxy: Option<String>,
    #[serde(rename = "https-proxy")]
    https_proxy: Option<String>,
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
    /// Proxies for what plugins download on the node (apt, agents).
    #[serde(rename = "http-proxy")]
    http_proxy: Option<String>,
    #[serde(rename = "https-proxy")]
    https_proxy: Option<String>,
    #[serde(default)]
    local: bool,
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InventoryFile {
    /// The cluster's name: which lock a shared (PostgreSQL) journal takes.
    cluster: Option<String>,
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "node", default)]
    nodes: Vec<NodeEntry>,
}

/// The inventory used when neither `--inventory` nor `STACKHOST_INVENTORY`
/// names one (it is used only if it exists).
pub fn default_path(paths: &crate::paths::Paths) -> PathBuf {
    paths.config.join("inventory.toml")
}

/// Load the inventory at `path` into a cluster.
pub fn load(path: &Path, ssh: SshOptions) -> Result<Cluster, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| InventoryError::Read(path.into(), e))?;
    parse(path, &text, ssh)
}

/// Read and validate the inventory at `path` without preparing any
/// connection: the nodes as a run would see them.
pub fn read_nodes(path: &Path) -> Result<Vec<NodeInfo>, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| InventoryError::Read(path.into(), e))?;
    Ok(entries(path, &text)?
        .into_iter()
        .map(|(info, _)| info)
        .collect())
}

fn parse(path: &Path, text: &str, ssh: SshOptions) -> Result<Cluster, InventoryError> {
    let ssh = Arc::new(ssh);
    let name = cluster_name(path, text)?;
    let nodes = entries(path, text)?
        .into_iter()
        .map(|(info, target)| {
            let transport = match target {
                None => Transport::Local(LocalNode::new(&info.name)),
                Some(t) => Transport::Ssh(SshNode::new(&info.name, t, ssh.clone())),
            };
            Arc::new(Node {
                info,
                transport,
                files: Default::default(),
                programs: Default::default(),
            })
        })
        .collect();
    Ok(Cluster::new(nodes).named(name))
}

/// The inventory's `cluster` name, checked like a node name.
fn cluster_name(path: &Path, text: &str) -> Result<String, InventoryError> {
    let file: InventoryFile =
        toml::from_str(text).map_err(|e| InventoryError::Toml(path.into(), e))?;
    let name = file
        .cluster
        .unwrap_or_else(|| super::DEFAULT_CLUSTER.into());
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        return Err(InventoryError::Invalid(
            path.into(),
            format!(
                "cluster name `{}` must be letters, digits, `-`, `_` or `.`",
                name.escape_default()
            ),
        ));
    }
    Ok(name)
}

/// Every node of the inventory `text`, checked, with its SSH target (none
/// for the local node).
// Long because it is every field of a node checked in turn, each with its own
// message.
fn entries(path: &Path, text: &str) -> Result<Vec<(NodeInfo, Option<SshTarget>)>, InventoryError> {
    let file: InventoryFile =
        toml::from_str(text).map_err(|e| InventoryError::Toml(path.into(), e))?;
    let invalid = |m: String| InventoryError::Invalid(path.into(), m);
    if file.nodes.is_empty() {
        return Err(invalid("it lists no [[node]]".into()));
    }
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
        if let Some(role) = n.roles.iter().find(|r| !valid_role(r)) {
            return Err(invalid(format!(
                "node `{}` has a malformed role `{}` ({ROLE_RULE})",
                n.name,
                role.escape_default()
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
        let http_proxy = n.http_proxy.or(file.defaults.http_proxy.clone());
        let https_proxy = n.https_proxy.or(file.defaults.https_proxy.clone());
        for (field, value) in [("http-proxy", &http_proxy), ("https-proxy", &https_proxy)] {
            if let Some(v) = value
                && !valid_proxy(v)
            {
                return Err(invalid(format!(
                    "node `{}` has a malformed {field} `{}` (http://HOST[:PORT] or \
                     https://HOST[:PORT], printable, no spaces)",
                    n.name,
                    v.escape_default()
                )));
            }
        }
        let (address, port, user, target) = if n.local {
            if n.address.is_some() || n.port.is_some() || n.user.is_some() {
                return Err(invalid(format!(
                    "node `{}` is local; it takes no address, port or user",
                    n.name
                )));
            }
            (
                "127.0.0.1".to_string(),
                0,
                crate::process::local_user(),
                None,
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
            (address, target.port, target.user.clone(), Some(target))
        };
        let info = NodeInfo {
            name: n.name,
            address,
            roles: n.roles,
            is_local: n.local,
            hostname: n.hostname,
            port,
            user,
            http_proxy,
            https_proxy,
        };
        nodes.push((info, target));
    }
    Ok(nodes)
}

/// A proxy URL: `http://` or `https://`, a host, printable ASCII without
/// spaces or quotes (it ends up in a program's environment).
fn valid_proxy(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with(['/', ':'])
            && url.len() <= 2048
            && url
                .bytes()
                .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\' | b'`'))
    })
}

/// What a role may be, as errors say it.
const ROLE_RULE: &str = "a role is not empty and holds no `,`, `:` or space";

/// A role name: not empty, and free of the characters `--nodes role:R,...`
/// and `--roles A,B` split on.
fn valid_role(role: &str) -> bool {
    !role.is_empty() && !role.contains([',', ':', ' '])
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

/// The roles of the local node when there is no inventory, kept in
/// `<config>/local-node.toml` by `stackhost node local --roles`; a small
/// file so an operator with one machine never has to write an inventory.
#[derive(Debug, Clone)]
pub struct LocalNodeRoles {
    path: PathBuf,
}

/// The local node's roles when none are stored.
pub const DEFAULT_LOCAL_ROLES: &[&str] = &["core"];

/// Why the local node's stored roles could not be read, checked or saved.
#[derive(Debug, thiserror::Error)]
pub enum LocalRolesError {
    #[error("cannot read the local node's roles from {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot save the local node's roles to {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error(
        "the local node's roles in {0} are not valid: {1} (fix the file, or go back to `core` \
         with `stackhost node local --reset`)"
    )]
    Invalid(PathBuf, String),
    #[error("malformed role `{0}`: {ROLE_RULE}")]
    Role(String),
    #[error("no role given; to go back to the default `core`, use --reset")]
    NoRoles,
}

#[derive(Debug, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalNodeFile {
    roles: Vec<String>,
}

impl LocalNodeRoles {
    /// The stored roles under the configuration directory `config`.
    pub fn in_config(config: &Path) -> LocalNodeRoles {
        LocalNodeRoles {
            path: config.join("local-node.toml"),
        }
    }

    /// The file the roles are kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored roles, or `None` when none are stored.
    pub fn load(&self) -> Result<Option<Vec<String>>, LocalRolesError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LocalRolesError::Read(self.path.clone(), e)),
        };
        let invalid = |m: String| LocalRolesError::Invalid(self.path.clone(), m);
        let file: LocalNodeFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        check_local_roles(&file.roles).map_err(|e| invalid(e.to_string()))?;
        Ok(Some(file.roles))
    }

    /// The stored roles, else [`DEFAULT_LOCAL_ROLES`].
    pub fn load_or_default(&self) -> Result<Vec<String>, LocalRolesError> {
        Ok(self
            .load()?
            .unwrap_or_else(|| DEFAULT_LOCAL_ROLES.iter().map(|r| r.to_string()).collect()))
    }

    /// Store `roles` (checked first), replacing what was stored.
    pub fn save(&self, roles: &[String]) -> Result<(), LocalRolesError> {
        check_local_roles(roles)?;
        let write = |e| LocalRolesError::Write(self.path.clone(), e);
        let body = toml::to_string(&LocalNodeFile {
            roles: roles.to_vec(),
        })
        .map_err(|e| write(std::io::Error::other(e)))?;
        let text = format!(
            "# The local node's roles when there is no inventory; written by\n\
             # `stackhost node local --roles`, removed by `--reset`.\n{body}"
        );
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(write)?;
        // A whole file or the old one, never half of one.
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(write)?;
        std::io::Write::write_all(&mut tmp, text.as_bytes()).map_err(write)?;
        tmp.persist(&self.path).map_err(|e| write(e.error))?;
        Ok(())
    }

    /// Forget the stored roles; whether there were any.
    pub fn reset(&self) -> Result<bool, LocalRolesError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(LocalRolesError::Write(self.path.clone(), e)),
        }
    }
}

/// The local node's roles follow the inventory's rule, and there is at
/// least one (no roles at all is what `--reset` is for).
fn check_local_roles(roles: &[String]) -> Result<(), LocalRolesError> {
    if roles.is_empty() {
        return Err(LocalRolesError::NoRoles);
    }
    match roles.iter().find(|r| !valid_role(r)) {
        Some(r) => Err(LocalRolesError::Role(r.escape_default().to_string())),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ssh::HANDSHAKES;
    use std::time::Duration;

    fn opts() -> SshOptions {
        SshOptions {
            known_hosts: "/dev/null".into(),
            accept_new_host_keys: false,
            connect_timeout: Duration::from_secs(1),
            handshakes: SshOptions::handshake_limit(HANDSHAKES),
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
    fn the_example_parses_with_every_field_applied() {
        let c = parse_str(EXAMPLE).expect("the example inventory parses");
        let names: Vec<&str> = c.nodes().iter().map(|n| n.info.name.as_str()).collect();
        assert_eq!(names, ["core", "db", "dea-1", "dea-2"]);
        let core = &c.get("core").unwrap().info;
        assert!(core.is_local);
        assert_eq!(core.hostname.as_deref(), Some("core-1.example.internal"));
        let db = &c.get("db").unwrap().info;
        assert_eq!((db.port, db.user.as_str()), (22, "stackato"));
        let dea2 = &c.get("dea-2").unwrap().info;
        assert_eq!((dea2.port, dea2.user.as_str()), (2222, "root"));
        let Transport::Ssh(ssh) = &c.get("dea-2").unwrap().transport else {
            panic!("dea-2 is reached over SSH");
        };
        assert!(!ssh.sudo(), "dea-2 overrides sudo");
        for n in c.nodes() {
            assert_eq!(
                n.info.http_proxy.as_deref(),
                Some("http://proxy.example.internal:3128")
            );
        }
    }

    #[test]
    fn proxies_come_from_the_node_or_the_defaults_and_are_checked() {
        let c = parse_str(
            "[defaults]\nhttp-proxy = \"http://p:3128\"\n\
             [[node]]\nname = \"a\"\naddress = \"x\"\n\
             [[node]]\nname = \"b\"\naddress = \"y\"\nhttp-proxy = \"http://q:8080/\"\n\
             https-proxy = \"https://q:8443\"\n",
        )
        .unwrap();
        let a = &c.get("a").unwrap().info;
        assert_eq!(
            (a.http_proxy.as_deref(), a.https_proxy.as_deref()),
            (Some("http://p:3128"), None)
        );
        let b = &c.get("b").unwrap().info;
        assert_eq!(
            (b.http_proxy.as_deref(), b.https_proxy.as_deref()),
            (Some("http://q:8080/"), Some("https://q:8443"))
        );
        for bad in [
            "p:3128",
            "ftp://p",
            "http://",
            "http://a b",
            "http://p\\u001b[2J",
            "http://p'x",
        ] {
            let text = format!("[[node]]\nname = \"a\"\naddress = \"x\"\nhttp-proxy = \"{bad}\"\n");
            let e = parse_str(&text).expect_err(bad).to_string();
            assert!(
                e.contains("node `a` has a malformed http-proxy"),
                "{bad}: {e}"
            );
            assert!(!e.contains('\u{1b}'), "{e:?}");
        }
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
        assert_eq!(
            err("[[node]]\nname = \"a\"\nlocal = true\nroles = [\"x:y\"]\n"),
            "the inventory inv.toml is not valid: node `a` has a malformed role `x:y` \
             (a role is not empty and holds no `,`, `:` or space)"
        );
    }

    #[test]
    fn local_roles_are_stored_checked_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        let local = LocalNodeRoles::in_config(&config);
        assert_eq!(local.load().unwrap(), None);
        assert_eq!(local.load_or_default().unwrap(), ["core"]);
        let roles = vec!["core".to_string(), "postgresql".to_string()];
        local.save(&roles).unwrap();
        assert_eq!(local.load().unwrap(), Some(roles));
        for bad in ["", "a b", "a:b", "a,b"] {
            assert_eq!(
                local.save(&[bad.to_string()]).unwrap_err().to_string(),
                format!("malformed role `{bad}`: {ROLE_RULE}")
            );
        }
        assert!(matches!(local.save(&[]), Err(LocalRolesError::NoRoles)));
        std::fs::write(local.path(), "roles = [\"ok\", \"not ok\"]\n").unwrap();
        let err = local.load().unwrap_err().to_string();
        assert!(err.contains("malformed role `not ok`"), "{err}");
        assert!(local.reset().unwrap());
        assert!(!local.reset().unwrap());
        assert_eq!(local.load_or_default().unwrap(), ["core"]);
    }
}
