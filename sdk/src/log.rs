//! Telling the operator what is happening. Warnings and errors are always
//! shown in the run's report (also with `-q`); info and debug lines with
//! `--verbose`. Every event is in `--json` and recorded with the run.

use crate::bindings::stackhost::host::log::{self as wit, Level};

/// A detail useful when something goes wrong.
pub fn debug(message: impl AsRef<str>) {
    wit::event(Level::Debug, message.as_ref());
}

/// What the plugin is doing.
pub fn info(message: impl AsRef<str>) {
    wit::event(Level::Info, message.as_ref());
}

/// Something the operator should look at; the run goes on.
pub fn warn(message: impl AsRef<str>) {
    wit::event(Level::Warn, message.as_ref());
}

/// Something failed. To fail the step, return an error as well.
pub fn error(message: impl AsRef<str>) {
    wit::event(Level::Error, message.as_ref());
}

/// Progress of the current step: `done` of `total` (if known) units, where
/// `unit` is `bytes` or `items`. Shown as a progress bar.
pub fn progress(done: u64, total: Option<u64>, unit: &str) {
    wit::progress(done, total, unit);
}
