//! Where stackhost keeps its files: XDG directories, or all of them under
//! `STACKHOST_HOME` when that is set (tests and self-contained installs).

use std::path::PathBuf;

/// The three directories stackhost writes to.
#[derive(Debug, Clone)]
pub struct Paths {
    /// Configuration: inventory, trusted keys (`~/.config/stackhost`).
    pub config: PathBuf,
    /// Installed plugins and their grants (`~/.local/share/stackhost`).
    pub data: PathBuf,
    /// Compiled components; safe to delete (`~/.cache/stackhost`).
    pub cache: PathBuf,
}

impl Paths {
    /// Resolve from the environment: `STACKHOST_HOME`, else the XDG
    /// variables, else their defaults under `$HOME`.
    pub fn from_env() -> Paths {
        if let Some(home) = std::env::var_os("STACKHOST_HOME").filter(|v| !v.is_empty()) {
            return Paths::under(PathBuf::from(home));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/root"));
        let xdg = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| home.join(default))
                .join("stackhost")
        };
        Paths {
            config: xdg("XDG_CONFIG_HOME", ".config"),
            data: xdg("XDG_DATA_HOME", ".local/share"),
            cache: xdg("XDG_CACHE_HOME", ".cache"),
        }
    }

    /// Everything under one directory.
    pub fn under(root: PathBuf) -> Paths {
        Paths {
            config: root.join("config"),
            data: root.join("data"),
            cache: root.join("cache"),
        }
    }

    /// Directory holding installed plugins.
    pub fn plugins(&self) -> PathBuf {
        self.data.join("plugins")
    }

    /// Directory holding compiled components.
    pub fn compiled(&self) -> PathBuf {
        self.cache.join("compiled")
    }
}
