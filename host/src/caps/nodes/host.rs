//! The `nodes` Host impl and its linker.

use super::Nodes;
use crate::caps::bindings::stackhost::host::nodes::{self, Node, NodeDetail};
use crate::caps::ctx::CapView;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use crate::cluster::NodeInfo;
use wasmtime::component::{HasData, Linker};

impl HasData for Nodes {
    type Data<'a> = CapView<'a>;
}

impl Link for Nodes {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        nodes::add_to_linker::<T, Nodes>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}

fn to_wit(info: &NodeInfo) -> Node {
    Node {
        name: info.name.clone(),
        address: info.address.clone(),
        roles: info.roles.clone(),
        is_local: info.is_local,
    }
}

impl nodes::Host for CapView<'_> {
    async fn list(&mut self) -> wasmtime::Result<Vec<Node>> {
        Ok(self
            .call
            .cluster
            .nodes()
            .iter()
            .map(|n| to_wit(&n.info))
            .collect())
    }

    async fn with_role(&mut self, role: String) -> wasmtime::Result<Vec<Node>> {
        Ok(self
            .call
            .cluster
            .nodes()
            .iter()
            .filter(|n| n.info.roles.contains(&role))
            .map(|n| to_wit(&n.info))
            .collect())
    }

    async fn get(&mut self, name: String) -> wasmtime::Result<Option<Node>> {
        Ok(self.call.cluster.get(&name).map(|n| to_wit(&n.info)))
    }

    async fn list_all(&mut self) -> wasmtime::Result<Vec<NodeDetail>> {
        let cluster = &self.call.cluster;
        Ok(cluster
            .inventory()
            .iter()
            .map(|info| NodeDetail {
                name: info.name.clone(),
                address: info.address.clone(),
                hostname: info.hostname.clone(),
                port: info.port,
                user: info.user.clone(),
                roles: info.roles.clone(),
                is_local: info.is_local,
                selected: cluster.get(&info.name).is_some(),
                http_proxy: info.http_proxy.clone(),
                https_proxy: info.https_proxy.clone(),
            })
            .collect())
    }
}
