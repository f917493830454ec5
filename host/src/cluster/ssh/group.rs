//! A remote program's process group: every command line the host runs on
//! a node starts as the leader of its own group and first prints that
//! group's id, so a program that runs past its time, or whose step is
//! dropped (the run's wall clock), dies with everything it started.
//!
//! OpenSSH already starts each session's command in a new session (its
//! child calls setsid); the wrapper keeps that pid through `exec`, and
//! calls `setsid` itself where a server did not. To kill, the host runs
//! `kill -9 -PGID` through a second channel, as the program's own user.
//! It also sends a `signal` channel request, which OpenSSH answers with
//! `killpg` of the command's pid, but only for a login that is not root:
//! for root it refuses ("session signalling requires privilege
//! separation"), so the kill channel is what always works.

use super::{SessionChannel, SshNode, Verifier, quote};
use russh::ChannelMsg;
use russh::client::Handle;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Most time spent killing one process group.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// A group id line is digits and a newline; anything longer is not one.
const HEADER_MAX: usize = 24;

/// The command line that runs `line` as the leader of its own process
/// group, after printing the group's id on the first line of stdout.
///
/// `$$` is the login shell's pid; `exec` keeps it for the program. When the
/// shell is not yet a group leader, `setsid` (util-linux) makes the program
/// one without forking, so the pid, the group id and the exit status stay
/// the program's.
pub(super) fn in_own_group(line: &str) -> String {
    let command = match line.strip_prefix("exec ") {
        Some(words) => words.to_string(),
        None => format!("sh -c {}", quote(line)),
    };
    format!(
        r#"read -r s </proc/$$/stat; set -- $s; [ "$5" = "$$" ] || g=setsid; echo $$; exec $g {command}"#
    )
}

/// Splits the wrapper's first stdout line, the group id, from the
/// program's own output.
#[derive(Default)]
pub(super) struct GroupHeader {
    head: Vec<u8>,
    done: bool,
    pgid: Option<u32>,
}

impl GroupHeader {
    /// Take stdout bytes; returns those that are the program's.
    pub(super) fn take(&mut self, data: &[u8]) -> Vec<u8> {
        if self.done {
            return data.to_vec();
        }
        self.head.extend_from_slice(data);
        match self.head.iter().position(|b| *b == b'\n') {
            Some(at) => {
                self.done = true;
                self.pgid = std::str::from_utf8(&self.head[..at])
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .filter(|p| *p > 1);
                if self.pgid.is_some() {
                    self.head.drain(..=at);
                }
                std::mem::take(&mut self.head)
            }
            // Not a group id line: pass everything on.
            None if self.head.len() > HEADER_MAX => {
                self.done = true;
                std::mem::take(&mut self.head)
            }
            None => Vec::new(),
        }
    }

    /// At the end of stdout: whatever was held back.
    pub(super) fn finish(&mut self) -> Vec<u8> {
        self.done = true;
        std::mem::take(&mut self.head)
    }

    /// The group id, once its line has arrived.
    pub(super) fn pgid(&self) -> Option<u32> {
        self.pgid
    }
}

/// Kills a remote process group through a channel of its own.
#[derive(Clone)]
pub(super) struct GroupKiller {
    node: String,
    handle: Arc<Handle<Verifier>>,
    channels: Arc<Semaphore>,
    /// Words that run the kill as a user allowed to signal the program
    /// (`sudo -n -u USER --`), or none for the login user.
    sudo: Vec<String>,
}

impl GroupKiller {
    pub(super) fn new(node: &SshNode, session: &SessionChannel, sudo: Vec<String>) -> GroupKiller {
        GroupKiller {
            node: node.name.clone(),
            handle: session.handle.clone(),
            channels: node.kill_channels.clone(),
            sudo,
        }
    }

    /// `kill -15 -PGID` on the node, so a reaper in the group ends the
    /// program's whole tree (see [`crate::process::reaper`]); then, once
    /// the group is gone or a second has passed, `kill -9 -PGID`. The
    /// shell's own `kill` (dash's and bash's both take `-9 -PGID`; procps'
    /// does not).
    pub(super) async fn kill(&self, pgid: u32) -> Result<(), String> {
        let mut words: Vec<String> = self.sudo.iter().map(|w| quote(w)).collect();
        let kill = format!(
            "kill -15 -{pgid} 2>/dev/null; i=0; \
             while [ $i -lt 20 ] && kill -0 -{pgid} 2>/dev/null; do sleep 0.05; i=$((i+1)); done; \
             kill -9 -{pgid}"
        );
        if words.is_empty() {
            words.push(kill);
        } else {
            words.extend(["sh".into(), "-c".into(), quote(&kill)]);
        }
        let line = words.join(" ");
        let run = async {
            let _permit = self.channels.acquire().await.map_err(|e| e.to_string())?;
            let mut channel = super::open_channel(&self.handle)
                .await
                .map_err(|e| e.to_string())?;
            channel
                .exec(true, line.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            channel.eof().await.map_err(|e| e.to_string())?;
            let mut status = None;
            while let Some(msg) = channel.wait().await {
                match msg {
                    ChannelMsg::ExitStatus { exit_status } => status = Some(exit_status),
                    ChannelMsg::Close => break,
                    _ => {}
                }
            }
            match status {
                // 1: the group was already gone.
                Some(0 | 1) => Ok(()),
                Some(s) => Err(format!("`{line}` exited with status {s}")),
                None => Err("the connection was lost".into()),
            }
        };
        match tokio::time::timeout(KILL_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {KILL_TIMEOUT:?}")),
        }
        .map_err(|e| {
            let why = format!(
                "cannot kill process group {pgid} on node {}: {e}",
                self.node
            );
            tracing::warn!("{why}");
            why
        })
    }
}

/// Armed while a remote program may still run: dropped armed, it kills the
/// program's group before the drop returns (bounded by [`KILL_TIMEOUT`]),
/// so the host cannot exit first.
pub(super) struct GroupGuard {
    killer: GroupKiller,
    pgid: Option<u32>,
}

impl GroupGuard {
    pub(super) fn new(killer: GroupKiller) -> GroupGuard {
        GroupGuard { killer, pgid: None }
    }

    /// The group to kill if the guard is dropped armed.
    pub(super) fn arm(&mut self, pgid: Option<u32>) {
        if self.pgid.is_none() {
            self.pgid = pgid;
        }
    }

    /// The program is done (or out of reach): nothing to kill on drop.
    pub(super) fn disarm(&mut self) {
        self.pgid = None;
    }

    /// Kill the group now; returns why that failed, if it did.
    pub(super) async fn kill(&mut self) -> Result<(), String> {
        match self.pgid.take() {
            Some(pgid) => self.killer.kill(pgid).await,
            None => Err("its process group id never arrived".into()),
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid.take() else { return };
        let killer = self.killer.clone();
        // The SSH session task runs on the run's runtime; the kill only
        // needs a timer of its own, so it runs on a thread with a small
        // runtime while this one waits (in block_in_place, so the run's
        // runtime keeps going).
        let kill = move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            else {
                return;
            };
            let _ = rt.block_on(killer.kill(pgid));
        };
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let thread = std::thread::Builder::new()
            .name("stackhost-kill".into())
            .spawn(kill);
        if let Ok(thread) = thread
            && multi_thread
            && !std::thread::panicking()
        {
            tokio::task::block_in_place(|| {
                let _ = thread.join();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_split_from_the_output() {
        let mut h = GroupHeader::default();
        assert_eq!(h.take(b"12"), b"");
        assert_eq!(h.take(b"34\nhello "), b"hello ");
        assert_eq!(h.take(b"world"), b"world");
        assert_eq!(h.pgid(), Some(1234));
        // Output that does not start with a group id line is kept whole.
        let mut h = GroupHeader::default();
        assert_eq!(h.take(b"not a pgid\nrest"), b"not a pgid\nrest");
        assert_eq!(h.pgid(), None);
        let mut h = GroupHeader::default();
        assert_eq!(h.take(b"77"), b"");
        assert_eq!(h.finish(), b"77");
        assert_eq!(h.pgid(), None);
    }

    #[test]
    fn the_wrapper_keeps_exec_lines_and_wraps_others() {
        let w = in_own_group("exec env -i true");
        assert!(w.ends_with("echo $$; exec $g env -i true"), "{w}");
        let w = in_own_group("cd /tmp && exec true");
        assert!(w.ends_with("exec $g sh -c 'cd /tmp && exec true'"), "{w}");
    }
}
