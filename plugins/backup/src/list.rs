//! `backup list`: the exports in a directory, newest first, with what
//! each holds.

use crate::META;
use crate::artifact::{Meta, artifacts_in, databases, no_exports_yet};
use serde::Serialize;
use stackhost_sdk::archive;
use stackhost_sdk::clock::utc_stamp;
use stackhost_sdk::prelude::*;

/// Bytes for people: KiB under a MiB, MiB under a GiB.
pub(crate) fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    let b = bytes as f64;
    if bytes < KIB {
        format!("{bytes} B")
    } else if bytes < MIB {
        format!("{:.1} KiB", b / KIB as f64)
    } else if bytes < GIB {
        format!("{:.1} MiB", b / MIB as f64)
    } else {
        format!("{:.1} GiB", b / GIB as f64)
    }
}

/// What an export holds, from its `backup.json`: the databases by name,
/// then the other items (`droplets`, `services/filesystem`, `settings`).
/// Every content recorded there went in: an export that cannot write one
/// leaves no file at all.
fn held(meta: &Meta) -> Vec<String> {
    let dbs = databases(meta);
    let mut out = Vec::new();
    if !dbs.is_empty() {
        out.push(format!("databases ({})", dbs.join(", ")));
    }
    out.extend(
        meta.contents
            .iter()
            .filter(|c| c.kind != "database")
            .map(|c| c.item.clone()),
    );
    out
}

/// One row of `list --json`.
#[derive(Serialize)]
struct Listing {
    path: String,
    size: u64,
    modified: u64,
    /// `cluster`, or `node NAME` for --only-this-node.
    scope: Option<String>,
    /// Item names as the export's `backup.json` records them.
    items: Option<Vec<String>>,
    product_version: Option<String>,
}

pub(crate) fn list(inv: &Invocation) -> Result<Outcome> {
    let dir = inv.require("dir")?;
    let json = inv.flag("json");
    let Some(listed) = artifacts_in(dir)? else {
        return Ok(if json {
            Outcome::ok("[]")
        } else {
            no_exports_yet(dir)
        });
    };
    let exports: Vec<(archive::Listed, Option<Meta>)> = listed
        .into_iter()
        .map(|l| {
            // backup.json is the first item, so this reads only the start.
            let meta = archive::open(&l.path)
                .and_then(|a| a.read(META, 1 << 20))
                .ok()
                .and_then(|b| serde_json::from_slice::<Meta>(&b).ok());
            (l, meta)
        })
        .collect();
    if json {
        let rows: Vec<Listing> = exports
            .into_iter()
            .map(|(l, meta)| Listing {
                path: l.path,
                size: l.size,
                modified: l.modified,
                scope: meta.as_ref().map(|m| m.scope.clone()),
                items: meta
                    .as_ref()
                    .map(|m| m.contents.iter().map(|c| c.item.clone()).collect()),
                product_version: meta.and_then(|m| m.product_version),
            })
            .collect();
        return Ok(Outcome::ok(
            serde_json::to_string_pretty(&rows).map_err(|e| Error::plugin(e.to_string()))?,
        ));
    }
    if exports.is_empty() {
        return Ok(Outcome::ok(format!("no exports in {dir}")));
    }
    let contents: Vec<String> = exports
        .iter()
        .map(|(_, meta)| match meta {
            Some(m) => format!("{}: {}", m.scope, held(m).join(", ")),
            None => "? (no backup.json)".into(),
        })
        .collect();
    let width = contents
        .iter()
        .map(String::len)
        .chain(["CONTENTS".len()])
        .max()
        .unwrap_or(0);
    let mut out = format!(
        "{:<16}  {:>10}  {:<width$}  PATH\n",
        "DATE (UTC)", "SIZE", "CONTENTS"
    );
    for ((l, _), contents) in exports.iter().zip(contents) {
        let s = utc_stamp(l.modified);
        let date = format!(
            "{}-{}-{} {}:{}",
            &s[..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13]
        );
        out.push_str(&format!(
            "{date:<16}  {:>10}  {contents:<width$}  {}\n",
            human_size(l.size),
            l.path
        ));
    }
    Ok(Outcome::ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_for_people() {
        assert_eq!(human_size(500), "500 B");
        assert_eq!(human_size(3000), "2.9 KiB");
        assert_eq!(human_size(2_200_000), "2.1 MiB");
        assert_eq!(human_size(5 << 30), "5.0 GiB");
    }
}
