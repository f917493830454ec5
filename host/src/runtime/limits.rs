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

/// Refuses memory growth past the limit, remembering that it did.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub limit: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            return Err(wasmtime::Error::new(LimitExceeded::Memory {
                wanted: desired >> 20,
                limit: self.limit >> 20,
            }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}
