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
    Ok(Outcome::ok(format!(
        "{file}: all {} items match their sha256",
        artifact.items()?.len()
    )))
}
