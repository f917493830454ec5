//! Example vendor patch 2 from the guide: `logs-endpoint-fix`, "Allow
//! custom logs endpoint", for product 3.4.2, on the controller role.

use patchkit::Edit;
use stackhost_sdk::prelude::*;

const NAME: &str = "logs-endpoint-fix";

const EDITS: &[Edit] = &[Edit {
    roles: &["controller"],
    path: "/etc/stackato/logyard.yml",
    key: "allow_custom_endpoint",
    value: "true",
}];

struct LogsEndpointFix;

impl Patch for LogsEndpointFix {
    fn info() -> PatchInfo {
        PatchInfo {
            id: 2,
            name: NAME.into(),
            description: "Allow custom logs endpoint".into(),
            product_versions: "=3.4.2".into(),
            roles_affected: vec!["controller".into()],
            roles_to_restart: vec!["controller".into()],
        }
    }

    fn check(node: &Node) -> Result<bool> {
        patchkit::check(EDITS, node)
    }

    fn apply(node: &Node) -> Result<()> {
        patchkit::apply(NAME, EDITS, node)
    }

    fn revert(node: &Node) -> Result<()> {
        patchkit::revert(NAME, EDITS, node)
    }
}

export_patch!(LogsEndpointFix);
