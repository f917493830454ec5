//! The checks behind `plugin check`: everything `plugin install` would
//! refuse a file for, collected all at once rather than stopping at the
//! first. The same checks install does ([`inspect`], the manifest's own
//! validation, [`imports`], [`signing`]), kept going past the first problem
//! wherever the file still allows it.

use crate::plugin::inspect::{self, InspectError};
use crate::plugin::manifest::Kind;
use crate::plugin::signing::{self, TrustedKeys};
use crate::plugin::store;
use crate::runtime::{Runtime, imports};
use serde::Serialize;
use std::path::Path;

/// What `plugin check` found, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct CheckReport {
    pub file: String,
    /// No problems: `plugin install` would accept the file.
    pub ok: bool,
    /// Who the file says it is, when its manifest could be read.
    pub plugin: Option<PluginId>,
    /// Hex sha256 of the file, when it could be read.
    pub digest: Option<String>,
    /// Interfaces the component imports, when it compiled.
    pub imports: Vec<String>,
    /// The signing key's id, when a `.minisig` beside the file verified.
    pub signed_by: Option<String>,
    /// Everything install would refuse the file for.
    pub problems: Vec<String>,
    /// What the operator should know before granting it.
    pub warnings: Vec<String>,
}

impl CheckReport {
    /// Nothing found yet about `file`.
    fn new(file: &Path) -> CheckReport {
        CheckReport {
            file: file.display().to_string(),
            ok: false,
            plugin: None,
            digest: None,
            imports: Vec::new(),
            signed_by: None,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// What a valid manifest `m` says by itself: who the plugin is, a WIT
    /// version this host cannot serve, and its root-equivalent grants.
    fn manifest_checks(&mut self, m: &crate::plugin::manifest::Manifest) {
        self.plugin = Some(PluginId {
            name: m.name.clone(),
            version: m.version.to_string(),
            kind: m.kind.as_str(),
            wit: m.wit.to_string(),
            requests: m.capabilities.names(),
        });
        if !imports::wit_compatible(&m.wit) {
            let e = imports::ImportError::WitVersion {
                plugin: m.name.clone(),
                wanted: m.wit.clone(),
            };
            self.problem(e.to_string());
        }
        self.warnings = m
            .capabilities
            .requests()
            .into_iter()
            .flat_map(|r| r.root_warnings)
            .collect();
    }

    /// Add a problem, once: a WIT version refused for the manifest and for
    /// each import reads the same.
    fn problem(&mut self, text: String) {
        if !self.problems.contains(&text) {
            self.problems.push(text);
        }
    }
}

/// A plugin's identity from its manifest.
#[derive(Debug, Serialize)]
pub struct PluginId {
    pub name: String,
    pub version: String,
    pub kind: &'static str,
    pub wit: String,
    /// The capabilities its manifest requests.
    pub requests: Vec<&'static str>,
}

/// Check `file` the way `plugin install` would, collecting every problem.
pub fn check_file(runtime: &Runtime, keys: &TrustedKeys, file: &Path) -> CheckReport {
    let mut report = CheckReport::new(file);
    let bytes = match std::fs::read(file) {
        Ok(b) => b,
        Err(e) => {
            report.problem(format!("cannot read {}: {e}", file.display()));
            return report;
        }
    };
    let digest = store::digest(&bytes);
    report.digest = Some(digest.clone());

    // Is it a component, with one manifest that parses and validates?
    let (manifest, structure_ok) = match inspect::read_manifest(&bytes) {
        Ok(m) => (Some(m), true),
        Err(e) => {
            let structural = matches!(
                e,
                InspectError::NotWasm | InspectError::CoreModule | InspectError::Malformed(_)
            );
            report.problem(e.to_string());
            (None, !structural)
        }
    };
    let name = manifest.as_ref().map_or_else(
        || {
            file.file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
        },
        |m| m.name.clone(),
    );
    if let Some(m) = &manifest {
        report.manifest_checks(m);
    }

    if structure_ok {
        check_imports(
            &mut report,
            runtime,
            &digest,
            &bytes,
            &name,
            manifest.as_ref(),
        );
    }
    check_signature(&mut report, keys, file, &bytes, &name, manifest.as_ref());
    report.ok = report.problems.is_empty();
    report
}

/// Check a manifest file alone (`stackhost.toml`), as install checks the
/// manifest inside a component: what a plugin crate's build script runs,
/// so `cargo build` fails on a manifest install would refuse.
pub fn check_manifest_file(file: &Path) -> CheckReport {
    let mut report = CheckReport::new(file);
    match std::fs::read(file) {
        Err(e) => report.problem(format!("cannot read {}: {e}", file.display())),
        Ok(bytes) => match crate::plugin::manifest::Manifest::parse(&bytes) {
            Err(e) => report.problem(e.to_string()),
            Ok(m) => report.manifest_checks(&m),
        },
    }
    report.ok = report.problems.is_empty();
    report
}

/// Does it compile, and is every import provided and requested?
fn check_imports(
    report: &mut CheckReport,
    runtime: &Runtime,
    digest: &str,
    bytes: &[u8],
    name: &str,
    manifest: Option<&crate::plugin::manifest::Manifest>,
) {
    match runtime.compile(digest, || Ok(bytes.to_vec())) {
        Ok((component, _)) => {
            report.imports = runtime.imports(&component);
            let allowed = match manifest.as_ref().map(|m| &m.capabilities) {
                Some(g) => imports::Allowed::Requested(g),
                None => imports::Allowed::Provided,
            };
            for e in imports::problems(name, report.imports.iter().map(String::as_str), allowed) {
                report.problem(e.to_string());
            }
            if let Some(m) = manifest {
                let imported = report.imports.iter().map(String::as_str);
                if let Some(e) = imports::newer_than_manifest(name, &m.wit, imported) {
                    report.problem(e.to_string());
                }
                for c in imports::unused(&m.capabilities, &report.imports) {
                    report.warnings.push(format!(
                        "requests `{c}`, but the component never imports stackhost:host/{c}: \
                         a grant it cannot use (drop [capabilities.{c}])"
                    ));
                }
            }
        }
        Err(e) => report.problem(format!("`{name}` is not a valid component: {e:#}")),
    }
}

/// A signature beside the file must verify; a vendor patch must have one.
fn check_signature(
    report: &mut CheckReport,
    keys: &TrustedKeys,
    file: &Path,
    bytes: &[u8],
    name: &str,
    manifest: Option<&crate::plugin::manifest::Manifest>,
) {
    let sig_path = signing::signature_path(file);
    match std::fs::read_to_string(&sig_path) {
        Ok(text) => match keys.verify(bytes, &text) {
            Ok(signer) => report.signed_by = Some(signer.key_id),
            Err(e) => report.problem(format!(
                "the signature {} does not verify against the trusted keys: {e}",
                sig_path.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if manifest.as_ref().is_some_and(|m| m.kind == Kind::Patch) {
                report.problem(format!(
                    "patch `{name}` is not signed ({} is missing); vendor patches must be \
                         signed by a trusted key",
                    sig_path.display()
                ));
            }
        }
        Err(e) => report.problem(format!("cannot read {}: {e}", sig_path.display())),
    }
}
