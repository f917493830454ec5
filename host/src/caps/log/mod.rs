//! `stackhost:host/log`: events and progress from plugins, kept with the
//! step's report and shown on the terminal.

mod host;

use crate::caps::interface::Interface;
use semver::Version;

/// Marker for the `log` interface.
pub struct Log;

impl Interface for Log {
    const NAME: &'static str = "log";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;
}
