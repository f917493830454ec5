//! Rebooting a node and waiting for it to come back.
//!
//! A reboot is seen by the node's boot marker: its boot id and the start
//! time of its PID 1. A machine's reboot changes both; a container's
//! restart keeps the kernel's boot id and changes PID 1's start time (the
//! test cluster's nodes reboot that way). Until the marker has changed, the
//! node has not rebooted, whatever answers on its port.

use super::super::{DEFAULT_PATH, NodeError};
use super::{SshNode, quote};
use std::time::Duration;
use tokio::time::Instant;

/// What a reboot saw.
#[derive(Debug, Clone)]
pub struct Rebooted {
    /// The boot marker before and after (`BOOT-ID/PID1-START`).
    pub before: String,
    pub after: String,
    /// From the reboot command until the node stopped answering with its
    /// old boot marker.
    pub down: Duration,
    /// From the reboot command until the node answered with a new one.
    pub back: Duration,
}

/// How long a reboot command is given to start (it only schedules the
/// reboot; see [`SshNode::reboot`]).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two attempts to reach a rebooting node.
const POLL: Duration = Duration::from_millis(500);

/// The command line that prints the boot marker: the boot id, then PID 1's
/// start time (field 22 of /proc/1/stat, counted after the parenthesised
/// program name, which may hold spaces).
const MARKER_LINE: &str = "read -r b </proc/sys/kernel/random/boot_id && s=$(sed 's/.*) //' /proc/1/stat) && set -- $s && echo \"$b/${20}\"";

impl SshNode {
    /// The node's boot marker, read over the current connection.
    pub async fn boot_marker(&self) -> Result<String, NodeError> {
        let out = self
            .run_line(
                "reading the boot marker",
                MARKER_LINE,
                None,
                Duration::from_secs(30),
                Vec::new(),
                None,
            )
            .await?;
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let well_formed = text.split_once('/').is_some_and(|(id, start)| {
            !id.is_empty() && start.bytes().all(|b| b.is_ascii_digit()) && !start.is_empty()
        });
        if out.status != 0 || !well_formed {
            return Err(NodeError::Failed(format!(
                "cannot read the boot id and PID 1's start time on node {} (status {}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(text)
    }

    /// Forget the run's connection: the next use connects again.
    async fn drop_connection(&self) {
        if let Some(old) = self.handle.lock().await.take() {
            let _ = old
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    /// Reboot the node (`reboot`, through `sudo -n` for a non-root login),
    /// then wait until it answers over SSH with a new boot marker, for at
    /// most `wait`. The command is started detached and a second later, so
    /// it answers before the connection goes down. A node that answers
    /// with a changed host key is refused at once, as any connection is.
    pub async fn reboot(&self, wait: Duration) -> Result<Rebooted, NodeError> {
        let before = self.boot_marker().await?;
        let mut words: Vec<String> = self.root_sudo().iter().map(|w| quote(w)).collect();
        words.push(format!(
            "env -i PATH={DEFAULT_PATH} setsid -f sh -c 'sleep 1; exec reboot' </dev/null >/dev/null 2>&1"
        ));
        let line = words.join(" ");
        let out = self
            .run_line(
                "`reboot`",
                &line,
                None,
                COMMAND_TIMEOUT,
                self.root_sudo(),
                None,
            )
            .await?;
        if out.status != 0 {
            return Err(NodeError::Failed(format!(
                "`reboot` on node {} could not be started (status {}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let started = Instant::now();
        let deadline = started + wait;
        let mut down = None;
        let mut last = String::from("it still answered with its old boot marker");
        loop {
            self.drop_connection().await;
            tokio::time::sleep(POLL).await;
            let attempt = tokio::time::timeout_at(deadline, self.boot_marker()).await;
            match attempt {
                Ok(Ok(after)) if after != before => {
                    let back = started.elapsed();
                    return Ok(Rebooted {
                        before,
                        after,
                        down: down.unwrap_or(back),
                        back,
                    });
                }
                Ok(Ok(_)) => {}
                Ok(Err(NodeError::Unreachable(why))) if why.contains("HOST KEY") => {
                    return Err(NodeError::Unreachable(why));
                }
                Ok(Err(e)) => {
                    down.get_or_insert_with(|| started.elapsed());
                    last = e.to_string();
                }
                Err(_) => {}
            }
            if Instant::now() >= deadline {
                self.drop_connection().await;
                return Err(NodeError::Timeout(format!(
                    "node {} did not come back within {wait:?} of its reboot (last: {last})",
                    self.name
                )));
            }
        }
    }
}
