//! `stackhost:host/nodes`: the nodes selected for the run, with roles, and
//! the whole inventory (`list-all`). Linked for every plugin: a plugin may
//! see every node's name, address, port, user and roles, never a key;
//! the other capabilities reach only the selected nodes.

mod host;

use crate::caps::interface::Interface;
use semver::Version;

/// Marker for the `nodes` interface.
pub struct Nodes;

impl Interface for Nodes {
    const NAME: &'static str = "nodes";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;
}
