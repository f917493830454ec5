//! `backup prune`: keep the newest N exports, delete the rest.

use crate::artifact::{artifacts_in, exports, no_exports_yet, readable_artifact};
use stackhost_sdk::archive;
use stackhost_sdk::prelude::*;

pub(crate) fn prune(inv: &Invocation) -> Result<Outcome> {
    let dir = inv.require("dir")?;
    let keep: usize = inv
        .require("keep")?
        .parse()
        .map_err(|_| Error::plugin("--keep takes a whole number"))?;
    let Some(listed) = artifacts_in(dir)? else {
        return Ok(no_exports_yet(dir));
    };
    // Foreign and damaged files neither count towards --keep nor are ever
    // deleted: counting them could leave fewer good exports than asked.
    let (good, skipped): (Vec<_>, Vec<_>) = listed
        .into_iter()
        .map(|l| l.path)
        .partition(|p| readable_artifact(p));
    let doomed = good.get(keep..).unwrap_or_default();
    for path in doomed {
        archive::remove(path)?;
    }
    let mut msg = if doomed.is_empty() {
        format!(
            "{} in {dir}, keeping {keep}: nothing to delete",
            exports(good.len())
        )
    } else {
        format!(
            "{} {} of {}: {}",
            if inv.dry_run() {
                "would delete"
            } else {
                "deleted"
            },
            doomed.len(),
            exports(good.len()),
            doomed.join(", ")
        )
    };
    if !skipped.is_empty() {
        msg.push_str(&format!(
            "; skipped (not readable stackhost exports, never deleted; `backup verify FILE` says why): {}",
            skipped.join(", ")
        ));
    }
    Ok(if doomed.is_empty() {
        Outcome::ok(msg)
    } else {
        Outcome::changed(msg)
    })
}
