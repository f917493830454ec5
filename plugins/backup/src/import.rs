//! `backup import`: restore an export's databases, droplets, services and
//! settings onto this cluster.

use crate::META;
use crate::artifact::Meta;
use stackhost_sdk::archive;
use stackhost_sdk::postgres;
use stackhost_sdk::prelude::*;

pub(crate) fn import(inv: &Invocation) -> Result<Outcome> {
    let file = inv.require("file")?;
    let artifact = archive::open(file)?;
    let bad = artifact.verify()?;
    if !bad.is_empty() {
        let names: Vec<&str> = bad.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "{file} fails verification (damaged: {}); nothing was imported",
            names.join(", ")
        );
    }
    let meta: Meta = serde_json::from_slice(&artifact.read(META, 16 << 20)?)
        .map_err(|e| Error::plugin(format!("{file} has no readable {META}: {e}")))?;
    let mut done = Vec::new();
    let mut not_restored = Vec::new();
    for c in &meta.contents {
        let target = nodes::with_role(&c.role).into_iter().next();
        let Some(node) = target else {
            not_restored.push(format!(
                "{} {} (no node holds the {} role here)",
                c.kind, c.source, c.role
            ));
            continue;
        };
        match c.kind.as_str() {
            "database" => {
                postgres::restore(&node, &c.source, &artifact, &c.item)?;
                done.push(format!("database {} on {}", c.source, node.name()));
            }
            "droplets" | "services" => {
                let bytes = artifact.unpack(&c.item, &node, &c.source)?;
                done.push(format!("{} into {}:{} ({bytes} bytes)", c.kind, node.name(), c.source));
            }
            _ => not_restored.push(format!(
                "{} (kept in the export under `{}`; the target's own settings stay; review and copy by hand)",
                c.kind, c.item
            )),
        }
    }
    let mut msg = format!(
        "{} {file}: {}",
        if inv.dry_run() {
            "would import"
        } else {
            "imported"
        },
        done.join("; ")
    );
    if !not_restored.is_empty() {
        msg.push_str(&format!(". Not restored: {}", not_restored.join("; ")));
    }
    if !meta.omitted.is_empty() {
        let left: Vec<String> = meta.omitted.iter().map(ToString::to_string).collect();
        msg.push_str(&format!(
            ". The export left out (--allow-partial), so it is not here: {}",
            left.join("; ")
        ));
    }
    msg.push_str(". Apps that wrote database connection details during staging must be re-staged.");
    Ok(Outcome::changed(msg))
}
