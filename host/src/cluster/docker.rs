//! A node's own Docker engine, spoken to through bollard: on a remote node
//! each Engine API request travels on a fresh `direct-streamlocal` channel
//! of the node's existing SSH connection to `/var/run/docker.sock` (sshd
//! connects the socket on the node, as `ssh -L local.sock:/var/run/docker.sock`
//! does); on the local node it goes to the socket directly. No TCP port of
//! the engine is ever opened and no `docker` CLI output is parsed.
//!
//! Where a node's sshd refuses stream-local forwarding (OpenSSH's
//! `AllowStreamLocalForwarding no`), the request goes instead through
//! `docker system dial-stdio` run on an exec channel: a byte pipe to the
//! same socket, so it is still the Engine API that is spoken.
//!
//! Each request gets its own channel and HTTP/1 connection (bollard's
//! custom transport hands over one request at a time): one channel-open
//! round trip more than a kept-alive connection, no pool to go stale when
//! the SSH connection is replaced. A streamlocal channel is not a session
//! (sshd's MaxSessions does not count it), so it takes none of
//! [`super::ssh::SESSION_CHANNELS`]; the engine channels open to one node
//! at once are bounded by their own [`STREAMS_PER_NODE`] permits instead,
//! each held until its channel closes.

use super::ssh::SessionChannel;
use super::{Node, NodeError, Transport};
use bollard::{BollardRequest, Docker};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Where a node's engine listens.
pub const SOCKET: &str = "/var/run/docker.sock";

/// What runs on a node whose sshd refuses stream-local forwarding: the
/// docker CLI's byte pipe to its engine's socket (nothing it prints is
/// parsed; it carries the Engine API's HTTP).
const DIAL_STDIO: &str = "docker system dial-stdio";

/// The Engine API version spoken: 1.41 (Docker 20.10, Debian bookworm's
/// `docker.io`), which newer engines still serve; every call this host
/// makes exists in it.
pub const API_VERSION: bollard::ClientVersion = bollard::ClientVersion {
    major_version: 1,
    minor_version: 41,
};

/// Engine requests in flight to one node at once (each on its own channel).
pub const STREAMS_PER_NODE: usize = 8;

/// The engine permits of each remote node, by `user@address:port`: one
/// bound per node for the whole process, whichever run or step asks.
static PERMITS: LazyLock<Mutex<HashMap<String, Arc<Semaphore>>>> = LazyLock::new(Default::default);

fn permits(key: String) -> Arc<Semaphore> {
    let mut all = PERMITS.lock().unwrap_or_else(|p| p.into_inner());
    all.entry(key)
        .or_insert_with(|| Arc::new(Semaphore::new(STREAMS_PER_NODE)))
        .clone()
}

/// A bollard client for `node`'s engine. Nothing is connected until the
/// first request; `timeout_secs` bounds each request.
pub fn engine(node: &Arc<Node>, timeout_secs: u64) -> Result<Docker, NodeError> {
    let name = node.info.name.clone();
    let node = node.clone();
    let permits = match &node.transport {
        Transport::Local(_) => Arc::new(Semaphore::new(STREAMS_PER_NODE)),
        Transport::Ssh(_) => permits(format!(
            "{}@{}:{}",
            node.info.user, node.info.address, node.info.port
        )),
    };
    let transport = move |req: BollardRequest| {
        let node = node.clone();
        let permits = permits.clone();
        async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|_| io_error(std::io::ErrorKind::BrokenPipe, "engine permits closed"))?;
            send(&node, req, permit).await
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some("http://docker"),
        timeout_secs,
        &API_VERSION,
    )
    .map_err(|e| NodeError::Failed(format!("node {name}: docker client: {e}")))
}

fn io_error(kind: std::io::ErrorKind, msg: impl Into<String>) -> bollard::errors::Error {
    bollard::errors::Error::IOError {
        err: std::io::Error::new(kind, msg.into()),
    }
}

/// Send one request on a new connection to the node's socket.
async fn send(
    node: &Node,
    req: BollardRequest,
    permit: OwnedSemaphorePermit,
) -> Result<hyper::Response<Incoming>, bollard::errors::Error> {
    let req = origin_form(req)?;
    match &node.transport {
        Transport::Local(_) => {
            let stream = tokio::net::UnixStream::connect(SOCKET).await.map_err(|e| {
                io_error(
                    e.kind(),
                    format!(
                        "node {} has no Docker engine at {SOCKET}: {e}",
                        node.info.name
                    ),
                )
            })?;
            exchange(stream, req, permit).await
        }
        Transport::Ssh(ssh) => {
            let handle = ssh
                .connection()
                .await
                .map_err(|e| io_error(std::io::ErrorKind::ConnectionRefused, e.to_string()))?;
            match handle.channel_open_direct_streamlocal(SOCKET).await {
                Ok(channel) => exchange(channel.into_stream(), req, permit).await,
                // OpenSSH answers "connect failed" both when the socket is
                // missing and when its configuration refuses stream-local
                // forwarding (AllowStreamLocalForwarding no): try the
                // node's own `docker system dial-stdio`, which carries the
                // bytes on a session channel (taking a session permit).
                Err(russh::Error::ChannelOpenFailure(why)) => {
                    tracing::debug!(
                        node = %node.info.name,
                        "sshd refused a direct-streamlocal channel ({why:?}); trying `{DIAL_STDIO}`"
                    );
                    let session = ssh.open_session().await.map_err(|e| {
                        io_error(std::io::ErrorKind::ConnectionRefused, e.to_string())
                    })?;
                    let SessionChannel {
                        channel,
                        permit: session_permit,
                        ..
                    } = session;
                    channel
                        .exec(true, DIAL_STDIO)
                        .await
                        .map_err(|e| io_error(std::io::ErrorKind::BrokenPipe, e.to_string()))?;
                    exchange(channel.into_stream(), req, (permit, session_permit))
                        .await
                        .map_err(|e| {
                            io_error(
                                std::io::ErrorKind::NotFound,
                                format!(
                                    "node {} has no Docker engine at {SOCKET} reachable \
                                     through its SSH connection (is dockerd running?): the \
                                     direct-streamlocal channel was refused ({why:?}) and \
                                     `{DIAL_STDIO}` did not answer as an engine ({e})",
                                    node.info.name
                                ),
                            )
                        })
                }
                Err(e) => Err(io_error(
                    std::io::ErrorKind::NotFound,
                    format!(
                        "node {} has no Docker engine at {SOCKET} reachable through its \
                         SSH connection (is dockerd running?): {e}",
                        node.info.name
                    ),
                )),
            }
        }
    }
}

/// One HTTP/1 exchange on `stream`; the connection is driven by a task of
/// its own until the response body has been read (a build's log, a
/// push's progress), and holds the node's engine permit as long.
async fn exchange<S>(
    stream: S,
    req: BollardRequest,
    permit: impl Send + 'static,
) -> Result<hyper::Response<Incoming>, bollard::errors::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| bollard::errors::Error::HyperResponseError { err })?;
    tokio::spawn(async move {
        // The connection ends with the body or with the engine hanging up;
        // the caller sees either through the response. The request sender
        // is dropped below, so the connection closes after one exchange.
        let _ = conn.await;
        drop(permit);
    });
    sender
        .send_request(req)
        .await
        .map_err(|err| bollard::errors::Error::HyperResponseError { err })
}

/// bollard addresses a custom transport by an absolute URI
/// (`http://docker/v1.x/...`); a connection to one engine wants the path
/// and a Host header.
fn origin_form(req: BollardRequest) -> Result<BollardRequest, bollard::errors::Error> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    parts.uri = path
        .parse()
        .map_err(|err| bollard::errors::Error::InvalidURIError { err })?;
    parts.headers.insert(
        hyper::header::HOST,
        hyper::header::HeaderValue::from_static("docker"),
    );
    Ok(BollardRequest::from_parts(parts, body))
}
