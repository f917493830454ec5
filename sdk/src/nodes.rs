//! The nodes selected for this run, and [`Node`], the handle through which
//! a plugin runs programs and touches files on one of them.

use crate::bindings::stackhost::host::{exec as wit_exec, fs as wit_fs, nodes as wit_nodes};
use crate::exec::{Command, Output};
use crate::fs::{DirEntry, Metadata};
use crate::{Error, Result};
use std::borrow::Borrow;
use std::cell::OnceCell;
use std::time::Duration;

/// The most [`Node::read_to_string`] reads; bigger files are an
/// [`Error::InvalidArgument`] from the host. Use [`Node::read`] to choose.
pub const READ_TO_STRING_MAX: u64 = 1 << 20;

/// Every node selected for this run (`--nodes`), in inventory order.
pub fn all() -> Vec<Node> {
    wit_nodes::list().into_iter().map(Node::from_wit).collect()
}

/// The selected nodes that hold `role`, in inventory order.
pub fn with_role(role: &str) -> Vec<Node> {
    wit_nodes::with_role(role)
        .into_iter()
        .map(Node::from_wit)
        .collect()
}

/// The selected node called `name`, if there is one.
pub fn get(name: &str) -> Option<Node> {
    wit_nodes::get(name).map(Node::from_wit)
}

/// The selected node the host itself runs on, if it was selected.
pub fn local() -> Option<Node> {
    wit_nodes::list()
        .into_iter()
        .find(|n| n.is_local)
        .map(Node::from_wit)
}

/// A node of the inventory, selected for this run or not, with how the
/// host reaches it (see [`inventory`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryNode {
    /// Its unique name.
    pub name: String,
    /// The address the host connects to.
    pub address: String,
    /// The node's own host name, when the inventory gives one.
    pub hostname: Option<String>,
    /// SSH port (0 for the local node).
    pub port: u16,
    /// SSH user (the operator's own for the local node).
    pub user: String,
    /// Its roles.
    pub roles: Vec<String>,
    /// Whether it is the machine the host runs on.
    pub is_local: bool,
    /// Whether it is selected for this run: only selected nodes can be
    /// reached (run programs, touch files).
    pub selected: bool,
    /// The proxies the inventory gives the node (`http-proxy`,
    /// `https-proxy`), for what the plugin downloads on it.
    pub http_proxy: Option<String>,
    /// The node's `https-proxy`.
    pub https_proxy: Option<String>,
}

impl InventoryNode {
    /// Whether the node holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Every node of the inventory, selected for this run or not, in inventory
/// order: for configuration that describes the whole cluster (Nagios
/// hosts, peer lists) when the run writes to one node.
pub fn inventory() -> Vec<InventoryNode> {
    wit_nodes::list_all()
        .into_iter()
        .map(|n| InventoryNode {
            name: n.name,
            address: n.address,
            hostname: n.hostname,
            port: n.port,
            user: n.user,
            roles: n.roles,
            is_local: n.is_local,
            selected: n.selected,
            http_proxy: n.http_proxy,
            https_proxy: n.https_proxy,
        })
        .collect()
}

/// One node of the cluster.
///
/// Get one from [`all`], [`with_role`] or [`get`] while planning, or from
/// [`Step::node`](crate::Step::node) while applying. Every method that
/// reaches the node goes through the host, which checks it against the
/// plugin's grant; under `--dry-run` mutating calls are recorded instead of
/// made and report success.
#[derive(Debug, Clone)]
pub struct Node {
    name: String,
    // A step only carries the node's name; what else the host knows about
    // the node is asked for on first use, so applying a step that only runs
    // a program costs no extra host call.
    info: OnceCell<Option<wit_nodes::Node>>,
}

impl Node {
    fn from_wit(node: wit_nodes::Node) -> Node {
        Node {
            name: node.name.clone(),
            info: OnceCell::from(Some(node)),
        }
    }

    /// A handle on the node called `name`, without asking the host whether
    /// it exists (calls on an unknown node fail with [`Error::NotFound`]).
    pub fn named(name: impl Into<String>) -> Node {
        Node {
            name: name.into(),
            info: OnceCell::new(),
        }
    }

    fn info(&self) -> Option<&wit_nodes::Node> {
        self.info
            .get_or_init(|| wit_nodes::get(&self.name))
            .as_ref()
    }

    /// The node's unique name (`local`, `dea-1`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address the host reaches the node at; empty if the host does not
    /// know the node.
    pub fn address(&self) -> &str {
        self.info().map_or("", |n| n.address.as_str())
    }

    /// The roles the node holds (`core`, `dea`, `postgresql`, ...); empty if
    /// the host does not know the node.
    pub fn roles(&self) -> &[String] {
        self.info().map_or(&[], |n| n.roles.as_slice())
    }

    /// Whether the node holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles().iter().any(|r| r == role)
    }

    /// Whether this is the machine the host itself runs on.
    pub fn is_local(&self) -> bool {
        self.info().is_some_and(|n| n.is_local)
    }

    /// Run `cmd` on the node and wait for it. A non-zero exit status is not
    /// an error (see [`Output::check`]); failing to start the program is.
    /// Takes the command by value or by reference.
    pub fn run(&self, cmd: impl Borrow<Command>) -> Result<Output> {
        let cmd = cmd.borrow();
        let out = if cmd.is_live() {
            wit_exec::run_live(&self.name, cmd.as_wit())?
        } else {
            wit_exec::run(&self.name, cmd.as_wit())?
        };
        Ok(Output::new(cmd.program(), out))
    }

    /// Reboot the node and wait, at most `wait`, until it answers from a
    /// new boot (host 0.1.1; needs `reboot = true` in the exec grant).
    /// Under `--dry-run` nothing is rebooted and
    /// [`Rebooted::recorded`](crate::exec::Rebooted::recorded) is true. A
    /// node that is not back in time is an [`Error::Timeout`] naming it.
    pub fn reboot(&self, wait: Duration) -> Result<crate::exec::Rebooted> {
        let ms = u32::try_from(wait.as_millis()).unwrap_or(u32::MAX);
        Ok(crate::exec::Rebooted::new(wit_exec::reboot(
            &self.name, ms,
        )?))
    }

    /// Read the whole regular file at `path`, which may be at most
    /// `max_bytes` long and never more than the host's 16 MiB cap (a bigger
    /// file, a FIFO or a device is an [`Error::InvalidArgument`]).
    pub fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>> {
        Ok(wit_fs::read(&self.name, path, max_bytes)?)
    }

    /// Read the text file at `path` (at most [`READ_TO_STRING_MAX`] bytes).
    pub fn read_to_string(&self, path: &str) -> Result<String> {
        let bytes = self.read(path, READ_TO_STRING_MAX)?;
        String::from_utf8(bytes)
            .map_err(|_| Error::Plugin(format!("{path} on node {} is not UTF-8 text", self.name)))
    }

    /// Replace the file at `path` with `data`, atomically, keeping the old
    /// file's mode (0o644 for a new file).
    pub fn write(&self, path: &str, data: impl AsRef<[u8]>) -> Result<()> {
        Ok(wit_fs::write(&self.name, path, data.as_ref(), None)?)
    }

    /// Like [`Node::write`], with permission bits `mode` (for example 0o600).
    pub fn write_with_mode(&self, path: &str, data: impl AsRef<[u8]>, mode: u32) -> Result<()> {
        Ok(wit_fs::write(&self.name, path, data.as_ref(), Some(mode))?)
    }

    /// Metadata of `path` (not following a final symlink), or `None` when
    /// nothing is there.
    pub fn stat(&self, path: &str) -> Result<Option<Metadata>> {
        Ok(wit_fs::stat(&self.name, path)?)
    }

    /// Whether anything (file, directory, symlink) is at `path`.
    pub fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.stat(path)?.is_some())
    }

    /// The entries of the directory `path`, sorted by name.
    pub fn list_dir(&self, path: &str) -> Result<Vec<DirEntry>> {
        Ok(wit_fs::list_dir(&self.name, path)?)
    }

    /// Create the directory `path`; its parent must exist.
    pub fn mkdir(&self, path: &str) -> Result<()> {
        Ok(wit_fs::mkdir(&self.name, path, false)?)
    }

    /// Create the directory `path` and any missing parents; an existing
    /// directory is not an error.
    pub fn mkdir_all(&self, path: &str) -> Result<()> {
        Ok(wit_fs::mkdir(&self.name, path, true)?)
    }

    /// Remove a file, a symlink or an empty directory.
    pub fn remove(&self, path: &str) -> Result<()> {
        Ok(wit_fs::remove(&self.name, path, false)?)
    }

    /// Remove `path` and, if it is a directory, everything under it.
    pub fn remove_all(&self, path: &str) -> Result<()> {
        Ok(wit_fs::remove(&self.name, path, true)?)
    }

    /// Rename `source` to `target` on this node.
    pub fn rename(&self, source: &str, target: &str) -> Result<()> {
        Ok(wit_fs::rename(&self.name, source, target)?)
    }

    /// Create a symlink at `link` pointing to `target`. An absolute
    /// target must lie in the plugin's write scope; a relative one may not
    /// climb above the grant path holding the link.
    pub fn symlink(&self, target: &str, link: &str) -> Result<()> {
        Ok(wit_fs::symlink(&self.name, target, link)?)
    }

    /// Copy the file or tree at `source` on this node to `target` on
    /// `target_node` (which may be this node), streamed by the host.
    /// Returns the number of bytes copied.
    pub fn copy_to(&self, source: &str, target_node: &Node, target: &str) -> Result<u64> {
        Ok(wit_fs::copy(&self.name, source, &target_node.name, target)?)
    }
}

impl PartialEq for Node {
    // Names are unique in a cluster; what was fetched about the node is a
    // cache, not identity.
    fn eq(&self, other: &Node) -> bool {
        self.name == other.name
    }
}

impl Eq for Node {}
