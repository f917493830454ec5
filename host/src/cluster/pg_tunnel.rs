//! A TCP stream to a port on a remote node's own loopback (PostgreSQL's
//! 127.0.0.1:5432), carried by a `direct-tcpip` channel of the node's
//! existing SSH connection, so the database port is never published and
//! the connection is authenticated by SSH first.

use super::NodeError;
use super::ssh::SshNode;
use russh::ChannelStream;
use russh::client::Msg;

/// Open a stream to `127.0.0.1:port` as seen from the node `name`
/// (AsyncRead + AsyncWrite, for `tokio_postgres::Config::connect_raw`).
pub async fn open(name: &str, node: &SshNode, port: u16) -> Result<ChannelStream<Msg>, NodeError> {
    let handle = node.connection().await?;
    let channel = handle
        .channel_open_direct_tcpip("127.0.0.1", u32::from(port), "127.0.0.1", 0)
        .await
        .map_err(|e| {
            NodeError::Unreachable(format!(
                "node {name}: cannot reach 127.0.0.1:{port} through its SSH connection \
                 (its sshd must allow TCP forwarding, AllowTcpForwarding): {e}"
            ))
        })?;
    Ok(channel.into_stream())
}
