//! `stackhost:host/types`: only type definitions, linked for every plugin.

mod host;

use crate::caps::interface::Interface;
use semver::Version;

/// Marker for the `types` interface.
pub struct Types;

impl Interface for Types {
    const NAME: &'static str = "types";
    const SINCE: Version = Version::new(0, 1, 0);
    const IN_PATCH_WORLD: bool = true;
}
