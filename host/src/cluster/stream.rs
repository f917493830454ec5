//! Streaming a program's input and output between a node and the host in
//! bounded chunks, so bulk data (tar streams, dumps) never sits in memory
//! whole. The async side moves chunks over a bounded channel; the
//! synchronous side (tar, compression, hashing, on a blocking thread)
//! reads and writes them through [`ChunkReader`] and [`ChunkWriter`].

use super::{DEFAULT_PATH, NodeError, Transport};
use crate::text::shell_quote;
use std::io::{Read, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Bytes per chunk.
pub const CHUNK: usize = 256 << 10;
/// Chunks in flight per direction: memory per stream is at most
/// `CHUNK * DEPTH`.
pub const DEPTH: usize = 8;

/// Most bytes of a streaming program's stderr kept for its error message.
const STDERR_LIMIT: usize = 64 << 10;

/// How a streaming program ended.
#[derive(Debug)]
pub struct PipeStatus {
    pub status: i32,
    pub stderr: String,
    /// The program was stopped because the receiver of its output went
    /// away: the consumer's error is the cause, not the program's status.
    pub consumer_gone: bool,
}

/// A shell script to stream through: `sh -c SCRIPT stackhost ARGS...`,
/// as `user` when given (through `sudo -n -u`).
pub struct Script<'a> {
    pub op: &'a str,
    pub script: &'a str,
    pub args: &'a [&'a str],
    pub user: Option<&'a str>,
}

impl Script<'_> {
    /// The argv that runs it.
    fn argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        if let Some(user) = self.user {
            argv.extend(["sudo", "-n", "-u", user, "--"].map(String::from));
        }
        argv.extend(["env", "-i"].map(String::from));
        argv.push(format!("PATH={DEFAULT_PATH}"));
        argv.extend(["sh", "-c", self.script, "stackhost"].map(String::from));
        argv.extend(self.args.iter().map(|a| a.to_string()));
        argv
    }
}

/// A channel pair for one direction.
pub fn chunks() -> (mpsc::Sender<Vec<u8>>, mpsc::Receiver<Vec<u8>>) {
    mpsc::channel(DEPTH)
}

impl Transport {
    /// Run `script` on the node, feeding it `stdin` chunk by chunk and
    /// sending its stdout chunk by chunk to `stdout`. If the receiver of
    /// `stdout` goes away (the consumer failed), the program is stopped.
    pub async fn pipe(
        &self,
        script: &Script<'_>,
        stdin: Option<mpsc::Receiver<Vec<u8>>>,
        stdout: Option<mpsc::Sender<Vec<u8>>>,
    ) -> Result<PipeStatus, NodeError> {
        let argv = script.argv();
        match self {
            Transport::Local(_) => pipe_local(script.op, &argv, stdin, stdout).await,
            Transport::Ssh(s) => {
                let root = (s.sudo() && script.user.is_none()).then_some(["sudo", "-n", "--"]);
                let line = root
                    .into_iter()
                    .flatten()
                    .map(String::from)
                    .chain(argv)
                    .map(|w| shell_quote(&w))
                    .collect::<Vec<_>>()
                    .join(" ");
                s.pipe(&format!("exec {line}"), stdin, stdout).await
            }
        }
    }
}

// Long because it is the local form of ssh::pipe: a child's output, exit and
// the consumer going away in one select loop.
async fn pipe_local(
    op: &str,
    argv: &[String],
    stdin: Option<mpsc::Receiver<Vec<u8>>>,
    stdout: Option<mpsc::Sender<Vec<u8>>>,
) -> Result<PipeStatus, NodeError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(if stdout.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stderr(std::process::Stdio::piped())
        // Its own process group, killed whole if the consumer fails or
        // the call is dropped (the run's wall clock).
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| NodeError::Failed(format!("{op} on node local: cannot start: {e}")))?;
    let mut group = super::local::GroupKill::of(&child);
    let feed = {
        let pipe = child.stdin.take();
        async move {
            if let (Some(mut pipe), Some(mut rx)) = (pipe, stdin) {
                while let Some(chunk) = rx.recv().await {
                    if pipe.write_all(&chunk).await.is_err() {
                        break; // the program stopped reading; its status says why
                    }
                }
            }
        }
    };
    let drain = {
        let out = child.stdout.take();
        async move {
            let (Some(mut out), Some(tx)) = (out, stdout) else {
                return true;
            };
            loop {
                let mut buf = vec![0u8; CHUNK];
                match out.read(&mut buf).await {
                    Ok(0) => return true,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(buf).await.is_err() {
                            return false; // the consumer gave up
                        }
                    }
                    Err(_) => return true,
                }
            }
        }
    };
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let errs = async move {
        let mut err = Vec::new();
        let _ = (&mut err_pipe)
            .take(STDERR_LIMIT as u64)
            .read_to_end(&mut err)
            .await;
        // Keep draining so the program never blocks on a full stderr.
        let _ = tokio::io::copy(&mut err_pipe, &mut tokio::io::sink()).await;
        err
    };
    let ((), consumer_alive, stderr) = tokio::join!(feed, drain, errs);
    if !consumer_alive {
        group.kill();
    }
    let status = child
        .wait()
        .await
        .map_err(|e| NodeError::Failed(format!("{op} on node local: {e}")))?;
    group.disarm();
    Ok(PipeStatus {
        status: status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
        consumer_gone: !consumer_alive,
    })
}

/// Reads the chunks of a channel as a byte stream (on a blocking thread).
pub struct ChunkReader {
    rx: mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    pos: usize,
    stop: Option<StopFlag>,
}

/// Set when the step a blocking reader works for was dropped (stopped by
/// its timeout or by SIGINT): the reader then fails at its next read, so
/// the blocking thread ends, and what it wrote is cleaned up, at once
/// rather than after the whole stream.
#[derive(Clone, Default)]
pub struct StopFlag(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl StopFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// A guard that sets the flag when dropped.
    pub fn on_drop(&self) -> StopOnDrop {
        StopOnDrop(self.clone())
    }
}

/// Sets its [`StopFlag`] when dropped.
pub struct StopOnDrop(StopFlag);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        (self.0).0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<Vec<u8>>) -> ChunkReader {
        ChunkReader {
            rx,
            current: Vec::new(),
            pos: 0,
            stop: None,
        }
    }

    /// Fail reads once `stop` is set.
    pub fn stop_on(mut self, stop: StopFlag) -> ChunkReader {
        self.stop = Some(stop);
        self
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.stop.as_ref().is_some_and(StopFlag::is_set) {
            return Err(std::io::Error::other("the step was stopped"));
        }
        while self.pos == self.current.len() {
            match self.rx.blocking_recv() {
                Some(chunk) => {
                    self.current = chunk;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.pos);
        buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Writes a byte stream as chunks into a channel (on a blocking thread).
pub struct ChunkWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    pub fn new(tx: mpsc::Sender<Vec<u8>>) -> ChunkWriter {
        ChunkWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }
}

impl ChunkWriter {
    /// Whether the reading side has gone away (it failed or gave up).
    pub fn receiver_gone(&self) -> bool {
        self.tx.is_closed()
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the program on the node stopped reading",
            )
        })
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
