//! The `exec` Host impl: check the grant, then run on the node, or record
//! the call under `--dry-run` when the program may mutate.

use super::Exec;
use crate::caps::ctx::CapsView;
use crate::caps::linker::Link;
use wasmtime::component::{HasData, Linker};

use super::scope::{self, ProgramAccess};
use crate::caps::bindings::WitError;
use crate::caps::bindings::stackhost::host::exec::{self, Command, Output, Rebooted};
use crate::caps::ctx::CapView;
use crate::cluster::ExecRequest;
use std::time::Duration;

impl exec::Host for CapView<'_> {
    async fn run(
        &mut self,
        node: String,
        cmd: Command,
    ) -> wasmtime::Result<Result<Output, WitError>> {
        let call = self.call;
        Ok(call.timed(run(self, node, cmd, false)).await)
    }

    async fn run_live(
        &mut self,
        node: String,
        cmd: Command,
    ) -> wasmtime::Result<Result<Output, WitError>> {
        let call = self.call;
        Ok(call.timed(run(self, node, cmd, true)).await)
    }

    async fn reboot(
        &mut self,
        node: String,
        wait_ms: u32,
    ) -> wasmtime::Result<Result<Rebooted, WitError>> {
        let call = self.call;
        Ok(call.timed(reboot(self, node, wait_ms)).await)
    }
}

async fn reboot(view: &CapView<'_>, node: String, wait_ms: u32) -> Result<Rebooted, WitError> {
    let node = view.node(&node)?;
    scope::check_reboot(&view.call.grant, &node.info)?;
    view.call.refuse_mutation(&node.info.name, "exec reboot")?;
    // Like a program's timeout, the wait is capped by the host's per-call
    // limit (`--exec-timeout`).
    let wait = Duration::from_millis(wait_ms.into()).min(view.call.exec_timeout);
    if view.call.dry_run {
        view.call.record(
            &node.info.name,
            "exec",
            format!("reboot, then wait up to {wait:?} for the node to come back"),
        );
        return Ok(Rebooted {
            down_ms: 0,
            back_ms: 0,
            recorded: true,
        });
    }
    if let Some(progress) = &view.call.progress {
        progress.line("rebooting; waiting for the node to come back");
    }
    let r = node.transport.reboot(&node.info.name, wait).await?;
    // Millisecond counts of a wait capped by a u32 of milliseconds.
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Ok(Rebooted {
        down_ms: ms(r.down),
        back_ms: ms(r.back),
        recorded: false,
    })
}

/// A sink that shows each line of output on the step's live line.
fn live_sink(view: &CapView<'_>) -> Option<crate::cluster::LiveSink> {
    let progress = view.call.progress.clone()?;
    let lines = std::sync::Mutex::new(crate::text::LineSplitter::new());
    Some(crate::cluster::LiveSink(std::sync::Arc::new(
        move |data: &[u8]| {
            let mut lines = lines.lock().unwrap_or_else(|p| p.into_inner());
            lines.feed(data, |line| progress.line(line));
        },
    )))
}

/// The command line a dry run records: quoted words, cut at the record's
/// cap without quoting (or even reading) the rest of a huge argument list.
fn recorded_line(cmd: &Command) -> String {
    scope::quoted_call(&cmd.program, &cmd.args, crate::caps::ctx::MAX_DETAIL)
}

async fn run(
    view: &CapView<'_>,
    node: String,
    cmd: Command,
    live: bool,
) -> Result<Output, WitError> {
    let node = view.node(&node)?;
    if cmd.program.is_empty() {
        return Err(WitError::InvalidArgument("empty program name".into()));
    }
    scope::check_words(&cmd.program, &cmd.args, cmd.cwd.as_deref())?;
    let allowed = scope::check_call(
        &view.call.grant,
        &view.call.cluster,
        &node,
        &cmd.program,
        &cmd.args,
        cmd.user.as_deref(),
    )
    .await?;
    let access = allowed.access;
    let cmd = Command {
        args: allowed.args,
        ..cmd
    };
    // Only names the grant allows: a granted program run with, say,
    // LD_PRELOAD or PERL5OPT pointing into the plugin's own write scope
    // would run the plugin's code instead.
    scope::check_env(&view.call.grant, &cmd.env)?;
    if access == ProgramAccess::Mutating {
        view.call
            .refuse_mutation(&node.info.name, &format!("exec {}", cmd.program))?;
    }
    if view.call.dry_run && access == ProgramAccess::Mutating {
        let mut line = recorded_line(&cmd);
        if let Some(user) = &cmd.user {
            line = format!("{line} (as {user})");
        }
        view.call.record(&node.info.name, "exec", line);
        return Ok(Output {
            status: 0,
            signal: None,
            stdout: vec![],
            stderr: vec![],
            truncated: false,
            recorded: true,
        });
    }
    let limit = view.call.exec_timeout;
    let timeout = cmd
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.into()).min(limit))
        .unwrap_or(limit);
    let req = ExecRequest {
        pinned: Some(node.program_path(&cmd.program).await),
        program: cmd.program,
        args: cmd.args,
        env: cmd.env,
        stdin: cmd.stdin,
        user: cmd.user,
        cwd: cmd.cwd,
        timeout,
        live: if live { live_sink(view) } else { None },
    };
    let out = node.exec(&req).await?;
    Ok(Output {
        status: out.status,
        signal: out.signal,
        stdout: out.stdout,
        stderr: out.stderr,
        truncated: out.truncated,
        recorded: false,
    })
}

impl HasData for Exec {
    type Data<'a> = CapView<'a>;
}

impl Link for Exec {
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()> {
        exec::add_to_linker::<T, Exec>(linker, |s| CapView {
            call: s.caps().call,
        })
        .map_err(anyhow::Error::from)
    }
}
