//! `stackhost plugin new NAME`: a plugin crate that builds as it is, with
//! nothing but this binary. By default the crate gets its own copy of the
//! embedded SDK (`NAME/.stackhost-sdk/`, as `stackhost sdk export` writes
//! it) and depends on it by a relative path, so it never points into a
//! stackhost checkout and can be moved or committed whole.

use super::sdk::embedded as sdk;
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

/// Where the crate's copy of the SDK goes, relative to the crate.
pub const SDK_COPY: &str = ".stackhost-sdk";

/// The stackhost-sdk a new crate depends on.
enum SdkSource {
    /// A copy of the embedded SDK, exported into the new crate.
    Embedded,
    /// An SDK crate already on disk (`--sdk`), absolute.
    At(PathBuf),
}

pub fn new_plugin(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    if !crate::plugin::manifest::is_valid_name(name) {
        bail!(
            "plugin name `{name}` must be lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!("{} already exists; pick another --dir", dir.display());
    }
    let source = match sdk {
        None => SdkSource::Embedded,
        Some(path) => SdkSource::At(find_sdk(&path)?),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    // Leave nothing half-made behind: the directory is ours.
    if let Err(e) = write_crate(name, &dir, &source) {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    let wasm = name.replace('-', "_");
    match &source {
        SdkSource::Embedded => println!(
            "created {} with stackhost-sdk {} ({}@{}) in {}",
            dir.display(),
            sdk::sdk_version(),
            crate::caps::bindings::WIT_PACKAGE,
            sdk::wit_version(),
            dir.join(SDK_COPY).display()
        ),
        SdkSource::At(path) => println!(
            "created {} using the SDK at {}",
            dir.display(),
            path.display()
        ),
    }
    println!("build:   cd {} && cargo build --release", dir.display());
    println!("install: stackhost plugin install target/wasm32-wasip2/release/{wasm}.wasm");
    println!("run:     stackhost run {name} uptime");
    Ok(())
}

/// The SDK crate at `path`: the crate's own directory, or a directory
/// `stackhost sdk export` wrote (holding `stackhost-sdk/`).
fn find_sdk(path: &Path) -> anyhow::Result<PathBuf> {
    let krate = if path.join("Cargo.toml").is_file() {
        path.to_path_buf()
    } else if path.join(sdk::CRATE_DIR).join("Cargo.toml").is_file() {
        path.join(sdk::CRATE_DIR)
    } else {
        bail!(
            "no stackhost-sdk crate at {} (neither {0}/Cargo.toml nor {0}/{} exists); \
             write one with `stackhost sdk export DIR` and pass --sdk DIR, or leave out --sdk",
            path.display(),
            Path::new(sdk::CRATE_DIR).join("Cargo.toml").display()
        );
    };
    let manifest = krate.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let name = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| Some(t.get("package")?.get("name")?.as_str()?.to_owned()));
    if name.as_deref() != Some("stackhost-sdk") {
        bail!(
            "{} is not the stackhost-sdk crate's manifest (its package is {})",
            manifest.display(),
            name.map_or("not named".into(), |n| format!("`{n}`"))
        );
    }
    // The SDK generates its bindings from `../wit` (sdk/src/lib.rs).
    if !krate.join("../wit").is_dir() {
        bail!(
            "the SDK at {} has no WIT package beside it ({} is missing), so it cannot build; \
             `stackhost sdk export DIR` writes both",
            krate.display(),
            krate.join("../wit").display()
        );
    }
    krate
        .canonicalize()
        .with_context(|| format!("cannot find the SDK at {}", krate.display()))
}

/// Write the crate's files (and the SDK copy) into the new `dir`.
// Long because it is the new crate's files written one after the other,
// mostly their contents.
fn write_crate(name: &str, dir: &Path, source: &SdkSource) -> anyhow::Result<()> {
    let dependency = match source {
        SdkSource::Embedded => {
            sdk::export(&dir.join(SDK_COPY), false)
                .context("while copying the SDK into the new crate")?;
            format!(
                "# The SDK stackhost carries, copied here by `stackhost plugin new`\n\
                 # (stackhost-sdk {sdk_version}, {package}@{wit}). Commit it with the\n\
                 # plugin; after upgrading stackhost refresh it with\n\
                 #   stackhost sdk export --force {SDK_COPY}\n\
                 stackhost-sdk = {{ path = \"{SDK_COPY}/{krate}\", version = \"{sdk_version}\" }}\n",
                sdk_version = sdk::sdk_version(),
                package = crate::caps::bindings::WIT_PACKAGE,
                wit = sdk::wit_version(),
                krate = sdk::CRATE_DIR,
            )
        }
        SdkSource::At(path) => {
            let path = path
                .to_str()
                .with_context(|| format!("the SDK path {} is not UTF-8", path.display()))?;
            format!(
                "# The SDK given to `stackhost plugin new --sdk`.\n\
                 stackhost-sdk = {{ path = {} }}\n",
                toml::Value::from(path)
            )
        }
    };
    let wasm = name.replace('-', "_");
    let (sdk_readme, manifest_doc) = match source {
        SdkSource::Embedded => (
            format!("{SDK_COPY}/{}/README.md", sdk::CRATE_DIR),
            format!("{SDK_COPY}/{}/MANIFEST.md", sdk::WIT_DIR),
        ),
        SdkSource::At(_) => (
            "The SDK's README.md".into(),
            "the MANIFEST.md in the wit/ beside the SDK".into(),
        ),
    };
    let files = [
        (
            "Cargo.toml",
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
                 [lib]\ncrate-type = [\"cdylib\"]\n\n\
                 [dependencies]\n{dependency}\n\
                 [profile.release]\nopt-level = \"s\"\nlto = true\n\n\
                 # A crate of its own, outside any workspace around it; the SDK\n\
                 # copy is a dependency, not a member.\n\
                 [workspace]\nexclude = [\"{SDK_COPY}\"]\n"
            ),
        ),
        (
            ".cargo/config.toml",
            "[build]\ntarget = \"wasm32-wasip2\"\n\n\
             # `cargo test` runs the tests, built for wasm32-wasip2, in stackhost's\n\
             # own wasmtime (the `stackhost` on your PATH).\n\
             [target.wasm32-wasip2]\nrunner = [\"stackhost\", \"sdk\", \"test-runner\"]\n"
                .to_string(),
        ),
        (".gitignore", "/target\n".to_string()),
        (
            "build.rs",
            "//! Checks stackhost.toml as `stackhost plugin install` will, so that\n\
             //! `cargo build` fails on a manifest install would refuse (with the\n\
             //! messages `stackhost plugin check` prints). Uses the `stackhost` on\n\
             //! PATH; without one it warns and builds.\n\n\
             fn main() {\n    \
             println!(\"cargo::rerun-if-changed=stackhost.toml\");\n    \
             let checked = std::process::Command::new(\"stackhost\")\n        \
             .args([\"plugin\", \"check\", \"stackhost.toml\"])\n        \
             .output();\n    \
             match checked {\n        \
             Ok(out) if out.status.success() => {}\n        \
             Ok(out) => {\n            \
             eprint!(\"{}\", String::from_utf8_lossy(&out.stdout));\n            \
             eprint!(\"{}\", String::from_utf8_lossy(&out.stderr));\n            \
             std::process::exit(1);\n        }\n        \
             Err(e) => println!(\"cargo::warning=stackhost.toml was not checked: cannot run stackhost ({e})\"),\n    \
             }\n}\n"
                .to_string(),
        ),
        (
            "stackhost.toml",
            format!(
                "# The plugin's manifest, embedded in the .wasm by export_plugin!\n\
                 # (format: {manifest_doc}).\n\
                 name = \"{name}\"\nversion = \"0.1.0\"\nwit = \"{wit}\"\ndescription = \"Report each node's uptime\"\n\n\
                 [[command]]\nname = \"uptime\"\nabout = \"Show how long each node has been up\"\n\n\
                 [capabilities.exec]\nreason = \"runs uptime to read the load\"\n\n\
                 # One command, argument for argument (holes: {{path:read}}, {{word}}, ...).\n\
                 [[capabilities.exec.run]]\nargv = [\"uptime\"]\nread-only = true\n",
                wit = sdk::wit_version(),
            ),
        ),
        (
            "src/lib.rs",
            format!(
                "//! `{name}`: a stackhost plugin with one command, `uptime`, which runs\n\
                 //! `uptime` on every selected node and reports what it printed.\n\
                 //!\n\
                 //! ```sh\n\
                 //! cargo test                # unit tests, in stackhost's wasmtime\n\
                 //! cargo build --release\n\
                 //! stackhost plugin install target/wasm32-wasip2/release/{wasm}.wasm\n\
                 //! stackhost run {name} uptime\n\
                 //! ```\n\
                 //!\n\
                 //! {sdk_readme} covers the manifest, signing,\n\
                 //! reinstalling after a rebuild, and the limits.\n\n\
                 use stackhost_sdk::prelude::*;\n\n\
                 struct Uptime;\n\n\
                 impl Plugin for Uptime {{\n    \
                 /// One step per selected node. `plan` may only read.\n    \
                 fn plan(_inv: &Invocation) -> Result<Plan> {{\n        \
                 let mut phase = Phase::new(\"uptime\");\n        \
                 for node in nodes::all() {{\n            phase = phase.step(&node, \"uptime\", \"\");\n        }}\n        \
                 Ok(Plan::new().phase(phase))\n    }}\n\n    \
                 /// Runs in a fresh instance for each step.\n    \
                 fn apply(_inv: &Invocation, step: &Step) -> Result<Outcome> {{\n        \
                 // `check` makes a failed program (non-zero status, killed by a\n        \
                 // signal) the step's error, with the end of its stderr.\n        \
                 let out = step.node().run(Command::new(\"uptime\"))?.check()?;\n        \
                 Ok(Outcome::ok(load_average(&out.stdout_str())))\n    }}\n}}\n\n\
                 /// The `load average: ...` part of what uptime printed (the whole line\n\
                 /// when it has none). Logic like this is what `cargo test` tests: the\n\
                 /// tests run in stackhost's wasmtime, where calls to the host trap.\n\
                 fn load_average(uptime: &str) -> &str {{\n    \
                 let line = uptime.trim();\n    \
                 line.find(\"load average\").map_or(line, |i| &line[i..])\n}}\n\n\
                 export_plugin!(Uptime);\n\n\
                 #[cfg(test)]\n\
                 mod tests {{\n    \
                 use super::*;\n\n    \
                 #[test]\n    \
                 fn the_load_average_is_picked_out_of_uptimes_line() {{\n        \
                 let line = \" 10:00:01 up 3 days,  2:04,  1 user,  load average: 0.10, 0.20, 0.30\\n\";\n        \
                 assert_eq!(load_average(line), \"load average: 0.10, 0.20, 0.30\");\n        \
                 assert_eq!(load_average(\"odd\"), \"odd\");\n    }}\n}}\n"
            ),
        ),
    ];
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
