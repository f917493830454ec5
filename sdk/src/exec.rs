//! Running programs on nodes: the [`Command`] builder and the [`Output`]
//! of a finished program. Programs are argv, never a shell string.

use crate::bindings::stackhost::host::exec as wit;
use crate::{Error, Result};
use std::borrow::Cow;
use std::time::Duration;

/// A program to run on a node with [`Node::run`](crate::Node::run).
///
/// ```
/// # use stackhost_sdk::Command;
/// # use std::time::Duration;
/// let cmd = Command::new("systemctl")
///     .arg("restart")
///     .arg("nginx")
///     .user("root")
///     .timeout(Duration::from_secs(30));
/// assert_eq!(cmd.program(), "systemctl");
/// ```
#[derive(Debug, Clone)]
pub struct Command {
    inner: wit::Command,
    live: bool,
}

impl Command {
    /// Run `program`: a name looked up in the node's `PATH`, or an absolute
    /// path. It must be listed in the plugin's exec grant by that same
    /// spelling.
    pub fn new(program: impl Into<String>) -> Command {
        Command {
            inner: wit::Command {
                program: program.into(),
                args: Vec::new(),
                env: Vec::new(),
                stdin: None,
                user: None,
                cwd: None,
                timeout_ms: None,
            },
            live: false,
        }
    }

    /// Add one argument.
    #[must_use = "builder methods return the changed command"]
    pub fn arg(mut self, arg: impl Into<String>) -> Command {
        self.inner.args.push(arg.into());
        self
    }

    /// Add several arguments.
    #[must_use = "builder methods return the changed command"]
    pub fn args<I, S>(mut self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Set an environment variable. The program gets only these and a
    /// default `PATH`, nothing from the host's environment. The name must
    /// be one every grant allows (`LANG`, `LC_*`, `TZ`, `DEBIAN_FRONTEND`,
    /// the proxy variables) or one the manifest lists in
    /// `[capabilities.exec] env`; anything else is a permission-denied
    /// error naming the grant.
    #[must_use = "builder methods return the changed command"]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Command {
        self.inner.env.push((key.into(), value.into()));
        self
    }

    /// Write `bytes` to the program's standard input, then close it.
    #[must_use = "builder methods return the changed command"]
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Command {
        self.inner.stdin = Some(bytes.into());
        self
    }

    /// Run as `user` (through sudo on the node), for example `root`. The
    /// user must be listed in the manifest's `[capabilities.exec] users`;
    /// without a user the program runs as the node's login user.
    #[must_use = "builder methods return the changed command"]
    pub fn user(mut self, user: impl Into<String>) -> Command {
        self.inner.user = Some(user.into());
        self
    }

    /// Run in the working directory `dir` on the node.
    #[must_use = "builder methods return the changed command"]
    pub fn cwd(mut self, dir: impl Into<String>) -> Command {
        self.inner.cwd = Some(dir.into());
        self
    }

    /// Kill the program after `limit` (rounded down to milliseconds),
    /// with every process it started (its process group). The host also
    /// applies its own per-call limit.
    #[must_use = "builder methods return the changed command"]
    pub fn timeout(mut self, limit: Duration) -> Command {
        // Past u32::MAX ms (49 days) the host's own limit decides anyway.
        self.inner.timeout_ms = Some(u32::try_from(limit.as_millis()).unwrap_or(u32::MAX));
        self
    }

    /// Show the program's output to the operator while it runs (the latest
    /// line per node on a terminal; a line every few seconds otherwise).
    /// The output is still captured and returned. For long programs: apt
    /// upgrades, rsync, builds.
    #[must_use = "builder methods return the changed command"]
    pub fn live(mut self) -> Command {
        self.live = true;
        self
    }

    /// Whether [`Command::live`] was asked for.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The program this command runs.
    pub fn program(&self) -> &str {
        &self.inner.program
    }

    /// The arguments given so far.
    pub fn get_args(&self) -> &[String] {
        &self.inner.args
    }

    pub(crate) fn as_wit(&self) -> &wit::Command {
        &self.inner
    }
}

/// What a finished program produced.
#[derive(Debug, Clone)]
pub struct Output {
    program: String,
    inner: wit::Output,
}

impl Output {
    pub(crate) fn new(program: &str, inner: wit::Output) -> Output {
        Output {
            program: program.to_owned(),
            inner,
        }
    }

    /// The exit status; -1 when the program was killed by a signal.
    pub fn status(&self) -> i32 {
        self.inner.status
    }

    /// The signal that killed the program, if one did.
    pub fn signal(&self) -> Option<u32> {
        self.inner.signal
    }

    /// Whether the program exited with status 0 (always true for a
    /// [`recorded`](Output::recorded) call).
    pub fn success(&self) -> bool {
        self.inner.status == 0
    }

    /// Captured standard output.
    pub fn stdout(&self) -> &[u8] {
        &self.inner.stdout
    }

    /// Captured standard error.
    pub fn stderr(&self) -> &[u8] {
        &self.inner.stderr
    }

    /// Standard output as text (invalid UTF-8 replaced by U+FFFD).
    pub fn stdout_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.inner.stdout)
    }

    /// Standard error as text (invalid UTF-8 replaced by U+FFFD).
    pub fn stderr_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.inner.stderr)
    }

    /// True when the program did not run because this is a dry run and it
    /// is not marked read-only: the host recorded the call as a mutation,
    /// and the status is 0 with empty output.
    pub fn recorded(&self) -> bool {
        self.inner.recorded
    }

    /// True when stdout or stderr went past the host's capture limit
    /// (4 MiB per stream) and was cut.
    pub fn truncated(&self) -> bool {
        self.inner.truncated
    }

    /// `Ok(self)` if the program succeeded, otherwise an [`Error::Plugin`]
    /// naming the program, its status and the end of its stderr.
    pub fn check(self) -> Result<Output> {
        if self.success() {
            return Ok(self);
        }
        let stderr = self.stderr_str();
        let stderr = stderr.trim();
        // The operator sees one line per step; the last lines of stderr
        // usually say why.
        let tail: String = match stderr.char_indices().rev().nth(500) {
            Some((at, _)) => format!("...{}", &stderr[at..]),
            None => stderr.to_owned(),
        };
        let mut message = match self.inner.signal {
            Some(signal) => format!("`{}` was killed by signal {signal}", self.program),
            None => format!(
                "`{}` exited with status {}",
                self.program, self.inner.status
            ),
        };
        if !tail.is_empty() {
            message.push_str(": ");
            message.push_str(&tail);
        }
        Err(Error::Plugin(message))
    }
}

/// What [`Node::reboot`](crate::Node::reboot) saw.
#[derive(Debug, Clone)]
pub struct Rebooted {
    inner: wit::Rebooted,
}

impl Rebooted {
    pub(crate) fn new(inner: wit::Rebooted) -> Rebooted {
        Rebooted { inner }
    }

    /// From the reboot until the node stopped answering from its old boot.
    pub fn down(&self) -> Duration {
        Duration::from_millis(self.inner.down_ms)
    }

    /// From the reboot until the node answered from a new boot.
    pub fn back(&self) -> Duration {
        Duration::from_millis(self.inner.back_ms)
    }

    /// True under `--dry-run`: nothing was rebooted.
    pub fn recorded(&self) -> bool {
        self.inner.recorded
    }
}
