//! `stackhost plugin check FILE`: everything `plugin install` would refuse
//! a file for, listed all at once, without installing it or asking for any
//! grant. FILE may also be a manifest alone (`stackhost.toml`), which is
//! what a plugin crate's build script checks. It runs the same checks install does (`inspect`, the manifest's
//! own validation, `imports`, `signing`), but keeps going past the first
//! problem wherever the file still allows it.

use crate::paths::Paths;
use crate::plugin::signing::TrustedKeys;
use crate::plugin::vet::{CheckReport, check_file, check_manifest_file};
use crate::runtime::Runtime;
use crate::text::escape_line;
use std::path::Path;
use std::process::ExitCode;

/// `plugin check FILE [--json]`: exit 0 when the file would install, 1
/// when it has problems.
pub fn run(paths: &Paths, file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let runtime = Runtime::new(&paths.compiled())?;
    let keys = TrustedKeys::new(&paths.config);
    // A manifest alone (a plugin crate's build script checks its own).
    let report = if file.extension().is_some_and(|e| e == "toml") {
        check_manifest_file(file)
    } else {
        check_file(&runtime, &keys, file)
    };
    if json {
        super::print_json(&report)?;
    } else {
        print_report(&report);
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::EXIT_ERROR)
    })
}

pub(super) fn print_report(r: &CheckReport) {
    let file = escape_line(&r.file);
    if r.ok {
        let id = r.plugin.as_ref().map_or_else(String::new, |p| {
            format!(
                "{} {} ({}), stackhost:host@{}, requests {}",
                escape_line(&p.name),
                p.version,
                p.kind,
                p.wit,
                if p.requests.is_empty() {
                    "nothing".to_string()
                } else {
                    p.requests.join(", ")
                }
            )
        });
        let signed = match &r.signed_by {
            Some(key) => format!("signed by key {}", escape_line(key)),
            None => "unsigned".into(),
        };
        println!("ok: {file}: {id}; {signed}");
    } else {
        let n = r.problems.len();
        println!("{file}: {n} problem{}:", if n == 1 { "" } else { "s" });
        for p in &r.problems {
            // A TOML error spans lines (the line, a caret under the column):
            // keep them as lines, indented under their item.
            let shown = crate::text::escape_for_terminal(p.trim_end());
            println!("  - {}", shown.replace('\n', "\n    "));
        }
    }
    for w in &r.warnings {
        println!("  warning: {w}");
    }
}
