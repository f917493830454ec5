//! `stackhost:host/postgres`: PostgreSQL on nodes through the node's own
//! tools, run as the `postgres` user: `psql` for listings and read-only
//! queries, `pg_dump` streamed into an artifact, `pg_restore` (or `psql`
//! for plain SQL) fed from one. Databases must lie within the postgres
//! grant; dumps and restores stream, the plugin sees names and counts.

mod host;

use crate::caps::archive::ResView;
use crate::runtime::PluginState;
use wasmtime::component::{HasData, Linker};

/// Marker for the `postgres` interface.
pub struct Postgres;

impl HasData for Postgres {
    type Data<'a> = ResView<'a>;
}

pub fn add_to_linker(linker: &mut Linker<PluginState>) -> anyhow::Result<()> {
    crate::bindings::stackhost::host::postgres::add_to_linker::<PluginState, Postgres>(
        linker,
        |s| s.res_view(),
    )
    .map_err(anyhow::Error::from)
}
