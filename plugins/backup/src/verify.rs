//! `backup verify`: read an export back against its manifest.

use stackhost_sdk::archive;
use stackhost_sdk::prelude::*;

pub(crate) fn verify(inv: &Invocation) -> Result<Outcome> {
    let file = inv.require("file")?;
    let artifact = archive::open(file)?;
    let bad = artifact.verify()?;
    if !bad.is_empty() {
        let names: Vec<String> = bad
            .iter()
            .map(|m| {
                format!(
                    "{} (expected {}, found {})",
                    m.name, m.expected_sha256, m.actual_sha256
                )
            })
            .collect();
        bail!("{file} fails verification: {}", names.join("; "));
    }
    let mut msg = format!(
        "{file}: all {} items match their sha256",
        artifact.items()?.len()
    );
    // What the export left out (--allow-partial) is not in it: say so.
    let meta: Option<crate::artifact::Meta> = artifact
        .read(crate::META, 16 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if let Some(m) = meta.filter(|m| !m.omitted.is_empty()) {
        let left: Vec<String> = m.omitted.iter().map(ToString::to_string).collect();
        msg.push_str(&format!(
            "; the export left out (--allow-partial): {}",
            left.join("; ")
        ));
    }
    Ok(Outcome::ok(msg))
}
