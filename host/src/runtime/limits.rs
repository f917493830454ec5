//! Per-call limits: linear memory, guest CPU time (epochs), wall-clock
//! time. Each failure is a typed error the host reports and survives.

use std::time::Duration;

/// Limits applied to every plugin call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// Most linear memory an instance may grow to.
    pub memory: usize,
    /// Most time the guest itself may compute (time in host calls, such as a
    /// running program, does not count).
    pub cpu: Duration,
    /// Most time one call may take in all.
    pub wall: Duration,
}

impl Default for CallLimits {
    fn default() -> CallLimits {
        CallLimits {
            memory: 512 << 20,
            cpu: Duration::from_secs(30),
            wall: Duration::from_secs(3600),
        }
    }
}

/// A limit a plugin call ran into.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LimitExceeded {
    #[error(
        "it tried to grow its memory to {wanted} MiB, past its limit of {limit} MiB (--memory-limit)"
    )]
    Memory { wanted: usize, limit: usize },
    #[error("it computed for more than {0:?} without returning, past its CPU limit (--cpu-limit)")]
    Cpu(Duration),
    #[error("it ran for more than {0:?} in all, past its wall-clock limit (--timeout)")]
    Wall(Duration),
}

/// Most core instances, memories and tables one plugin instance may
/// create (a Rust component has a handful of each).
pub const MAX_INSTANCES: usize = 100;
pub const MAX_MEMORIES: usize = 16;
pub const MAX_TABLES: usize = 64;
/// Most table elements, all tables of an instance together.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Holds a plugin instance to its limits as totals: the memory limit is
/// for all its linear memories together (a component may carry many), the
/// table limit for all its tables.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub limit: usize,
    /// Bytes of linear memory granted so far, every memory counted.
    used: usize,
    /// Table elements granted so far.
    elements: usize,
    /// The last growth granted, taken back if it then failed.
    last: (usize, usize),
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            used: 0,
            elements: 0,
            last: (0, 0),
        }
    }

    /// Linear memory in use, all memories together.
    pub fn used(&self) -> usize {
        self.used
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    /// Called for every memory's creation (from 0) and growth.
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.limit {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                wanted: total >> 20,
                limit: self.limit >> 20,
            }));
        }
        self.used = total;
        self.last = (current, desired);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        let (current, desired) = std::mem::take(&mut self.last);
        self.used = self.used.saturating_sub(desired).saturating_add(current);
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .elements
            .saturating_sub(current)
            .saturating_add(desired);
        if total > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A core module with `n` memories of `pages` 64 KiB pages each.
    fn memories(n: u32, pages: u64) -> Vec<u8> {
        use wasm_encoder::{MemorySection, MemoryType, Module};
        let mut mems = MemorySection::new();
        for _ in 0..n {
            mems.memory(MemoryType {
                minimum: pages,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            });
        }
        let mut module = Module::new();
        module.section(&mems);
        module.finish()
    }

    fn instantiate(bytes: &[u8], limit: usize) -> wasmtime::Result<usize> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, bytes)?;
        let mut store = wasmtime::Store::new(&engine, MemoryLimiter::new(limit));
        store.limiter(|l| l);
        wasmtime::Instance::new(&mut store, &module, &[])?;
        Ok(store.data().used())
    }

    #[test]
    fn the_memory_limit_is_a_total_over_every_memory() {
        // Eight memories of 256 MiB each: each alone is under 512 MiB, all
        // together far over it.
        let err = instantiate(&memories(8, 4096), 512 << 20).unwrap_err();
        let limit = err
            .chain()
            .find_map(|e| e.downcast_ref::<LimitExceeded>())
            .cloned();
        assert!(
            matches!(limit, Some(LimitExceeded::Memory { limit: 512, .. })),
            "{err:?}"
        );
        // Two of them fit, and count as 512 MiB.
        assert_eq!(
            instantiate(&memories(2, 4096), 512 << 20).unwrap(),
            512 << 20
        );
    }

    #[test]
    fn too_many_memories_are_refused() {
        assert!(instantiate(&memories(MAX_MEMORIES as u32 + 1, 1), 512 << 20).is_err());
    }
}
