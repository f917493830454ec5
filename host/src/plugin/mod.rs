//! What a plugin is: its manifest (and the checks it passes at install),
//! the inspection of a `.wasm` file with no plugin code running, the grant
//! the operator accepted, signatures and trusted keys, and the store of
//! installed plugins.

pub mod grant;
pub mod inspect;
pub mod manifest;
pub mod prompt;
pub mod signing;
pub mod store;
pub mod vet;
