//! Example vendor patch 1 from the guide: `aok-endpoint-fix`, "Correct aok
//! endpoint redirecting to custom uri", for product 3.4.2, on the router
//! and controller roles.

use patchkit::Edit;
use stackhost_sdk::prelude::*;

const NAME: &str = "aok-endpoint-fix";

const EDITS: &[Edit] = &[
    Edit {
        roles: &["controller"],
        path: "/etc/stackato/aok.yml",
        key: "custom_uri_redirect",
        value: "exact",
    },
    Edit {
        roles: &["router"],
        path: "/etc/stackato/router.yml",
        key: "aok_endpoint_redirect",
        value: "preserve-custom-uri",
    },
];

struct AokEndpointFix;

impl Patch for AokEndpointFix {
    fn info() -> PatchInfo {
        PatchInfo {
            id: 1,
            name: NAME.into(),
            description: "Correct aok endpoint redirecting to custom uri".into(),
            product_versions: "=3.4.2".into(),
            roles_affected: vec!["router".into(), "controller".into()],
            roles_to_restart: vec!["router".into(), "controller".into()],
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

export_patch!(AokEndpointFix);
