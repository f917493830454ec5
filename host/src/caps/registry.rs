//! The one list of capabilities. Each capability declares, in its own
//! folder, everything the rest of the host asks of it (the [`Capability`]
//! and [`Granted`] traits): its WIT interface and the version that added
//! it, the world that imports it, its manifest section (its own grant
//! type, parsed with `deny_unknown_fields`), the checks that section
//! passes at install, the line it adds to the install prompt and `plugin
//! info`, why it may amount to root on a node, and its linker function.
//! The [`registry!`] invocation below names each capability once; nothing
//! else in the host does.

use crate::caps::ctx::CapsView;
use crate::caps::{archive, docker, exec, fs, log, nodes, patches, postgres, run, types};
use semver::Version;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wasmtime::component::Linker;

/// The WIT worlds a component can implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// A maintenance plugin (world `plugin`).
    Plugin,
    /// A vendor patch (world `patch`), driven by the `patches` capability.
    Patch,
}

/// One interface of the `stackhost:host` WIT package that this host
/// provides.
pub trait Capability: 'static {
    /// The interface's name in the WIT package (`exec`); for a granted
    /// capability also its manifest section, `[capabilities.exec]`.
    const NAME: &'static str;
    /// The first version of the WIT package with this interface.
    const SINCE: Version;
    /// Whether world `patch` imports it (every interface is in `plugin`).
    const IN_PATCH_WORLD: bool;
    /// Add the interface's host functions to `linker`.
    fn add_to_linker<T: CapsView>(linker: &mut Linker<T>) -> anyhow::Result<()>;
}

/// A capability a plugin must request in its manifest and the operator
/// must grant; without a grant it is not linked at all.
pub trait Granted: Capability {
    /// The manifest section, as requested and as granted.
    type Grant: Serialize + DeserializeOwned + Clone + std::fmt::Debug + PartialEq + Send + Sync;
    /// Checks the section must pass at install (beyond its syntax).
    fn validate(grant: &Self::Grant) -> Result<(), String>;
    /// What the grant lets the plugin do, on one line for the install
    /// prompt and `plugin info`, every text from the manifest escaped.
    fn describe(grant: &Self::Grant) -> String;
    /// Each part of the grant that amounts to root on the node, said as a
    /// warning the operator reads before granting (escaped).
    fn root_warnings(_grant: &Self::Grant) -> Vec<String> {
        Vec::new()
    }
}

/// Where a granted capability's section lives in [`Capabilities`]
/// (written by [`registry!`]).
pub trait Slot: Granted {
    fn slot(caps: &Capabilities) -> &Option<Self::Grant>;
    fn slot_mut(caps: &mut Capabilities) -> &mut Option<Self::Grant>;
}

/// An interface as `plugin check`, the import check and the docs list it.
#[derive(Debug, Clone)]
pub struct Interface {
    pub name: &'static str,
    pub since: Version,
    /// Whether the plugin needs a grant for it.
    pub granted: bool,
    pub in_patch_world: bool,
}

/// A requested capability as the operator is shown it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub name: &'static str,
    /// What it lets the plugin do, and why (the manifest's reason).
    pub line: String,
    /// Parts of it that amount to root on a node.
    pub root_warnings: Vec<String>,
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

macro_rules! registry {
    (
        always: [$($always:ty),* $(,)?],
        granted: [$($field:ident => $cap:ty),* $(,)?] $(,)?
    ) => {
        /// The capability sections of a manifest (what a plugin requests)
        /// or of an install record (what the operator granted), one field
        /// per granted capability.
        #[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct Capabilities {
            $($field: Option<<$cap as Granted>::Grant>,)*
        }

        $(
            const _: () = assert!(
                same(stringify!($field), <$cap as Capability>::NAME),
                "a registry field must be named as its capability"
            );
            impl Slot for $cap {
                fn slot(caps: &Capabilities) -> &Option<Self::Grant> {
                    &caps.$field
                }
                fn slot_mut(caps: &mut Capabilities) -> &mut Option<Self::Grant> {
                    &mut caps.$field
                }
            }
        )*

        /// Every interface this host provides, in the order the docs and
        /// prompts list them.
        pub const INTERFACES: &[Interface] = &[
            $(Interface {
                name: <$always as Capability>::NAME,
                since: <$always as Capability>::SINCE,
                granted: false,
                in_patch_world: <$always as Capability>::IN_PATCH_WORLD,
            },)*
            $(Interface {
                name: <$cap as Capability>::NAME,
                since: <$cap as Capability>::SINCE,
                granted: true,
                in_patch_world: <$cap as Capability>::IN_PATCH_WORLD,
            },)*
        ];

        impl Capabilities {
            /// The requested (or granted) capabilities, by name.
            pub fn names(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$field.is_some() {
                    out.push(<$cap as Capability>::NAME);
                })*
                out
            }

            /// Only the capabilities named; each must be present here.
            pub fn only(&self, names: &[String]) -> Result<Capabilities, String> {
                let mut out = Capabilities::default();
                for name in names {
                    let missing = || format!("cannot grant `{name}`: the plugin does not request it");
                    match name.as_str() {
                        $(n if n == <$cap as Capability>::NAME => {
                            out.$field = Some(self.$field.clone().ok_or_else(missing)?);
                        })*
                        other => {
                            return Err(format!(
                                "unknown capability `{other}` (known: {})",
                                grantable().join(", ")
                            ))
                        }
                    }
                }
                Ok(out)
            }

            /// Each section's own checks, and whether `world` imports it.
            pub fn validate(&self, plugin: &str, world: World) -> Result<(), String> {
                $(if let Some(g) = &self.$field {
                    if world == World::Patch && !<$cap as Capability>::IN_PATCH_WORLD {
                        return Err(format!(
                            "patch `{plugin}` requests [capabilities.{}], which the `patch` \
                             world does not import (a vendor patch may use {} only)",
                            <$cap as Capability>::NAME,
                            patch_world_grants().join(" and ")
                        ));
                    }
                    <$cap as Granted>::validate(g)?;
                })*
                Ok(())
            }

            /// What each section lets the plugin do, for the operator.
            pub fn requests(&self) -> Vec<Request> {
                let mut out = Vec::new();
                $(if let Some(g) = &self.$field {
                    out.push(Request {
                        name: <$cap as Capability>::NAME,
                        line: <$cap as Granted>::describe(g),
                        root_warnings: <$cap as Granted>::root_warnings(g),
                    });
                })*
                out
            }

            /// Link the interfaces every plugin gets and those granted here.
            pub fn link<T: CapsView>(&self, linker: &mut Linker<T>) -> anyhow::Result<()> {
                $(<$always as Capability>::add_to_linker(linker)?;)*
                $(if self.$field.is_some() {
                    <$cap as Capability>::add_to_linker(linker)?;
                })*
                Ok(())
            }
        }
    };
}

registry! {
    always: [types::Types, nodes::Nodes, log::Log, run::Run],
    granted: [
        exec => exec::Exec,
        fs => fs::Fs,
        archive => archive::Archive,
        postgres => postgres::Postgres,
        docker => docker::Docker,
        patches => patches::Patches,
    ],
}

impl Capabilities {
    /// The section of capability `C`.
    pub fn get<C: Slot>(&self) -> Option<&C::Grant> {
        C::slot(self).as_ref()
    }

    /// These capabilities and `C` with `grant`.
    pub fn with<C: Slot>(mut self, grant: C::Grant) -> Capabilities {
        *C::slot_mut(&mut self) = Some(grant);
        self
    }

    /// The section of capability `C`, to change it.
    pub fn get_mut<C: Slot>(&mut self) -> &mut Option<C::Grant> {
        C::slot_mut(self)
    }

    /// Whether interface `name` is linked for a plugin with these
    /// grants: those every plugin gets, and the granted ones.
    pub fn has(&self, name: &str) -> bool {
        match interface(name) {
            Some(i) if !i.granted => true,
            Some(_) => self.names().contains(&name),
            None => false,
        }
    }
}

/// The interface called `name`.
pub fn interface(name: &str) -> Option<&'static Interface> {
    INTERFACES.iter().find(|i| i.name == name)
}

/// The capabilities a manifest can request, by name.
pub fn grantable() -> Vec<&'static str> {
    INTERFACES
        .iter()
        .filter(|i| i.granted)
        .map(|i| i.name)
        .collect()
}

/// The granted capabilities a vendor patch may request.
fn patch_world_grants() -> Vec<&'static str> {
    INTERFACES
        .iter()
        .filter(|i| i.granted && i.in_patch_world)
        .map(|i| i.name)
        .collect()
}

/// Items from a manifest, escaped, comma-separated (`none` for none).
pub fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items
            .iter()
            .map(|i| crate::text::escape_line(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// ` on roles a, b` for a section limited to roles, else nothing.
pub fn on_roles(roles: &[String]) -> String {
    if roles.is_empty() {
        String::new()
    } else {
        format!(" on roles {}", list(roles))
    }
}

/// A grant's path: absolute, with no `..`.
pub fn check_scope_path(capability: &str, path: &str) -> Result<(), String> {
    let p = std::path::Path::new(path);
    if !p.is_absolute()
        || p.components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(format!(
            "{capability} path `{path}` must be absolute and contain no `..`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_grants_come_from_the_one_list() {
        assert_eq!(
            grantable(),
            ["exec", "fs", "archive", "postgres", "docker", "patches"]
        );
        let none = Capabilities::default();
        assert!(none.has("log") && none.has("run") && !none.has("exec") && !none.has("net"));
        let err = none.only(&["fs".into()]).unwrap_err();
        assert!(err.contains("does not request it"), "{err}");
        let err = none.only(&["net".into()]).unwrap_err();
        assert!(
            err.contains(
                "unknown capability `net` (known: exec, fs, archive, postgres, docker, patches)"
            ),
            "{err}"
        );
        assert_eq!(interface("run").unwrap().since, Version::new(0, 1, 1));
    }
}
