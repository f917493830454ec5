//! What a run shows while it runs: on a terminal, one line per active step
//! (its node, its name, and its latest output line or progress bar),
//! redrawn in place by indicatif; elsewhere, plain lines on stderr at most
//! every few seconds per step (every line with `--verbose`). Plugins drive
//! it through `log.progress` and `exec.run-live`; everything shown passes
//! through the run's secret redactor and the terminal escaper first.

use crate::redact::Redactor;
use crate::text::escape_line;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest line shown for one step.
const MAX_LINE: usize = 200;
/// How often a step may print a plain line when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Nothing (tests of the runtime, `--quiet`).
    Off,
    /// Plain lines on stderr, throttled unless `verbose`.
    Plain { verbose: bool },
    /// Redrawn lines on a terminal.
    Terminal,
}

impl Mode {
    /// Terminal bars when stderr is a terminal, plain lines otherwise.
    pub fn detect(verbose: bool) -> Mode {
        use std::io::IsTerminal;
        if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain { verbose }
        }
    }
}

/// The display of one run, shared by its steps.
pub struct Progress {
    mode: Mode,
    multi: Option<MultiProgress>,
    secrets: Arc<Redactor>,
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Progress")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Progress {
    pub fn new(mode: Mode, secrets: Arc<Redactor>) -> Progress {
        let multi = (mode == Mode::Terminal)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)));
        Progress {
            mode,
            multi,
            secrets,
        }
    }

    /// The line of a step that starts now; it goes away when dropped.
    pub fn step(&self, node: &str, step: &str) -> StepProgress {
        let label = format!(
            "{} {}",
            escape_line(node),
            escape_line(&self.secrets.text(step.to_string()))
        );
        let bar = self.multi.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        StepProgress {
            mode: self.mode,
            label,
            bar,
            secrets: self.secrets.clone(),
            last_plain: Mutex::new(None),
        }
    }
}

/// One step's line.
pub struct StepProgress {
    mode: Mode,
    label: String,
    bar: Option<ProgressBar>,
    secrets: Arc<Redactor>,
    last_plain: Mutex<Option<Instant>>,
}

impl crate::caps::ctx::LiveStep for StepProgress {
    fn line(&self, text: &str) {
        StepProgress::line(self, text)
    }

    fn set(&self, done: u64, total: Option<u64>, unit: &str) {
        StepProgress::set(self, done, total, unit)
    }
}

impl StepProgress {
    /// A line of a program's output.
    pub fn line(&self, text: &str) {
        let text = self.clean(text);
        if text.is_empty() {
            return;
        }
        self.show(text, false);
    }

    /// `done` of `total` `unit`s.
    pub fn set(&self, done: u64, total: Option<u64>, unit: &str) {
        let unit = escape_line(&cut(unit, 32)).into_owned();
        let text = match total {
            Some(t) if t > 0 => format!(
                "{}% ({} of {} {unit})",
                (done.min(t) as u128 * 100 / t as u128),
                done,
                t
            ),
            _ => format!("{done} {unit}"),
        };
        let last = total.is_some_and(|t| done >= t);
        self.show(text, last);
    }

    fn clean(&self, text: &str) -> String {
        let text = text.trim_end_matches(['\n', '\r']);
        // A carriage return redraws a line (apt, curl): keep the last part.
        let text = text.rsplit('\r').next().unwrap_or(text);
        escape_line(&self.secrets.text(cut(text, MAX_LINE))).into_owned()
    }

    fn show(&self, text: String, force: bool) {
        match self.mode {
            Mode::Off => {}
            Mode::Terminal => {
                if let Some(bar) = &self.bar {
                    bar.set_message(text);
                }
            }
            Mode::Plain { verbose } => {
                let mut last = self.last_plain.lock().unwrap_or_else(|p| p.into_inner());
                let due = last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
                if verbose || force || due {
                    *last = Some(Instant::now());
                    eprintln!("  … {}: {text}", self.label);
                }
            }
        }
    }
}

impl Drop for StepProgress {
    fn drop(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary.
fn cut(text: &str, max: usize) -> String {
    let end = crate::text::floor_char_boundary(text, max);
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_text_hides_secrets_and_escapes() {
        let p = Progress::new(Mode::Off, Arc::new(Redactor::new(vec!["hunter2".into()])));
        let step = p.step("n1", "apply");
        assert_eq!(
            step.clean("key hunter2 \x1b[2J done\n"),
            "key *** \\x1b[2J done"
        );
        assert_eq!(step.clean("a\rb\rlast"), "last");
    }
}
