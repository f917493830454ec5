//! The human-readable run report: per phase, a line per step; under
//! `--dry-run`, the mutations per node; then a recap per node. Every text
//! a plugin produced is escaped for the terminal (see `text`).

use crate::caps::run::StepStatus;
use crate::run::journal::PhaseWhen;
use crate::run::report::RunReport;
use crate::text::{escape_for_terminal as shown, escape_line as one_line};
use std::collections::BTreeMap;
use std::io::Write;

/// Whether statuses are colored: stdout is a terminal and `NO_COLOR` is
/// not set (<https://no-color.org>).
fn colors() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// A status padded to `width`, colored as Ansible does when `color`.
pub fn status_cell(status: StepStatus, width: usize, color: bool) -> String {
    let text = format!("{:<width$}", status.as_str());
    let code = match status {
        StepStatus::Ok => "32",
        StepStatus::Changed => "33",
        StepStatus::Failed | StepStatus::Unreachable => "31",
        StepStatus::Skipped | StepStatus::NotRun => "36",
        StepStatus::Interrupted => "35",
    };
    if color {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text
    }
}

/// Whether an event of `level` is printed: warnings and errors always,
/// info and debug with `--verbose` (the JSON report and the journal keep
/// every event).
fn shown_level(level: &str, verbose: bool) -> bool {
    verbose || matches!(level, "warn" | "error")
}

/// Print the report; `verbose` shows the plugins' info and debug events.
pub fn print(r: &RunReport, verbose: bool) -> std::io::Result<()> {
    let color = colors();
    let mut out = std::io::stdout().lock();
    let mode = if r.dry_run {
        " (dry run: nothing is changed)"
    } else {
        ""
    };
    writeln!(
        out,
        "{} {} · {}{mode}",
        one_line(&r.plugin),
        one_line(&r.version),
        one_line(&r.command)
    )?;
    for e in r
        .plan_events
        .iter()
        .filter(|e| shown_level(e.level, verbose))
    {
        writeln!(out, "  {}: {}", e.level, shown(&e.message))?;
    }
    if let Some(err) = &r.plan_error {
        writeln!(out, "\nplan failed: {}", shown(err))?;
        return Ok(());
    }
    let width = r
        .phases
        .iter()
        .flat_map(|p| &p.steps)
        .map(|s| one_line(&s.node).chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    print_phases(&mut out, r, width, color, verbose)?;
    let hidden = r
        .plan_events
        .iter()
        .chain(
            r.phases
                .iter()
                .flat_map(|p| &p.steps)
                .flat_map(|s| &s.events),
        )
        .filter(|e| !shown_level(e.level, verbose))
        .count();
    if hidden > 0 {
        writeln!(
            out,
            "\n{hidden} info or debug line(s) from the plugin not shown: --verbose shows them \
             (--json always has them)"
        )?;
    }
    if r.dry_run {
        print_mutations(&mut out, r)?;
    }
    if let Some(why) = &r.halted {
        writeln!(out, "\nThe rollout halted: {}.", shown(why))?;
    }
    if let Some(sig) = r.interrupted {
        print_interrupted(&mut out, r, sig)?;
    }
    print_recap(&mut out, r, width)
}

/// Each phase and its steps, one line a step, its events below it.
fn print_phases(
    out: &mut impl Write,
    r: &RunReport,
    width: usize,
    color: bool,
    verbose: bool,
) -> std::io::Result<()> {
    for phase in &r.phases {
        let when = match phase.when {
            PhaseWhen::Normal => "",
            PhaseWhen::Always => " (always)",
            PhaseWhen::OnFailure => " (on failure)",
        };
        writeln!(out, "\nphase {}{when}", one_line(&phase.name))?;
        for s in &phase.steps {
            writeln!(
                out,
                "  {:<width$}  {} {}: {}",
                one_line(&s.node),
                status_cell(s.status, 8, color),
                one_line(&s.name),
                shown(&s.message)
            )?;
            for e in s.events.iter().filter(|e| shown_level(e.level, verbose)) {
                writeln!(
                    out,
                    "  {:<width$}  {:<8} {}",
                    "",
                    e.level,
                    shown(&e.message)
                )?;
            }
        }
    }
    Ok(())
}

/// Under `--dry-run`: the mutations that would be made, by node, with
/// the diffs of file writes.
fn print_mutations(out: &mut impl Write, r: &RunReport) -> std::io::Result<()> {
    let mut by_node: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for m in r.mutations() {
        by_node.entry(m.node.as_str()).or_default().push(m);
    }
    if by_node.is_empty() {
        writeln!(out, "\nDry run: no mutations would be made.")?;
    } else {
        writeln!(out, "\nDry run: these mutations would be made:")?;
        for (node, ms) in by_node {
            writeln!(out, "  {}", one_line(node))?;
            for m in ms {
                writeln!(out, "    {:<10} {}", one_line(&m.call), one_line(&m.detail))?;
                for line in m.diff.iter().flat_map(|d| d.lines()) {
                    writeln!(out, "      {}", one_line(line))?;
                }
            }
        }
    }
    Ok(())
}

/// What a signal stopped: steps finished, stopped and not started.
fn print_interrupted(out: &mut impl Write, r: &RunReport, sig: &str) -> std::io::Result<()> {
    let steps: Vec<_> = r.phases.iter().flat_map(|p| &p.steps).collect();
    let count = |f: &dyn Fn(StepStatus) -> bool| steps.iter().filter(|s| f(s.status)).count();
    writeln!(
        out,
        "\nInterrupted by {sig}: {} step(s) finished, {} stopped while running (their programs \
         killed), {} not started.",
        count(&|s| matches!(
            s,
            StepStatus::Ok | StepStatus::Changed | StepStatus::Skipped | StepStatus::Failed
        )),
        count(&|s| s == StepStatus::Interrupted),
        count(&|s| s == StepStatus::NotRun),
    )?;
    Ok(())
}

/// Per node, how many steps ended how.
fn print_recap(out: &mut impl Write, r: &RunReport, width: usize) -> std::io::Result<()> {
    writeln!(out, "\nRECAP")?;
    let mut recap: BTreeMap<&str, [usize; 7]> = BTreeMap::new();
    for s in r.phases.iter().flat_map(|p| &p.steps) {
        let slot = match s.status {
            StepStatus::Ok => 0,
            StepStatus::Changed => 1,
            StepStatus::Failed => 2,
            StepStatus::Skipped => 3,
            StepStatus::NotRun => 4,
            StepStatus::Unreachable => 5,
            StepStatus::Interrupted => 6,
        };
        recap.entry(s.node.as_str()).or_default()[slot] += 1;
    }
    for (
        node,
        [
            ok,
            changed,
            failed,
            skipped,
            not_run,
            unreachable,
            interrupted,
        ],
    ) in recap
    {
        let interrupted = if interrupted > 0 {
            format!(" interrupted={interrupted}")
        } else {
            String::new()
        };
        writeln!(
            out,
            "  {:<width$}  ok={ok} changed={changed} unreachable={unreachable} failed={failed} skipped={skipped} not-run={not_run}{interrupted}",
            one_line(node)
        )?;
    }
    Ok(())
}

/// One step's timing, for `--timing` (milliseconds).
struct Timed<'a> {
    node: &'a str,
    handshake: Option<f64>,
    first_byte: Option<f64>,
    total: f64,
}

/// `--timing`: per node, the SSH handshake, the first byte back and the
/// step's total, each as p50, p90 and the slowest node.
pub fn print_timing(r: &RunReport) -> std::io::Result<()> {
    let steps: Vec<Timed> = r
        .phases
        .iter()
        .flat_map(|p| &p.steps)
        .filter(|s| s.status != StepStatus::NotRun)
        .map(|s| Timed {
            node: &s.node,
            handshake: s.handshake_ms,
            first_byte: s.first_byte_ms,
            total: s.duration_ms as f64,
        })
        .collect();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nTIMING")?;
    for line in timing_lines(&steps) {
        writeln!(out, "  {line}")?;
    }
    Ok(())
}

/// The `--timing` lines.
fn timing_lines(steps: &[Timed]) -> Vec<String> {
    let row = |label: &str, pick: &dyn Fn(&Timed) -> Option<f64>| {
        let mut v: Vec<(f64, &str)> = steps
            .iter()
            .filter_map(|s| pick(s).map(|ms| (ms, s.node)))
            .collect();
        if v.is_empty() {
            return format!("{label:<11} none (no SSH node answered)");
        }
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Nearest rank: the smallest value at or above p% of the steps.
        let at = |p: usize| v[(v.len() * p).div_ceil(100).max(1) - 1].0;
        let (max, node) = v[v.len() - 1];
        format!(
            "{label:<11} p50 {:>7.1} ms  p90 {:>7.1} ms  slowest {max:>7.1} ms ({}), {} step(s)",
            at(50),
            at(90),
            one_line(node),
            v.len()
        )
    };
    vec![
        row("handshake", &|s| s.handshake),
        row("first byte", &|s| s.first_byte),
        row("total", &|s| Some(s.total)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timing_gives_percentiles_and_the_slowest_node() {
        let names: Vec<String> = (1..=10).map(|i| format!("n{i}")).collect();
        let steps: Vec<Timed> = names
            .iter()
            .zip(1..=10)
            .map(|(node, i)| Timed {
                node,
                handshake: Some(i as f64),
                first_byte: Some(10.0 * i as f64),
                total: 100.0 * i as f64,
            })
            .collect();
        assert_eq!(
            timing_lines(&steps),
            [
                "handshake   p50     5.0 ms  p90     9.0 ms  slowest    10.0 ms (n10), 10 step(s)",
                "first byte  p50    50.0 ms  p90    90.0 ms  slowest   100.0 ms (n10), 10 step(s)",
                "total       p50   500.0 ms  p90   900.0 ms  slowest  1000.0 ms (n10), 10 step(s)",
            ]
        );
        // The local node has no handshake; a hostile node name is escaped.
        let lines = timing_lines(&[Timed {
            node: "\x1b[2Jx",
            handshake: None,
            first_byte: None,
            total: 5.0,
        }]);
        assert_eq!(lines[0], "handshake   none (no SSH node answered)");
        assert!(lines[2].ends_with("(\\x1b[2Jx), 1 step(s)"), "{}", lines[2]);
    }

    #[test]
    fn statuses_are_padded_and_colored_only_when_asked() {
        assert_eq!(status_cell(StepStatus::Ok, 8, false), "ok      ");
        assert_eq!(
            status_cell(StepStatus::Failed, 8, true),
            "\x1b[31mfailed  \x1b[0m"
        );
        assert_eq!(
            status_cell(StepStatus::Interrupted, 8, false),
            "interrupted"
        );
    }
}
