//! The plugin store: installed plugin files and their grants, several
//! versions side by side, under `<data>/plugins/NAME/VERSION/`. A grant is
//! bound to the file's content digest; a file that changed since it was
//! granted is refused.

use crate::plugin::grant::Grant;
use crate::plugin::manifest::{Kind, Manifest};
use crate::plugin::signing::{SignError, Signer, TrustedKeys};
use semver::{Version, VersionReq};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What was recorded when a plugin was installed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRecord {
    /// Lower-case hex sha256 of the `.wasm` file.
    pub digest: String,
    pub manifest: Manifest,
    pub grant: Grant,
    /// Interfaces the component imports.
    pub imports: Vec<String>,
    /// Seconds since the Unix epoch.
    pub installed_at: u64,
    /// The file it was installed from.
    pub source: String,
    /// Who signed it, when it came with a `.minisig` that verified against
    /// a trusted key. The signature is kept beside the file and checked
    /// again before every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<Signer>,
}

/// An installed plugin version.
#[derive(Debug, Clone)]
pub struct Installed {
    pub record: InstallRecord,
    pub dir: PathBuf,
}

impl Installed {
    pub fn name(&self) -> &str {
        &self.record.manifest.name
    }
    pub fn version(&self) -> &Version {
        &self.record.manifest.version
    }
    pub fn wasm_path(&self) -> PathBuf {
        self.dir.join("plugin.wasm")
    }
    pub fn signature_path(&self) -> PathBuf {
        self.dir.join("plugin.wasm.minisig")
    }
    pub fn kind(&self) -> Kind {
        self.record.manifest.kind
    }
}

/// The installed name nearest to a mistyped one, if one is near enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion(pub Option<String>);

impl Suggestion {
    /// The name among `names` at the smallest edit distance from `typed`,
    /// when that distance is at most a third of its length (and 1 at
    /// least), as clap suggests flags.
    pub fn nearest<'a>(typed: &str, names: impl Iterator<Item = &'a str>) -> Suggestion {
        let limit = (typed.chars().count() / 3).max(1);
        Suggestion(
            names
                .map(|n| (edit_distance(typed, n), n))
                .filter(|(d, _)| *d <= limit)
                .min()
                .map(|(_, n)| n.to_string()),
        )
    }
}

impl std::fmt::Display for Suggestion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(n) => write!(f, "; did you mean `{n}`?"),
            None => Ok(()),
        }
    }
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Store errors the operator can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no plugin named `{0}` is installed{1} (see `stackhost plugin list`)")]
    NotInstalled(String, Suggestion),
    #[error("plugin `{name}` has no installed version matching `{req}` (installed: {installed})")]
    NoMatch {
        name: String,
        req: VersionReq,
        installed: String,
    },
    #[error(
        "plugin {name} {version} is already installed with different content \
         (digest {old}); pass --replace to replace it"
    )]
    DifferentContent {
        name: String,
        version: Version,
        old: String,
    },
    #[error(
        "the installed file of plugin {name} {version} has changed since it was granted \
         (expected sha256 {expected}, found {found}); reinstall it"
    )]
    Tampered {
        name: String,
        version: Version,
        expected: String,
        found: String,
    },
    #[error("the signature of {kind} {name} {version} no longer verifies: {source}")]
    Signature {
        kind: &'static str,
        name: String,
        version: Version,
        source: SignError,
    },
    #[error(
        "`{0}` is not a valid version requirement (try `hello`, `hello@1.2`, `hello@^1`, `hello@=1.2.3`)"
    )]
    BadRequirement(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("the install record {path} is unreadable: {message}")]
    BadRecord { path: PathBuf, message: String },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StoreError {
    let context = context.into();
    move |source| StoreError::Io { context, source }
}

/// Hex sha256 of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Split `NAME[@REQ]`.
pub fn parse_spec(spec: &str) -> Result<(&str, Option<VersionReq>), StoreError> {
    match spec.split_once('@') {
        None => Ok((spec, None)),
        Some((name, req)) => {
            let req =
                VersionReq::parse(req).map_err(|_| StoreError::BadRequirement(spec.into()))?;
            Ok((name, Some(req)))
        }
    }
}

/// The store on disk.
pub struct PluginStore {
    dir: PathBuf,
}

impl PluginStore {
    pub fn new(dir: &Path) -> PluginStore {
        PluginStore {
            dir: dir.to_path_buf(),
        }
    }

    /// Every installed version, sorted by name then version.
    pub fn list(&self) -> Result<Vec<Installed>, StoreError> {
        let mut all = Vec::new();
        let names = match std::fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(all),
            Err(e) => return Err(io(format!("reading {}", self.dir.display()))(e)),
        };
        for name in names {
            let name = name.map_err(io("listing plugins"))?.path();
            if !name.is_dir() {
                continue;
            }
            for version in
                std::fs::read_dir(&name).map_err(io(format!("reading {}", name.display())))?
            {
                let dir = version.map_err(io("listing versions"))?.path();
                let record_path = dir.join("install.json");
                if !record_path.exists() {
                    continue; // an install interrupted before its record landed
                }
                let text = std::fs::read(&record_path)
                    .map_err(io(format!("reading {}", record_path.display())))?;
                let record: InstallRecord =
                    serde_json::from_slice(&text).map_err(|e| StoreError::BadRecord {
                        path: record_path.clone(),
                        message: e.to_string(),
                    })?;
                all.push(Installed { record, dir });
            }
        }
        all.sort_by(|a, b| (a.name(), a.version()).cmp(&(b.name(), b.version())));
        Ok(all)
    }

    /// The highest installed version of `name` matching `req`.
    pub fn resolve(&self, name: &str, req: Option<&VersionReq>) -> Result<Installed, StoreError> {
        let versions: Vec<Installed> = self
            .list()?
            .into_iter()
            .filter(|p| p.name() == name)
            .collect();
        if versions.is_empty() {
            return Err(StoreError::NotInstalled(
                name.into(),
                Suggestion::nearest(name, self.list()?.iter().map(|p| p.name())),
            ));
        }
        let installed = versions
            .iter()
            .map(|p| p.version().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        versions
            .into_iter()
            .filter(|p| req.is_none_or(|r| r.matches(p.version())))
            .max_by(|a, b| a.version().cmp(b.version()))
            .ok_or_else(|| StoreError::NoMatch {
                name: name.into(),
                req: req.cloned().unwrap_or_default(),
                installed,
            })
    }

    /// Install `wasm` with its record (and its verified signature text).
    /// Installing the same content again only updates the grant.
    pub fn install(
        &self,
        wasm: &[u8],
        signature: Option<&str>,
        record: InstallRecord,
        replace: bool,
    ) -> Result<Installed, StoreError> {
        let m = &record.manifest;
        let dir = self.dir.join(&m.name).join(m.version.to_string());
        if let Ok(existing) = self.resolve(
            &m.name,
            Some(&VersionReq::parse(&format!("={}", m.version)).expect("exact")),
        ) && existing.record.digest != record.digest
            && !replace
        {
            return Err(StoreError::DifferentContent {
                name: m.name.clone(),
                version: m.version.clone(),
                old: existing.record.digest,
            });
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        write_atomic(&dir.join("plugin.wasm"), wasm)?;
        let sig_path = dir.join("plugin.wasm.minisig");
        match signature {
            Some(text) => write_atomic(&sig_path, text.as_bytes())?,
            None => match std::fs::remove_file(&sig_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io(format!("removing {}", sig_path.display()))(e));
                }
                _ => {}
            },
        }
        let json = serde_json::to_vec_pretty(&record).expect("records serialise");
        write_atomic(&dir.join("install.json"), &json)?;
        Ok(Installed { record, dir })
    }

    /// Remove the versions of `name` matching `req` (all when none).
    pub fn remove(
        &self,
        name: &str,
        req: Option<&VersionReq>,
    ) -> Result<Vec<Installed>, StoreError> {
        let matching: Vec<Installed> = self
            .list()?
            .into_iter()
            .filter(|p| p.name() == name && req.is_none_or(|r| r.matches(p.version())))
            .collect();
        if matching.is_empty() {
            return Err(match req {
                None => StoreError::NotInstalled(name.into(), Suggestion(None)),
                Some(r) => StoreError::NoMatch {
                    name: name.into(),
                    req: r.clone(),
                    installed: "see plugin list".into(),
                },
            });
        }
        for p in &matching {
            std::fs::remove_dir_all(&p.dir).map_err(io(format!("removing {}", p.dir.display())))?;
        }
        let _ = std::fs::remove_dir(self.dir.join(name)); // only if now empty
        Ok(matching)
    }

    /// Read the installed file and check it still has the granted digest
    /// and, when it was installed signed, that its signature still
    /// verifies against a key the operator trusts; returns its bytes.
    pub fn verified_bytes(&self, p: &Installed, keys: &TrustedKeys) -> Result<Vec<u8>, StoreError> {
        let path = p.wasm_path();
        let bytes = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
        let found = digest(&bytes);
        if found != p.record.digest {
            return Err(StoreError::Tampered {
                name: p.name().into(),
                version: p.version().clone(),
                expected: p.record.digest.clone(),
                found,
            });
        }
        if p.record.signer.is_some() {
            let sig_path = p.signature_path();
            let failed = |source| StoreError::Signature {
                kind: p.kind().as_str(),
                name: p.name().into(),
                version: p.version().clone(),
                source,
            };
            let text = std::fs::read_to_string(&sig_path)
                .map_err(|e| failed(SignError::Io(format!("{}: {e}", sig_path.display()))))?;
            keys.verify(&bytes, &text).map_err(failed)?;
        }
        Ok(bytes)
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io(format!("writing {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_gets_the_nearest_installed_name() {
        let names = ["backup", "hello", "ssh-keys", "patch"];
        let near = |t: &str| Suggestion::nearest(t, names.iter().copied()).0;
        assert_eq!(near("bakcup").as_deref(), Some("backup"));
        assert_eq!(near("helo").as_deref(), Some("hello"));
        assert_eq!(near("sshkeys").as_deref(), Some("ssh-keys"));
        assert_eq!(near("nagios"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn parses_specs() {
        assert_eq!(parse_spec("hello").unwrap().0, "hello");
        let (n, r) = parse_spec("multi@^1").unwrap();
        assert_eq!((n, r.unwrap().to_string()), ("multi", "^1".to_string()));
        assert!(matches!(
            parse_spec("multi@banana"),
            Err(StoreError::BadRequirement(_))
        ));
    }
}
