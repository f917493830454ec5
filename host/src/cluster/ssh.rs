//! Remote nodes over SSH (russh): one connection per node per run, opened
//! on first use and shared by every step's channels; host keys verified
//! against known_hosts; public-key authentication with the inventory's key,
//! or ssh-agent and then `~/.ssh`. Files are handled with small POSIX
//! commands on the node, so exec and fs behave as on the local node.
//!
//! Session channels per connection are bounded below sshd's MaxSessions;
//! every command runs as its own process group, killed with its step (see
//! `group`); a channel that ends without an exit status is a lost
//! connection, never a result.

mod group;
mod reboot;

pub use reboot::Rebooted;

use super::{CAPTURE_LIMIT, DEFAULT_PATH, ExecOutput, ExecRequest, NodeError};
use crate::text::shell_quote as quote;
use group::{GroupGuard, GroupHeader, GroupKiller, in_own_group};
use russh::client::{self, Handle};
use russh::keys::{self, HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelMsg, Sig};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Session channels one connection holds at once. OpenSSH's sshd allows 10
/// per connection (MaxSessions) and refuses the eleventh; the rest are kept
/// for killing process groups ([`KILL_CHANNELS`]).
pub const SESSION_CHANNELS: usize = 8;
/// Session channels kept for `kill` commands, so a timed-out program can be
/// killed even while every other channel is busy.
const KILL_CHANNELS: usize = 2;

/// How long a refused channel open is retried (see [`open_channel`]).
const OPEN_RETRY_FOR: Duration = Duration::from_secs(5);

/// Open a session channel, retrying while sshd refuses it. sshd frees a
/// closed session's slot only when it collects dead channels, after it has
/// handled every packet it already read: an open sent right after another
/// channel's close can find the slot still taken (MaxSessions) and is
/// refused, although this side never holds more than the limit. Such a
/// refusal is retried for up to [`OPEN_RETRY_FOR`]; any other error is not.
async fn open_channel(handle: &Handle<Verifier>) -> Result<Channel<client::Msg>, russh::Error> {
    let until = tokio::time::Instant::now() + OPEN_RETRY_FOR;
    let mut pause = Duration::from_millis(5);
    loop {
        match handle.channel_open_session().await {
            Err(russh::Error::ChannelOpenFailure(_)) if tokio::time::Instant::now() < until => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

/// Where and how to reach one node.
#[derive(Debug, Clone)]
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Private key file; default: `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub identity: Option<PathBuf>,
    /// Run file operations through `sudo -n` (for a non-root login user).
    pub sudo: bool,
}

/// Settings shared by every SSH node of a run.
#[derive(Debug, Clone)]
pub struct SshOptions {
    pub known_hosts: PathBuf,
    /// Record an unknown host key instead of refusing it.
    pub accept_new_host_keys: bool,
    pub connect_timeout: Duration,
    /// Handshakes (TCP connect, key exchange, authentication) in flight at
    /// once across the run's nodes, whatever `--max-in-flight` says: a
    /// thousand nodes connect in waves rather than all at once, which
    /// would trip sshd's MaxStartups on a shared jump host and spike CPU.
    /// See [`SshOptions::handshake_limit`].
    pub handshakes: Arc<Semaphore>,
}

/// Default for [`SshOptions::handshakes`] (`--max-handshakes`).
pub const HANDSHAKES: usize = 64;

impl SshOptions {
    /// A fresh bound of `n` concurrent handshakes (`--max-handshakes`).
    pub fn handshake_limit(n: usize) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(n.max(1)))
    }
}

/// A node reached over SSH.
pub struct SshNode {
    name: String,
    target: SshTarget,
    options: Arc<SshOptions>,
    handle: tokio::sync::Mutex<Option<Arc<Handle<Verifier>>>>,
    /// Permits for ordinary session channels ([`SESSION_CHANNELS`]).
    session_channels: Arc<Semaphore>,
    /// Permits for kill channels ([`KILL_CHANNELS`]).
    kill_channels: Arc<Semaphore>,
    /// How long the last connection took to set up (TCP, key exchange,
    /// authentication), until a step's report takes it.
    handshake: Mutex<Option<Duration>>,
    /// When the node last sent the first bytes of a program's output (the
    /// process-group header every program starts with), until a step's
    /// report takes it.
    first_byte: Mutex<Option<std::time::Instant>>,
}

/// An open session channel, counted against its connection's
/// [`SESSION_CHANNELS`] until dropped (keep `permit` as long as the
/// channel, also after splitting it).
pub(crate) struct SessionChannel {
    pub(crate) channel: Channel<client::Msg>,
    pub(crate) permit: OwnedSemaphorePermit,
    handle: Arc<Handle<Verifier>>,
}

impl std::fmt::Debug for SshNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshNode")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish()
    }
}

/// Checks the server's key against known_hosts and remembers why it
/// refused one, for the error message.
pub(crate) struct Verifier {
    host: String,
    port: u16,
    options: Arc<SshOptions>,
    refusal: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let refuse = |why: String| {
            *self.refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
            Ok(false)
        };
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return refuse(
                "the server offered a host certificate; only plain host keys are supported".into(),
            );
        };
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        let path = &self.options.known_hosts;
        // russh takes a known_hosts it cannot open for an empty one: a
        // file out of reach (permissions, no descriptor left) must not
        // read as "this key is unknown".
        if let Err(e) = std::fs::File::open(path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return refuse(format!("cannot read {}: {e}", path.display()));
        }
        let known = if path.exists() {
            keys::check_known_hosts_path(&self.host, self.port, key, path)
        } else {
            Ok(false)
        };
        match known {
            Ok(true) => Ok(true),
            Ok(false) if self.options.accept_new_host_keys => {
                if let Some(dir) = path.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                match keys::known_hosts::learn_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(()) => Ok(true),
                    Err(e) => refuse(format!(
                        "cannot record the host key in {}: {e}",
                        path.display()
                    )),
                }
            }
            Ok(false) => refuse(format!(
                "its host key ({fingerprint}) is not in {}; check it and pass --accept-new-host-keys to record it",
                path.display()
            )),
            Err(keys::Error::KeyChanged { line }) => refuse(format!(
                "ITS HOST KEY HAS CHANGED: it now presents {fingerprint}, which does not match line {line} of {}. \
                 This may be an attack; if the node was reinstalled, remove that line and reconnect",
                path.display()
            )),
            Err(e) => refuse(format!(
                "cannot check its host key against {}: {e}",
                path.display()
            )),
        }
    }
}

impl SshNode {
    pub fn new(name: &str, target: SshTarget, options: Arc<SshOptions>) -> SshNode {
        SshNode {
            name: name.into(),
            target,
            options,
            handle: tokio::sync::Mutex::new(None),
            session_channels: Arc::new(Semaphore::new(SESSION_CHANNELS)),
            kill_channels: Arc::new(Semaphore::new(KILL_CHANNELS)),
            handshake: Mutex::new(None),
            first_byte: Mutex::new(None),
        }
    }

    /// How long the connection opened since the last call took to set up,
    /// if one was opened.
    pub fn take_handshake(&self) -> Option<Duration> {
        self.handshake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// When the node first answered a program since the last call, if it
    /// did.
    pub fn take_first_byte(&self) -> Option<std::time::Instant> {
        self.first_byte
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Note that a program's first output arrived now, unless an earlier
    /// one is still untaken.
    fn answered(&self) {
        self.first_byte
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(std::time::Instant::now);
    }

    fn unreachable(&self, why: impl std::fmt::Display) -> NodeError {
        NodeError::Unreachable(format!(
            "node {} ({}@{}:{}): {why}",
            self.name, self.target.user, self.target.address, self.target.port
        ))
    }

    /// The run's connection to this node, opened on first use.
    pub(crate) async fn connection(&self) -> Result<Arc<Handle<Verifier>>, NodeError> {
        let mut slot = self.handle.lock().await;
        if let Some(h) = slot.as_ref().filter(|h| !h.is_closed()) {
            return Ok(h.clone());
        }
        let _turn = self
            .options
            .handshakes
            .acquire()
            .await
            .map_err(|_| self.unreachable("the run is ending"))?;
        let started = std::time::Instant::now();
        let handle = Arc::new(self.connect().await?);
        *self.handshake.lock().unwrap_or_else(|p| p.into_inner()) = Some(started.elapsed());
        *slot = Some(handle.clone());
        Ok(handle)
    }

    // Long because it is TCP connect, key exchange, host-key check and
    // authentication in order, each with its own error for the operator.
    async fn connect(&self) -> Result<Handle<Verifier>, NodeError> {
        let config = Arc::new(client::Config {
            inactivity_timeout: Some(Duration::from_secs(3600)),
            keepalive_interval: Some(Duration::from_secs(15)),
            nodelay: true,
            ..Default::default()
        });
        let refusal = Arc::new(Mutex::new(None));
        let verifier = Verifier {
            host: self.target.address.clone(),
            port: self.target.port,
            options: self.options.clone(),
            refusal: refusal.clone(),
        };
        let addr = (self.target.address.as_str(), self.target.port);
        let connecting = client::connect(config, addr, verifier);
        let mut handle = match tokio::time::timeout(self.options.connect_timeout, connecting).await
        {
            Err(_) => {
                return Err(self.unreachable(format!(
                    "no answer within {:?}",
                    self.options.connect_timeout
                )));
            }
            Ok(Err(e)) => {
                let why = refusal.lock().unwrap_or_else(|p| p.into_inner()).take();
                return Err(self.unreachable(why.unwrap_or_else(|| e.to_string())));
            }
            Ok(Ok(h)) => h,
        };
        let mut tried = Vec::new();
        // Which signature hash an RSA key should use with this server.
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .ok()
            .flatten()
            .flatten();
        // The agent first (unless the inventory names a key file), as ssh does.
        if self.target.identity.is_none()
            && let Ok(mut agent) = keys::agent::client::AgentClient::connect_env().await
        {
            let identities = agent.request_identities().await.unwrap_or_default();
            for identity in identities {
                let keys::agent::AgentIdentity::PublicKey { key, .. } = identity else {
                    continue;
                };
                let print = key.fingerprint(HashAlg::Sha256);
                match handle
                    .authenticate_publickey_with(&self.target.user, key, hash, &mut agent)
                    .await
                {
                    Ok(r) if r.success() => return Ok(handle),
                    Ok(_) => tried.push(format!("agent key {print} (refused)")),
                    Err(e) => tried.push(format!("agent key {print} ({e})")),
                }
            }
        }
        let keys = self.identities();
        for path in &keys {
            let key = match keys::load_secret_key(path, None) {
                Ok(k) => k,
                Err(e) => {
                    tried.push(format!("{} (unreadable: {e})", path.display()));
                    continue;
                }
            };
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            match handle.authenticate_publickey(&self.target.user, key).await {
                Ok(r) if r.success() => return Ok(handle),
                Ok(_) => tried.push(format!("{} (refused)", path.display())),
                Err(e) => return Err(self.unreachable(format!("authentication failed: {e}"))),
            }
        }
        let tried = if tried.is_empty() {
            "no key files found".to_string()
        } else {
            tried.join(", ")
        };
        Err(self.unreachable(format!(
            "public-key authentication as {} failed; tried {tried}",
            self.target.user
        )))
    }

    fn identities(&self) -> Vec<PathBuf> {
        if let Some(p) = &self.target.identity {
            return vec![p.clone()];
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        ["id_ed25519", "id_ecdsa", "id_rsa"]
            .iter()
            .map(|n| home.join(".ssh").join(n))
            .filter(|p| p.exists())
            .collect()
    }

    /// Open a session channel on the run's connection, after waiting for
    /// one of its [`SESSION_CHANNELS`] permits. Every session channel
    /// (programs, scripts, streams) is opened here.
    pub(crate) async fn open_session(&self) -> Result<SessionChannel, NodeError> {
        let permit = self
            .session_channels
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.unreachable("its channels are closed"))?;
        let handle = self.connection().await?;
        let channel = open_channel(&handle)
            .await
            .map_err(|e| self.unreachable(format!("cannot open a session channel: {e}")))?;
        Ok(SessionChannel {
            channel,
            permit,
            handle,
        })
    }

    /// The error for a channel that ended with neither an exit status nor
    /// a signal: the connection went away under it.
    fn lost(&self, what: &str) -> NodeError {
        self.unreachable(format!(
            "the connection was lost while {what} ran; it may still be running on the node"
        ))
    }

    /// Refuse a command line with a NUL byte: it would end the line early
    /// (and a NUL in an SSH request has dropped the whole connection).
    fn check_line(&self, line: &str) -> Result<(), NodeError> {
        if line.contains('\0') {
            return Err(NodeError::InvalidArgument(format!(
                "a command for node {} contains a NUL byte",
                self.name
            )));
        }
        Ok(())
    }

    /// Start `line` on `session` in its own process group, with a guard
    /// that kills the group (through `sudo` when needed) unless disarmed.
    /// The permit is held for the channel's life.
    async fn start(
        &self,
        session: SessionChannel,
        sudo: Vec<String>,
        line: &str,
    ) -> Result<
        (
            russh::ChannelReadHalf,
            russh::ChannelWriteHalf<client::Msg>,
            GroupGuard,
            OwnedSemaphorePermit,
        ),
        NodeError,
    > {
        let guard = GroupGuard::new(GroupKiller::new(self, &session, sudo));
        let SessionChannel {
            channel, permit, ..
        } = session;
        channel
            .exec(true, in_own_group(line).as_bytes())
            .await
            .map_err(|e| self.unreachable(e))?;
        let (read, write) = channel.split();
        Ok((read, write, guard, permit))
    }

    /// Run a command line on the node as its own process group, feeding
    /// `stdin`; `what` names it in errors, `sudo` runs the kill of its
    /// group on a timeout. Past `timeout` the whole group is killed.
    // Long because it is the SSH form of cluster::local's exec: one channel's
    // feeding, capture, timeout and group kill as one sequence.
    async fn run_line(
        &self,
        what: &str,
        line: &str,
        stdin: Option<&[u8]>,
        timeout: Duration,
        sudo: Vec<String>,
        live: Option<&super::LiveSink>,
    ) -> Result<ExecOutput, NodeError> {
        self.check_line(line)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || {
            NodeError::Timeout(format!(
                "{what} on node {} ran past its timeout of {timeout:?} and was killed, with every \
                 process it started",
                self.name
            ))
        };
        let session = tokio::time::timeout_at(deadline, self.open_session())
            .await
            .map_err(|_| {
                NodeError::Timeout(format!(
                    "{what} on node {} did not get a session channel within its timeout of \
                     {timeout:?} ({SESSION_CHANNELS} per connection, all busy); it did not start",
                    self.name
                ))
            })??;
        let (mut read, write, mut guard, _permit) = self.start(session, sudo, line).await?;
        let mut out = ExecOutput {
            status: -1,
            ..Default::default()
        };
        let mut header = GroupHeader::default();
        let mut ended = false;
        let drain = async {
            let keep = |buf: &mut Vec<u8>, data: &[u8], cut: &mut bool| {
                let room = CAPTURE_LIMIT - buf.len();
                *cut |= data.len() > room;
                buf.extend_from_slice(&data[..data.len().min(room)]);
            };
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        self.answered();
                        let data = header.take(&data);
                        guard.arm(header.pgid());
                        if let Some(live) = live {
                            live.take(&data);
                        }
                        keep(&mut out.stdout, &data, &mut out.truncated)
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        if let Some(live) = live {
                            live.take(&data);
                        }
                        keep(&mut out.stderr, &data, &mut out.truncated)
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        out.status = exit_status as i32;
                        ended = true;
                    }
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        out.signal = Some(signal_number(&format!("{signal_name:?}")));
                        ended = true;
                    }
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            let rest = header.finish();
            keep(&mut out.stdout, &rest, &mut out.truncated);
        };
        let feed = async {
            if let Some(data) = stdin {
                // A program that exits without reading its input is not an
                // error; its status says what happened.
                let _ = write.data(data).await;
            }
            let _ = write.eof().await;
        };
        let work = async {
            tokio::pin!(drain);
            tokio::select! {
                biased;
                () = &mut drain => {}
                () = feed => drain.await,
            }
        };
        if tokio::time::timeout_at(deadline, work).await.is_err() {
            // sshd answers `signal` with killpg of the group (not for a
            // root login); the kill channel works for every login.
            let _ = tokio::time::timeout(Duration::from_secs(2), write.signal(Sig::KILL)).await;
            let killed = guard.kill().await;
            let _ = write.close().await;
            let mut err = timed_out();
            if let (NodeError::Timeout(m), Err(why)) = (&mut err, killed) {
                m.push_str(&format!(
                    " (but the kill of its process group failed: {why})"
                ));
            }
            return Err(err);
        }
        guard.disarm();
        if !ended {
            return Err(self.lost(what));
        }
        Ok(out)
    }

    /// Run a program as `exec` asks.
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, NodeError> {
        self.exec_via(req, None).await
    }

    /// Run a program as `exec` asks, through the node's agent at `reaper`
    /// (`stackhost-agent reap`, so a timeout ends even what the program
    /// started detached), unless it runs as a user other than root or the
    /// login, whose processes the reaper could not kill.
    pub async fn exec_via(
        &self,
        req: &ExecRequest,
        reaper: Option<&str>,
    ) -> Result<ExecOutput, NodeError> {
        if let Some((name, _)) = req.env.iter().find(|(k, _)| !super::is_env_name(k)) {
            // `env -i` would take `A=B=C` as the variable `A`: refuse
            // anything but a plain name, whoever asked.
            return Err(NodeError::InvalidArgument(format!(
                "environment variable name `{}` is not valid",
                name.escape_default()
            )));
        }
        let mut argv: Vec<String> = Vec::new();
        let mut sudo = Vec::new();
        if let Some(user) = req.user.as_ref().filter(|u| **u != self.target.user) {
            sudo.extend(["sudo", "-n", "-u", user.as_str(), "--"].map(String::from));
        }
        argv.extend(sudo.iter().cloned());
        let as_other = !sudo.is_empty() && req.user.as_deref() != Some("root");
        if let Some(agent) = reaper.filter(|_| !as_other) {
            argv.extend([agent.to_string(), "reap".into()]);
        }
        argv.extend(["env", "-i"].map(String::from));
        argv.push(format!("PATH={DEFAULT_PATH}"));
        argv.extend(req.env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.push(req.pinned.clone().unwrap_or_else(|| req.program.clone()));
        argv.extend(req.args.iter().cloned());
        let words: Vec<String> = argv.iter().map(|w| quote(w)).collect();
        let mut line = format!("exec {}", words.join(" "));
        if let Some(cwd) = &req.cwd {
            line = format!("cd {} && {line}", quote(cwd));
        }
        let what = format!("`{}`", req.program);
        self.run_line(
            &what,
            &line,
            req.stdin.as_deref(),
            req.timeout,
            sudo,
            req.live.as_ref(),
        )
        .await
    }

    /// Words that run a kill as root when the inventory asks for sudo.
    fn root_sudo(&self) -> Vec<String> {
        if self.target.sudo {
            ["sudo", "-n", "--"].map(String::from).to_vec()
        } else {
            Vec::new()
        }
    }

    /// Whether file operations go through `sudo -n` (non-root login).
    pub fn sudo(&self) -> bool {
        self.target.sudo
    }

    /// Run a command line on the node, streaming stdin and stdout in
    /// chunks (see [`super::stream`]), as its own process group: if the
    /// receiver of `stdout` goes away, or this future is dropped, the group
    // Long because it is a channel's data, stderr, exit status and the
    // consumer going away handled in one select loop.
    /// is killed. A channel that ends without an exit status (the
    /// connection was lost) is an error, never a status.
    pub async fn pipe(
        &self,
        line: &str,
        stdin: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
        stdout: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    ) -> Result<super::stream::PipeStatus, NodeError> {
        self.check_line(line)?;
        let session = self.open_session().await?;
        let (mut read, write, mut guard, _permit) =
            self.start(session, self.root_sudo(), line).await?;
        let feed = async {
            if let Some(mut rx) = stdin {
                while let Some(chunk) = rx.recv().await {
                    if write.data(&chunk[..]).await.is_err() {
                        break;
                    }
                }
            }
            let _ = write.eof().await;
        };
        let mut header = GroupHeader::default();
        let drain = async {
            let (mut status, mut stderr, mut alive, mut ended) = (-1, Vec::new(), true, false);
            let send = async |data: Vec<u8>| match &stdout {
                Some(tx) if !data.is_empty() => tx.send(data).await.is_ok(),
                _ => true,
            };
            while let Some(msg) = read.wait().await {
                match msg {
                    ChannelMsg::Data { data } => {
                        self.answered();
                        let data = header.take(&data);
                        guard.arm(header.pgid());
                        if !send(data).await {
                            alive = false;
                            break;
                        }
                    }
                    ChannelMsg::ExtendedData { data, ext: 1 } => {
                        let room = (64usize << 10).saturating_sub(stderr.len());
                        stderr.extend_from_slice(&data[..data.len().min(room)]);
                    }
                    ChannelMsg::ExitStatus { exit_status } => {
                        status = exit_status as i32;
                        ended = true;
                    }
                    ChannelMsg::ExitSignal { .. } => ended = true,
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            if alive && !send(header.finish()).await {
                alive = false;
            }
            (status, stderr, alive, ended)
        };
        // The output ending (the program exited, or the connection went)
        // ends the feeding too: a channel whose far end is gone may never
        // open its window again, and input nobody reads is moot.
        let (status, stderr, alive, ended) = {
            tokio::pin!(feed);
            tokio::pin!(drain);
            let mut fed = false;
            loop {
                tokio::select! {
                    () = &mut feed, if !fed => fed = true,
                    out = &mut drain => break out,
                }
            }
        };
        if !alive {
            // The consumer failed: stop the program and all it started.
            let _ = tokio::time::timeout(Duration::from_secs(2), write.signal(Sig::KILL)).await;
            let _ = guard.kill().await;
            let _ = write.close().await;
        } else {
            guard.disarm();
            if !ended {
                return Err(self.lost("a streaming command"));
            }
        }
        Ok(super::stream::PipeStatus {
            status,
            stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
            consumer_gone: !alive,
        })
    }

    /// Run a small POSIX shell script with positional arguments, through
    /// sudo when the inventory asks for it. Exit status 0 or an error
    /// carrying the script's stderr.
    pub async fn script(
        &self,
        op: &str,
        script: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, NodeError> {
        let mut words = Vec::new();
        if self.target.sudo {
            words.extend(["sudo", "-n", "--"].map(String::from));
        }
        words.extend(["sh", "-c", script, "stackhost"].map(quote));
        words.extend(args.iter().map(|a| quote(a)));
        let what = format!("{op} `{}`", args.first().unwrap_or(&""));
        let line = format!("exec {}", words.join(" "));
        let out = self
            .run_line(
                &what,
                &line,
                stdin,
                Duration::from_secs(600),
                self.root_sudo(),
                None,
            )
            .await?;
        if out.truncated {
            // A cut result must never pass for the whole one.
            return Err(NodeError::Io(format!(
                "{what} on node {}: its output passed the capture limit of {} MiB and was cut; \
                 move big files with fs.copy or archive",
                self.name,
                CAPTURE_LIMIT >> 20
            )));
        }
        if out.status == 0 {
            return Ok(out.stdout);
        }
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let msg = format!(
            "{op} `{}` on node {}: {stderr}",
            args.first().unwrap_or(&""),
            self.name
        );
        Err(if stderr.contains("No such file") {
            NodeError::NotFound(msg)
        } else {
            NodeError::Io(msg)
        })
    }
}

/// Map an SSH signal name to its Linux number (0 when unknown).
fn signal_number(name: &str) -> u32 {
    match name.trim_start_matches("SIG").to_ascii_uppercase().as_str() {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ILL" => 4,
        "ABRT" => 6,
        "FPE" => 8,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        "USR1" => 10,
        "USR2" => 12,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signal_names() {
        assert_eq!(signal_number("TERM"), 15);
        assert_eq!(signal_number("KILL"), 9);
    }
}
