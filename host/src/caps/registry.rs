//! The one list of capabilities: [`capabilities!`] names each once, with
//! the interfaces every plugin gets (`always`) and those a plugin must
//! request and be granted (`granted`). Everything else is made from it:
//! [`Capabilities`], the manifest's and the install record's capability
//! sections, one field per granted capability (its own grant type, parsed
//! with `deny_unknown_fields`); [`INTERFACES`], for the import check and
//! the docs; and, in the runtime, the linker of a plugin's grant (see
//! [`crate::caps::ctx::Link`]). Nothing else in the host names them.

use crate::caps::interface::{Granted, Interface, Request, World};
use semver::Version;
use serde::{Deserialize, Serialize};

/// The list. `$m` is a macro that takes it:
/// `always: [Type, ...], granted: [field => Type, ...]`, each `field`
/// being the capability's name (checked at compile time).
macro_rules! capabilities {
    ($m:ident) => {
        $m! {
            always: [
                $crate::caps::types::Types,
                $crate::caps::nodes::Nodes,
                $crate::caps::log::Log,
                $crate::caps::run::Run,
            ],
            granted: [
                exec => $crate::caps::exec::Exec,
                fs => $crate::caps::fs::Fs,
                archive => $crate::caps::archive::Archive,
                postgres => $crate::caps::postgres::Postgres,
                docker => $crate::caps::docker::Docker,
                patches => $crate::caps::patches::Patches,
            ],
        }
    };
}
pub(crate) use capabilities;

/// Where a granted capability's section lives in [`Capabilities`]
/// (written by [`capabilities!`]).
pub trait Slot: Granted {
    fn slot(caps: &Capabilities) -> &Option<Self::Grant>;
    fn slot_mut(caps: &mut Capabilities) -> &mut Option<Self::Grant>;
}

/// An interface as `plugin check`, the import check and the docs list it.
#[derive(Debug, Clone)]
pub struct InterfaceInfo {
    pub name: &'static str,
    pub since: Version,
    /// Whether the plugin needs a grant for it.
    pub granted: bool,
    pub in_patch_world: bool,
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

macro_rules! sections {
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
                same(stringify!($field), <$cap as Interface>::NAME),
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
        pub const INTERFACES: &[InterfaceInfo] = &[
            $(InterfaceInfo {
                name: <$always as Interface>::NAME,
                since: <$always as Interface>::SINCE,
                granted: false,
                in_patch_world: <$always as Interface>::IN_PATCH_WORLD,
            },)*
            $(InterfaceInfo {
                name: <$cap as Interface>::NAME,
                since: <$cap as Interface>::SINCE,
                granted: true,
                in_patch_world: <$cap as Interface>::IN_PATCH_WORLD,
            },)*
        ];

        impl Capabilities {
            /// The requested (or granted) capabilities, by name.
            pub fn names(&self) -> Vec<&'static str> {
                let mut out = Vec::new();
                $(if self.$field.is_some() {
                    out.push(<$cap as Interface>::NAME);
                })*
                out
            }

            /// Only the capabilities named; each must be present here.
            pub fn only(&self, names: &[String]) -> Result<Capabilities, String> {
                let mut out = Capabilities::default();
                for name in names {
                    let missing =
                        || format!("cannot grant `{name}`: the plugin does not request it");
                    match name.as_str() {
                        $(n if n == <$cap as Interface>::NAME => {
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
                    if world == World::Patch && !<$cap as Interface>::IN_PATCH_WORLD {
                        return Err(format!(
                            "patch `{plugin}` requests [capabilities.{}], which the `patch` \
                             world does not import (a vendor patch may use {} only)",
                            <$cap as Interface>::NAME,
                            patch_world_grants().join(" and ")
                        ));
                    }
                    if <$cap as Granted>::reason(g).trim().is_empty() {
                        return Err(format!(
                            "[capabilities.{}] has an empty `reason`; say why the plugin needs it \
                             (the operator reads it before granting)",
                            <$cap as Interface>::NAME
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
                        name: <$cap as Interface>::NAME,
                        line: <$cap as Granted>::describe(g),
                        root_warnings: <$cap as Granted>::root_warnings(g),
                        lines: <$cap as Granted>::prompt(g)
                            .into_iter()
                            .map(|mut l| {
                                l.capability = <$cap as Interface>::NAME;
                                l
                            })
                            .collect(),
                    });
                })*
                out
            }
        }
    };
}

capabilities!(sections);

impl Capabilities {
    /// The section of capability `C`.
    pub fn get<C: Slot>(&self) -> Option<&C::Grant> {
        C::slot(self).as_ref()
    }

    /// The section of capability `C`, to change it.
    pub fn get_mut<C: Slot>(&mut self) -> &mut Option<C::Grant> {
        C::slot_mut(self)
    }

    /// These capabilities and `C` with `grant`.
    pub fn with<C: Slot>(mut self, grant: C::Grant) -> Capabilities {
        *C::slot_mut(&mut self) = Some(grant);
        self
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
pub fn interface(name: &str) -> Option<&'static InterfaceInfo> {
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
