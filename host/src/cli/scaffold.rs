//! `stackhost plugin new NAME`: a plugin crate that builds as it is.

use anyhow::{Context as _, bail};
use std::path::PathBuf;

pub fn new_plugin(name: &str, dir: Option<PathBuf>, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    if !crate::manifest::is_valid_name(name) {
        bail!(
            "plugin name `{name}` must be lower-case letters, digits and `-`, starting with a letter"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if dir.exists() {
        bail!("{} already exists; pick another --dir", dir.display());
    }
    let sdk = match sdk {
        Some(p) => p,
        None => {
            let built_with = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../sdk"));
            if !built_with.join("Cargo.toml").exists() {
                bail!(
                    "cannot find the stackhost-sdk crate; pass --sdk PATH (the sdk/ directory of the stackhost repository)"
                );
            }
            built_with
        }
    };
    let sdk = sdk
        .canonicalize()
        .with_context(|| format!("cannot find the SDK at {}", sdk.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::create_dir_all(dir.join(".cargo"))?;
    let files = [
        (
            "Cargo.toml",
            format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n\
                 [dependencies]\nstackhost-sdk = {{ path = \"{}\" }}\n\n[profile.release]\nopt-level = \"s\"\nlto = true\n\n\
                 [workspace]\n",
                sdk.display()
            ),
        ),
        (".cargo/config.toml", "[build]\ntarget = \"wasm32-wasip2\"\n".to_string()),
        (
            "stackhost.toml",
            format!(
                "name = \"{name}\"\nversion = \"0.1.0\"\nwit = \"0.1.0\"\ndescription = \"Report each node's uptime\"\n\n\
                 [[command]]\nname = \"uptime\"\nabout = \"Show how long each node has been up\"\n\n\
                 [capabilities.exec]\nreason = \"runs uptime to read the load\"\nread-only = [\"uptime\"]\n"
            ),
        ),
        (
            "src/lib.rs",
            "//! A stackhost plugin: `stackhost run NAME uptime`.\n\n\
             use stackhost_sdk::prelude::*;\n\n\
             struct Uptime;\n\n\
             impl Plugin for Uptime {\n    \
             fn plan(_inv: &Invocation) -> Result<Plan> {\n        \
             let mut phase = Phase::new(\"uptime\");\n        \
             for node in nodes::all() {\n            phase = phase.step(&node, \"uptime\", \"\");\n        }\n        \
             Ok(Plan::new().phase(phase))\n    }\n\n    \
             fn apply(_inv: &Invocation, step: &Step) -> Result<Outcome> {\n        \
             let out = step.node().run(Command::new(\"uptime\"))?;\n        \
             Ok(Outcome::ok(out.stdout_str().trim()))\n    }\n}\n\n\
             export_plugin!(Uptime);\n"
                .to_string(),
        ),
    ];
    for (path, text) in files {
        std::fs::write(dir.join(path), text).with_context(|| format!("writing {path}"))?;
    }
    let wasm = name.replace('-', "_");
    println!("created {}", dir.display());
    println!("build:   cd {} && cargo build --release", dir.display());
    println!("install: stackhost plugin install target/wasm32-wasip2/release/{wasm}.wasm");
    Ok(())
}
