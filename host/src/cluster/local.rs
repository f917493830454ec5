//! The local node: programs run as child processes of the host, each the
//! leader of its own process group, which dies with the step (files are
//! handled by `crate::sandbox`).

use super::{CAPTURE_LIMIT, DEFAULT_PATH, ExecOutput, ExecRequest, NodeError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The machine the host runs on, under its inventory name.
#[derive(Debug, Clone)]
pub struct LocalNode {
    name: String,
}

impl LocalNode {
    pub fn new(name: &str) -> LocalNode {
        LocalNode { name: name.into() }
    }

    /// Run a program and capture its output.
    // Long because it is spawning, feeding stdin, capturing, the timeout and
    // the kill of one child's group are one sequence of awaits on shared
    // state.
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecOutput, NodeError> {
        let node = &self.name;
        let current_user = std::env::var("USER").unwrap_or_default();
        let is_root = is_root();
        let needs_sudo = match req.user.as_deref() {
            None => false,
            Some("root") => !is_root,
            Some(u) => u != current_user,
        };
        let as_other = needs_sudo && !matches!(req.user.as_deref(), Some("root") | None);
        let mut words: Vec<std::ffi::OsString> = Vec::new();
        if needs_sudo {
            words.extend(
                [
                    "sudo",
                    "-n",
                    "-u",
                    req.user.as_deref().unwrap_or("root"),
                    "--",
                ]
                .map(Into::into),
            );
        }
        // Through the reaper, so a timeout ends even what the program
        // started detached; not for a user other than root or the host's
        // own, whose processes the reaper could not kill.
        if !as_other && let Some(agent) = local_reaper() {
            words.extend([agent.into_os_string(), "reap".into()]);
        }
        words.push(req.pinned.as_ref().unwrap_or(&req.program).into());
        let mut cmd = tokio::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .args(&req.args)
            .env_clear()
            .env("PATH", DEFAULT_PATH)
            .envs(req.env.iter().map(|(k, v)| (k, v)))
            .stdin(if req.stdin.is_some() {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            })
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Its own process group, so everything it starts can be killed
            // with it.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(cwd) = &req.cwd {
            cmd.current_dir(cwd);
        }
        let mut child = cmd.spawn().map_err(|e| {
            let msg = if needs_sudo {
                format!(
                    "cannot run `{}` as {} on node {node}: starting `sudo` failed: {e}{}",
                    req.program,
                    req.user.as_deref().unwrap_or("root"),
                    if e.kind() == std::io::ErrorKind::NotFound {
                        " (sudo is not installed; install it, or run stackhost as that user)"
                    } else {
                        ""
                    }
                )
            } else {
                format!("cannot start `{}` on node {node}: {e}", req.program)
            };
            if e.kind() == std::io::ErrorKind::NotFound {
                NodeError::NotFound(msg)
            } else {
                NodeError::Failed(msg)
            }
        })?;
        // Armed until the program and everything holding its output are
        // done: a timeout, or the step being dropped (the run's wall clock),
        // kills the whole group.
        let mut group = GroupKill {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        };
        let stdin = child.stdin.take();
        let input = req.stdin.clone();
        let feed = async move {
            if let (Some(mut pipe), Some(data)) = (stdin, input) {
                // A program that exits without reading its input is not an error.
                let _ = pipe.write_all(&data).await;
            }
        };
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let run = async {
            let ((out, out_cut), (err, err_cut), (), status) = tokio::join!(
                capture(stdout, req.live.as_ref()),
                capture(stderr, req.live.as_ref()),
                feed,
                child.wait()
            );
            (out, out_cut || err_cut, err, status)
        };
        match tokio::time::timeout(req.timeout, run).await {
            Ok((stdout, truncated, stderr, status)) => {
                // Both pipes closed and the program reaped: what is left of
                // its group detached from the step on purpose (a daemon it
                // started), and is not the step's to kill.
                group.disarm();
                let status = status.map_err(|e| {
                    NodeError::Failed(format!("waiting for `{}`: {e}", req.program))
                })?;
                use std::os::unix::process::ExitStatusExt;
                let reaper_said = stderr.strip_prefix(b"stackhost-agent reap: cannot start ");
                if let Some(why) = reaper_said.filter(|_| status.code() == Some(127)) {
                    return Err(NodeError::NotFound(format!(
                        "cannot start {} on node {node}",
                        String::from_utf8_lossy(why).trim_end()
                    )));
                }
                Ok(ExecOutput {
                    status: status.code().unwrap_or(-1),
                    signal: status.signal().map(|s| s as u32),
                    stdout,
                    stderr,
                    truncated,
                })
            }
            Err(_) => {
                group.kill();
                Err(NodeError::Timeout(format!(
                    "`{}` on node {node} ran past its timeout of {:?} and was killed, with \
                     every process it started",
                    req.program, req.timeout
                )))
            }
        }
    }
}

/// Kills a program's whole process group when dropped or told to,
/// unless disarmed once the program has finished.
pub(crate) struct GroupKill {
    pgid: Option<i32>,
}

impl GroupKill {
    /// Armed for the process group led by `child` (spawned with
    /// `process_group(0)`).
    pub(crate) fn of(child: &tokio::process::Child) -> GroupKill {
        GroupKill {
            pgid: child.id().and_then(|id| i32::try_from(id).ok()),
        }
    }

    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }

    /// SIGTERM to the group, so a reaper in it ends the program's whole
    /// tree (see [`crate::process::reaper`]); then, once the leader is
    /// done or a second has passed, SIGKILL to what is left of the group.
    pub(crate) fn kill(&mut self) {
        use rustix::process::{Signal, kill_process_group};
        if let Some(pgid) = self.pgid.take()
            && let Some(pid) = rustix::process::Pid::from_raw(pgid)
        {
            let _ = kill_process_group(pid, Signal::TERM);
            let start = std::time::Instant::now();
            while !crate::process::reaper::done(pid)
                && start.elapsed() < std::time::Duration::from_secs(1)
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Read a stream to its end, keeping at most [`CAPTURE_LIMIT`] bytes.
async fn capture(
    mut stream: impl AsyncRead + Unpin,
    live: Option<&super::LiveSink>,
) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut truncated = false;
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(live) = live {
                    live.take(&buf[..n]);
                }
                let room = CAPTURE_LIMIT - kept.len();
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}

/// The agent to run programs through as their reaper, if it is here.
fn local_reaper() -> Option<std::path::PathBuf> {
    static PATH: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let found = super::files::agent_path().ok().filter(|p| p.is_file());
        if found.is_none() {
            tracing::warn!(
                "stackhost-agent is not beside the host: a program that times out is killed \
                 with its process group, but what it started detached may live on"
            );
        }
        found
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn exec_captures_output_and_status() {
        let req = ExecRequest {
            program: "sh".into(),
            pinned: None,
            args: vec!["-c".into(), "echo out; echo err >&2; exit 3".into()],
            env: vec![],
            stdin: None,
            user: None,
            cwd: None,
            timeout: std::time::Duration::from_secs(10),
            live: None,
        };
        let out = LocalNode::new("local").exec(&req).await.unwrap();
        assert_eq!(
            (out.status, out.stdout.as_slice(), out.stderr.as_slice()),
            (3, &b"out\n"[..], &b"err\n"[..])
        );
        let req = ExecRequest {
            args: vec!["-c".into(), "kill -TERM $$".into()],
            ..req
        };
        let out = LocalNode::new("local").exec(&req).await.unwrap();
        assert_eq!((out.status, out.signal), (-1, Some(15)));
    }

    /// Processes whose command line holds `marker`.
    fn running(marker: &str) -> Vec<String> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline"))
                && String::from_utf8_lossy(&cmdline).contains(marker)
            {
                found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
            }
        }
        found
    }

    /// `sh -c 'sleep MARKER & sleep 30'`: a background grandchild that
    /// holds the output pipes.
    fn straggler(marker: &str, timeout: std::time::Duration) -> ExecRequest {
        ExecRequest {
            program: "sh".into(),
            pinned: None,
            args: vec!["-c".into(), format!("sleep {marker} & sleep 30")],
            env: vec![],
            stdin: None,
            user: None,
            cwd: None,
            timeout,
            live: None,
        }
    }

    async fn left_running(marker: &str) -> Vec<String> {
        // SIGKILL is delivered at once, but the kernel reaps a moment later.
        for _ in 0..50 {
            if running(marker).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        running(marker)
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let marker = format!("300.{}1", std::process::id());
        let req = straggler(&marker, std::time::Duration::from_millis(500));
        let err = LocalNode::new("local").exec(&req).await.unwrap_err();
        assert!(
            err.to_string().contains(
                "ran past its timeout of 500ms and was killed, with every process it started"
            ),
            "{err}"
        );
        assert_eq!(left_running(&marker).await, Vec::<String>::new());
    }

    #[tokio::test]
    async fn a_dropped_step_kills_the_whole_group() {
        let marker = format!("300.{}2", std::process::id());
        let req = straggler(&marker, std::time::Duration::from_secs(60));
        // The run's wall clock drops a step's future like this.
        let dropped = tokio::time::timeout(
            std::time::Duration::from_millis(500),
            LocalNode::new("local").exec(&req),
        )
        .await;
        assert!(dropped.is_err());
        assert_eq!(left_running(&marker).await, Vec::<String>::new());
    }
}
