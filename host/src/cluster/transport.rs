//! Running a program on a node, dispatched to the local machine or to an
//! SSH connection. (File operations go through [`super::files`].)

use super::{ExecOutput, ExecRequest, NodeError, Transport};
use std::time::Duration;

impl Transport {
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, NodeError> {
        match self {
            Transport::Local(l) => l.exec(req).await,
            Transport::Ssh(s) => s.exec(req).await,
        }
    }

    /// How long the connection opened since the last call took to set
    /// up; none for the local node, or when no connection was opened.
    pub fn take_handshake(&self) -> Option<Duration> {
        match self {
            Transport::Local(_) => None,
            Transport::Ssh(s) => s.take_handshake(),
        }
    }

    /// When the node first answered a program since the last call (the
    /// first bytes of its output); none for the local node.
    pub fn take_first_byte(&self) -> Option<std::time::Instant> {
        match self {
            Transport::Local(_) => None,
            Transport::Ssh(s) => s.take_first_byte(),
        }
    }

    /// Reboot the node and wait up to `wait` for it to come back (see
    /// [`super::ssh::SshNode::reboot`]). The local node is the machine
    /// stackhost runs on: never rebooted from here.
    pub async fn reboot(
        &self,
        name: &str,
        wait: Duration,
    ) -> Result<super::ssh::Rebooted, NodeError> {
        match self {
            Transport::Local(_) => Err(NodeError::Denied(format!(
                "node {name} is the machine stackhost runs on, which it does not reboot; \
                 reboot it yourself once the run is done"
            ))),
            Transport::Ssh(s) => s.reboot(wait).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::LocalNode;

    #[tokio::test]
    async fn the_local_node_is_never_rebooted() {
        let local = Transport::Local(LocalNode::new("core"));
        let e = local
            .reboot("core", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, NodeError::Denied(m) if m.contains("node core is the machine stackhost runs on")),
            "{e:?}"
        );
    }
}
