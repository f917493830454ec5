//! Match before you link: what a component imports is checked against what
//! this host provides and what the plugin was granted, before it runs.

use crate::caps::bindings::{WIT_PACKAGE, WIT_VERSION};
use crate::caps::registry::{self, Capabilities};
use semver::Version;

/// Why a component's imports were refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "plugin `{plugin}` targets {WIT_PACKAGE}@{wanted}, but this host serves {WIT_PACKAGE}@{WIT_VERSION}; \
         the versions are incompatible (rebuild the plugin against {WIT_PACKAGE}@{WIT_VERSION})"
    )]
    WitVersion { plugin: String, wanted: Version },
    #[error(
        "plugin `{plugin}` imports `{import}` but was not granted `{capability}`; \
         grant it (`stackhost plugin install --grant {capability}`) or remove the import"
    )]
    NotGranted {
        plugin: String,
        import: String,
        capability: String,
    },
    #[error(
        "plugin `{plugin}` imports `{import}` but its manifest does not request `{capability}`; \
         add [capabilities.{capability}] with a reason to its stackhost.toml"
    )]
    NotRequested {
        plugin: String,
        import: String,
        capability: String,
    },
    #[error("plugin `{plugin}` imports `{import}`, which no stackhost host provides")]
    Unknown { plugin: String, import: String },
    #[error(
        "plugin `{plugin}` imports `{import}`, newer than the `wit = \"{manifest}\"` its manifest \
         declares; set `wit` to the version the component was built against"
    )]
    NewerThanManifest {
        plugin: String,
        import: String,
        manifest: Version,
    },
}

/// The imports of `stackhost:host` interfaces newer than the manifest's
/// `wit`, as one error: the manifest understates what the component was
/// built against (and so which meaning its grants have).
pub fn newer_than_manifest<'a>(
    plugin: &str,
    manifest: &Version,
    imports: impl Iterator<Item = &'a str>,
) -> Option<ImportError> {
    let newer: Vec<&str> = imports
        .filter(|import| {
            import
                .strip_prefix(WIT_PACKAGE)
                .and_then(|r| r.split_once('@'))
                .and_then(|(_, v)| Version::parse(v).ok())
                .is_some_and(|v| v > *manifest)
        })
        .collect();
    (!newer.is_empty()).then(|| ImportError::NewerThanManifest {
        plugin: plugin.into(),
        import: newer.join("`, `"),
        manifest: manifest.clone(),
    })
}

/// Whether a plugin built against WIT `wanted` can run on this host: the
/// same major version (the same minor while the major is 0), not newer.
pub fn wit_compatible(wanted: &Version) -> bool {
    let same_line = if WIT_VERSION.major == 0 {
        wanted.major == 0 && wanted.minor == WIT_VERSION.minor
    } else {
        wanted.major == WIT_VERSION.major
    };
    same_line && wanted <= &WIT_VERSION
}

/// Which side decides whether an import is allowed.
pub enum Allowed<'a> {
    /// Only whether this host provides it (`plugin check` of a file whose
    /// manifest is missing or unusable).
    Provided,
    /// At install: the manifest's requests.
    Requested(&'a Capabilities),
    /// At run: the operator's grant.
    Granted(&'a Capabilities),
}

/// Check every import name of a component; the first refusal.
pub fn check<'a>(
    plugin: &str,
    imports: impl Iterator<Item = &'a str>,
    allowed: Allowed<'_>,
) -> Result<(), ImportError> {
    for import in imports {
        check_one(plugin, import, &allowed)?;
    }
    Ok(())
}

/// Every refused import of a component, in import order (`plugin check`
/// lists them all).
pub fn problems<'a>(
    plugin: &str,
    imports: impl Iterator<Item = &'a str>,
    allowed: Allowed<'_>,
) -> Vec<ImportError> {
    imports
        .filter_map(|import| check_one(plugin, import, &allowed).err())
        .collect()
}

/// The capabilities `requested` names that no import uses: a grant the
/// component could never exercise.
pub fn unused(requested: &Capabilities, imports: &[String]) -> Vec<&'static str> {
    requested
        .names()
        .into_iter()
        .filter(|name| {
            !imports.iter().any(|i| {
                i.strip_prefix(WIT_PACKAGE)
                    .and_then(|r| r.strip_prefix('/'))
                    .is_some_and(|r| r.split('@').next() == Some(*name))
            })
        })
        .collect()
}

fn check_one(plugin: &str, import: &str, allowed: &Allowed<'_>) -> Result<(), ImportError> {
    if import.starts_with("wasi:") {
        // WASI is linked with an empty context: no files, sockets or
        // environment, only clocks, random and captured stdio.
        return Ok(());
    }
    let Some(rest) = import
        .strip_prefix(WIT_PACKAGE)
        .and_then(|r| r.strip_prefix('/'))
    else {
        return Err(ImportError::Unknown {
            plugin: plugin.into(),
            import: import.into(),
        });
    };
    let (interface, version) = rest.split_once('@').unwrap_or((rest, ""));
    let wanted = Version::parse(version).map_err(|_| ImportError::Unknown {
        plugin: plugin.into(),
        import: import.into(),
    })?;
    if !wit_compatible(&wanted) {
        return Err(ImportError::WitVersion {
            plugin: plugin.into(),
            wanted,
        });
    }
    let capability = interface.to_string();
    if registry::interface(interface).is_none() {
        return Err(ImportError::Unknown {
            plugin: plugin.into(),
            import: import.into(),
        });
    }
    match allowed {
        Allowed::Requested(g) if !g.has(interface) => {
            return Err(ImportError::NotRequested {
                plugin: plugin.into(),
                import: import.into(),
                capability,
            });
        }
        Allowed::Granted(g) if !g.has(interface) => {
            return Err(ImportError::NotGranted {
                plugin: plugin.into(),
                import: import.into(),
                capability,
            });
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_newer_than_the_manifest_says_so() {
        let imports = [
            "stackhost:host/exec@0.1.1",
            "stackhost:host/fs@0.1.0",
            "wasi:io/streams@0.2.0",
        ];
        let found = newer_than_manifest("p", &Version::new(0, 1, 0), imports.into_iter()).unwrap();
        assert!(
            found
                .to_string()
                .contains("imports `stackhost:host/exec@0.1.1`, newer than the `wit = \"0.1.0\"`"),
            "{found}"
        );
        assert!(newer_than_manifest("p", &Version::new(0, 1, 1), imports.into_iter()).is_none());
    }

    #[test]
    fn wit_compatibility() {
        assert!(wit_compatible(&Version::new(0, 1, 0)));
        assert!(!wit_compatible(&Version::new(0, 2, 0)));
        assert!(!wit_compatible(&Version::new(1, 0, 0)));
        assert!(!wit_compatible(&Version::new(0, 1, 9)));
    }

    #[test]
    fn refuses_ungranted_and_unknown() {
        let none = Capabilities::default();
        let err = check(
            "p",
            ["stackhost:host/fs@0.1.0"].into_iter(),
            Allowed::Granted(&none),
        )
        .unwrap_err();
        assert!(err.to_string().contains("was not granted `fs`"), "{err}");
        let err = check(
            "p",
            ["acme:evil/net@1.0.0"].into_iter(),
            Allowed::Granted(&none),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("no stackhost host provides"),
            "{err}"
        );
        let err = check(
            "p",
            ["stackhost:host/log@1.0.0"].into_iter(),
            Allowed::Granted(&none),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("stackhost:host@1.0.0")
                && err.to_string().contains("stackhost:host@0.1.1")
        );
        // 0.1.0 and 0.1.1 imports alike; `run` needs no grant.
        check(
            "p",
            [
                "wasi:io/streams@0.2.6",
                "stackhost:host/log@0.1.0",
                "stackhost:host/run@0.1.1",
            ]
            .into_iter(),
            Allowed::Granted(&none),
        )
        .unwrap();
    }

    #[test]
    fn problems_lists_every_refused_import() {
        let exec_only =
            Capabilities::default().with::<crate::caps::exec::Exec>(crate::caps::exec::ExecGrant {
                reason: "r".into(),
                programs: vec![],
                read_only: vec![],
                roles: vec![],
                env: vec![],
                users: vec![],
                reboot: false,
                run: vec![],
            });
        let imports = [
            "wasi:io/streams@0.2.6",
            "stackhost:host/exec@0.1.0",
            "stackhost:host/fs@0.1.0",
            "stackhost:host/docker@0.1.0",
            "acme:evil/net@1.0.0",
        ];
        let all: Vec<String> = problems("p", imports.into_iter(), Allowed::Requested(&exec_only))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(
            all[0].contains(
                "imports `stackhost:host/fs@0.1.0` but its manifest does not request `fs`"
            )
        );
        assert!(all[1].contains(
            "imports `stackhost:host/docker@0.1.0` but its manifest does not request `docker`"
        ));
        assert!(all[2].contains("imports `acme:evil/net@1.0.0`, which no stackhost host provides"));
        // Provided: only what this host lacks.
        let all = problems("p", imports.into_iter(), Allowed::Provided);
        assert_eq!(all.len(), 1, "{all:#?}");
        // check stops at the first.
        let first = check("p", imports.into_iter(), Allowed::Requested(&exec_only)).unwrap_err();
        assert!(
            first.to_string().contains("does not request `fs`"),
            "{first}"
        );
    }
}
