//! The plugin SDK this binary carries: the `stackhost-sdk` crate and the
//! `stackhost:host` WIT package it generates its bindings from, embedded
//! at build time (host/build.rs lists the files), and writing them out for
//! `stackhost sdk export` and `stackhost plugin new`.
//!
//! The exported layout mirrors the repository's, because the SDK finds the
//! WIT as `../wit` from its own directory (`wit_bindgen::generate!` in
//! sdk/src/lib.rs): `DIR/stackhost-sdk/` (Cargo.toml, README.md, src/) and
//! `DIR/wit/` (*.wit, MANIFEST.md).

use std::path::{Path, PathBuf};

/// One embedded file: its place in an export and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct EmbeddedFile {
    /// Relative path with `/` separators, below the export directory.
    pub path: &'static str,
    pub data: &'static [u8],
}

/// Every file of the SDK and the WIT package, sorted by path.
pub const FILES: &[EmbeddedFile] = include!(concat!(env!("OUT_DIR"), "/sdk_files.rs"));

/// The SDK crate's directory inside an export.
pub const CRATE_DIR: &str = "stackhost-sdk";
/// The WIT package's directory inside an export (the SDK's `../wit`).
pub const WIT_DIR: &str = "wit";

/// Why an export was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{0} is not empty; pass --force to replace its {CRATE_DIR}/ and {WIT_DIR}/ (nothing else in it is touched), or pick an empty or new directory"
    )]
    NotEmpty(PathBuf),
    #[error("{0} exists and is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    /// The SDK crate: what a plugin's `stackhost-sdk = { path = ... }` names.
    pub crate_dir: PathBuf,
    /// The WIT package beside it.
    pub wit_dir: PathBuf,
    pub files: usize,
}

/// The embedded file at `path` (as listed in [`FILES`]).
fn file(path: &str) -> &'static [u8] {
    FILES
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} is embedded (host/build.rs)"))
        .data
}

/// The SDK crate's version, from its embedded Cargo.toml.
pub fn sdk_version() -> semver::Version {
    #[derive(serde::Deserialize)]
    struct Manifest {
        package: Package,
    }
    #[derive(serde::Deserialize)]
    struct Package {
        version: semver::Version,
    }
    let text = std::str::from_utf8(file("stackhost-sdk/Cargo.toml")).expect("UTF-8 Cargo.toml");
    toml::from_str::<Manifest>(text)
        .expect("the SDK's Cargo.toml states package.version")
        .package
        .version
}

/// The version of the embedded WIT package (`package stackhost:host@X;`).
pub fn wit_version() -> semver::Version {
    let text = std::str::from_utf8(file("wit/types.wit")).expect("UTF-8 WIT");
    let prefix = format!("package {}@", crate::caps::bindings::WIT_PACKAGE);
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix)?.strip_suffix(';'))
        .and_then(|v| semver::Version::parse(v).ok())
        .expect("wit/types.wit declares the package with its version")
}

/// Write the SDK and the WIT package into `dir` (created when missing).
/// A `dir` with anything in it is refused unless `force`; with `force`,
/// its `stackhost-sdk/` and `wit/` are removed first (a stale `.wit` file
/// would change the package) and everything else is left alone.
pub fn export(dir: &Path, force: bool) -> Result<Exported, ExportError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |e| ExportError::Io(p, e)
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            let empty = std::fs::read_dir(dir).map_err(io(dir))?.next().is_none();
            if !empty && !force {
                return Err(ExportError::NotEmpty(dir.into()));
            }
        }
        Ok(_) => return Err(ExportError::NotADirectory(dir.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        Err(e) => return Err(ExportError::Io(dir.into(), e)),
    }
    for sub in [CRATE_DIR, WIT_DIR] {
        let path = dir.join(sub);
        match std::fs::symlink_metadata(&path) {
            // remove_dir_all removes a symlink itself, never its target.
            Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path).map_err(io(&path))?,
            Ok(_) => std::fs::remove_file(&path).map_err(io(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ExportError::Io(path, e)),
        }
    }
    for f in FILES {
        let path = dir.join(f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&path, f.data).map_err(io(&path))?;
    }
    Ok(Exported {
        crate_dir: dir.join(CRATE_DIR),
        wit_dir: dir.join(WIT_DIR),
        files: FILES.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carries_the_sdk_and_the_wit_the_host_serves() {
        assert_eq!(wit_version(), crate::caps::bindings::WIT_VERSION);
        assert_eq!(sdk_version(), semver::Version::new(0, 2, 0));
        for must in [
            "stackhost-sdk/Cargo.toml",
            "stackhost-sdk/README.md",
            "stackhost-sdk/src/lib.rs",
            "wit/plugin.wit",
            "wit/MANIFEST.md",
        ] {
            assert!(
                FILES.iter().any(|f| f.path == must),
                "{must} is not embedded"
            );
        }
        assert!(FILES.windows(2).all(|w| w[0].path < w[1].path));
    }

    /// The SDK's README states the versions and limits the code has: a
    /// changed constant fails here until the README says so too.
    #[test]
    fn the_sdk_readme_states_the_versions_and_limits_of_the_code() {
        use crate::runtime::limits::CallLimits;
        let readme = std::str::from_utf8(file("stackhost-sdk/README.md")).unwrap();
        let limits = CallLimits::default();
        let thousands = |n: usize| {
            let digits = n.to_string();
            let mut out = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        for row in [
            format!(
                "SDK {}, WIT package `{}@{}`.",
                sdk_version(),
                crate::caps::bindings::WIT_PACKAGE,
                wit_version()
            ),
            format!("| Linear memory | {} MiB per instance", limits.memory >> 20),
            format!("| Guest CPU time | {} s per call", limits.cpu.as_secs()),
            format!(
                "| Wall-clock time | {} h per call",
                limits.wall.as_secs() / 3600
            ),
            format!(
                "| Captured program output | {} MiB per stream",
                crate::cluster::CAPTURE_LIMIT >> 20
            ),
            format!("| `fs.read` | {} MiB", crate::caps::fs::READ_CAP >> 20),
            format!("| `fs.write` | {} MiB", crate::caps::fs::WRITE_CAP >> 20),
            format!(
                "| Step message (and a plan error) | {} KiB",
                crate::run::plan::MAX_STEP_MESSAGE >> 10
            ),
            format!(
                "| Step data | {} MiB of JSON per step",
                crate::run::plan::MAX_DATA >> 20
            ),
            format!(
                "| Step payload | {} MiB",
                crate::run::plan::MAX_PAYLOAD >> 20
            ),
            format!(
                "| Plan | {} steps, and {} MiB",
                thousands(crate::run::plan::MAX_PLAN_STEPS),
                crate::run::plan::MAX_PLAN_BYTES >> 20
            ),
            format!(
                "| Manifest | {} KiB",
                crate::plugin::inspect::MAX_MANIFEST >> 10
            ),
        ] {
            assert!(readme.contains(&row), "sdk/README.md does not say `{row}`");
        }
    }

    #[test]
    fn export_refuses_a_non_empty_dir_and_force_replaces_only_its_own() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
        let e = export(dir.path(), false).unwrap_err();
        assert!(e.to_string().contains("is not empty; pass --force"), "{e}");
        assert!(!dir.path().join(CRATE_DIR).exists());
        // A stale WIT file from an older export must not survive --force.
        std::fs::create_dir(dir.path().join(WIT_DIR)).unwrap();
        std::fs::write(dir.path().join("wit/old.wit"), "stale").unwrap();
        let out = export(dir.path(), true).unwrap();
        assert_eq!(out.files, FILES.len());
        assert!(!dir.path().join("wit/old.wit").exists());
        assert_eq!(
            std::fs::read(dir.path().join("notes.txt")).unwrap(),
            b"mine"
        );
        assert!(out.crate_dir.join("src/lib.rs").is_file());

        let file = dir.path().join("notes.txt");
        let e = export(&file, true).unwrap_err();
        assert!(e.to_string().contains("is not a directory"), "{e}");
    }
}
