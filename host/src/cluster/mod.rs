//! The cluster a run works on: its nodes, their roles, and the transport
//! that reaches each. With no inventory the cluster is the local node.

pub mod docker;
pub mod files;
pub mod inventory;
pub mod local;
pub mod pg_tunnel;
mod programs;
mod select;
pub mod ssh;
pub mod stream;
mod transport;

pub use local::LocalNode;
pub use select::select;

use std::sync::Arc;

/// One node as the host knows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    pub is_local: bool,
    /// The node's own host name, when the inventory gives one.
    pub hostname: Option<String>,
    /// SSH port; 0 for the local node.
    pub port: u16,
    /// SSH user; the operator's own user for the local node.
    pub user: String,
    /// The proxies the inventory gives the node (`http-proxy`,
    /// `https-proxy`), for plugins that download on it (apt, agents).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_proxy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub https_proxy: Option<String>,
}

/// How the host reaches a node.
#[derive(Debug)]
pub enum Transport {
    Local(LocalNode),
    Ssh(ssh::SshNode),
}

/// A node and its transport.
#[derive(Debug)]
pub struct Node {
    pub info: NodeInfo,
    pub transport: Transport,
    /// Grant roots pinned on this node during the run (see [`files`]).
    pub files: files::Files,
    /// Programs pinned to absolute paths during the run (see [`programs`]).
    pub programs: programs::Programs,
}

/// The nodes selected for one run, in inventory order.
#[derive(Debug, Default)]
pub struct Cluster {
    nodes: Vec<Arc<Node>>,
    /// Every node of the inventory, selected or not.
    all: Arc<Vec<NodeInfo>>,
    /// The inventory's `cluster` name: which lock a shared journal takes.
    name: String,
}

/// The cluster name of an inventory that gives none (and of the local node).
pub const DEFAULT_CLUSTER: &str = "default";

impl Cluster {
    /// The embedded default: this machine alone, named `local`, holding the
    /// `core` role.
    pub fn local() -> Cluster {
        Cluster::local_with_roles(
            inventory::DEFAULT_LOCAL_ROLES
                .iter()
                .map(|r| r.to_string())
                .collect(),
        )
    }

    /// This machine alone, named `local`, holding `roles` (what the
    /// operator stored with `stackhost node local --roles`, see
    /// [`inventory::LocalNodeRoles`]).
    pub fn local_with_roles(roles: Vec<String>) -> Cluster {
        let info = NodeInfo {
            name: "local".into(),
            address: "127.0.0.1".into(),
            roles,
            is_local: true,
            hostname: None,
            port: 0,
            user: crate::process::local_user(),
            http_proxy: None,
            https_proxy: None,
        };
        Cluster::new(vec![Arc::new(Node {
            info,
            transport: Transport::Local(LocalNode::new("local")),
            files: Default::default(),
            programs: Default::default(),
        })])
    }

    /// A cluster of all of `nodes`.
    pub fn new(nodes: Vec<Arc<Node>>) -> Cluster {
        let all = Arc::new(nodes.iter().map(|n| n.info.clone()).collect());
        Cluster {
            nodes,
            all,
            name: DEFAULT_CLUSTER.into(),
        }
    }

    /// The same cluster under the name `name`.
    pub fn named(mut self, name: impl Into<String>) -> Cluster {
        self.name = name.into();
        self
    }

    /// The inventory's `cluster` name ([`DEFAULT_CLUSTER`] if it gives none).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Keep only the nodes that `selectors` pick (see [`select`]).
    pub fn select(self, selectors: &[String]) -> Result<Cluster, String> {
        let infos: Vec<NodeInfo> = self.nodes.iter().map(|n| n.info.clone()).collect();
        let keep = select(&infos, selectors)?;
        Ok(Cluster {
            nodes: self
                .nodes
                .into_iter()
                .filter(|n| keep.contains(&n.info.name))
                .collect(),
            all: self.all,
            name: self.name,
        })
    }

    /// Every node of the inventory, selected for the run or not.
    pub fn inventory(&self) -> &[NodeInfo] {
        &self.all
    }

    /// Every node of the run.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Node>> {
        self.nodes.iter().find(|n| n.info.name == name)
    }
}

/// Why an operation on a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unreachable(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Failed(String),
    /// The node refused: the operation would leave its grant.
    #[error("{0}")]
    Denied(String),
}

impl NodeError {
    /// Map an I/O error on `path` to the matching variant.
    pub fn io(node: &str, op: &str, path: &std::path::Path, e: std::io::Error) -> NodeError {
        let msg = format!("{op} `{}` on node {node}: {e}", path.display());
        match e.kind() {
            std::io::ErrorKind::NotFound => NodeError::NotFound(msg),
            _ => NodeError::Io(msg),
        }
    }
}

/// A program to run on a node, already checked against the grant.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// The program as the plugin named it (errors and records say this).
    pub program: String,
    /// Where it is on the node, when pinned (see [`programs`]): what runs.
    pub pinned: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub user: Option<String>,
    pub cwd: Option<String>,
    pub timeout: std::time::Duration,
    /// Where the program's output goes as it arrives (`exec.run-live`),
    /// besides being captured.
    pub live: Option<LiveSink>,
}

/// Takes a running program's output, stdout and stderr alike, as it
/// arrives.
#[derive(Clone)]
pub struct LiveSink(pub std::sync::Arc<LiveFn>);

/// What a [`LiveSink`] calls with each piece of output.
pub type LiveFn = dyn Fn(&[u8]) + Send + Sync;

impl LiveSink {
    pub fn take(&self, data: &[u8]) {
        (self.0)(data)
    }
}

impl std::fmt::Debug for LiveSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveSink")
    }
}

/// What a finished program produced.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub status: i32,
    /// The signal that killed the program, if one did.
    pub signal: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub truncated: bool,
}

/// Output beyond this many bytes per stream is dropped (and flagged).
pub const CAPTURE_LIMIT: usize = 4 << 20;

/// A POSIX environment variable name: `[A-Za-z_][A-Za-z0-9_]*`. Anything
/// else (`=`, spaces, NUL) could smuggle a second assignment into the
/// program's environment.
pub fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The `PATH` programs get on a node.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
