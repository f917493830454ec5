//! What one plugin call's store holds: an empty WASI context, the
//! resource table, the memory limiter, and the call context every
//! capability sees (through [`CapsView`]).

use super::limits::MemoryLimiter;
use crate::caps::ctx::{CallCtx, CapsCtxView, CapsView};
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// The data of one plugin store.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub call: Arc<CallCtx>,
    /// What the plugin wrote to stdout and stderr (panic messages land here).
    pub output: MemoryOutputPipe,
}

/// Most bytes of a plugin's own stdout/stderr kept for error reports.
const PLUGIN_OUTPUT_LIMIT: usize = 64 << 10;

impl PluginState {
    pub fn new(call: Arc<CallCtx>, memory_limit: usize) -> PluginState {
        let output = MemoryOutputPipe::new(PLUGIN_OUTPUT_LIMIT);
        // Deny by default: no preopened directories, no environment, no
        // arguments, no network. Clocks and random remain.
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PluginState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_limit),
            call,
            output,
        }
    }
}

impl CapsView for PluginState {
    fn caps(&mut self) -> CapsCtxView<'_> {
        CapsCtxView {
            call: &self.call,
            table: &mut self.table,
        }
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
