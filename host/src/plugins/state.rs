//! What one call's `Store` holds: a deny-by-default WASI context, the HTTP capability, the
//! memory limiter and the host interface (logging, provider context).

use std::time::Instant;

use wasmtime::{ResourceLimiter, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView, p2::pipe::MemoryOutputPipe};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::{
    bindings::{LogLevel, ProviderContext, provider::kfp::operator},
    http_policy::HttpPolicy,
};

/// Log lines a plugin may write per call, and their length; the rest is dropped and counted,
/// so a chatty or hostile plugin cannot flood the operator's log.
const MAX_LOG_LINES_PER_CALL: u32 = 100;
const MAX_LOG_LINE_BYTES: usize = 4096;
/// What the plugin writes to stderr (a panic message, say) is kept up to this size for the
/// error message of a trap.
pub const STDERR_CAPTURE_BYTES: usize = 4096;

pub struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    pub(super) http_policy: HttpPolicy,
    pub(super) limiter: MemoryLimiter,
    pub(super) stderr: MemoryOutputPipe,
    pub(super) deadline: Instant,
    context: ProviderContext,
    plugin: String,
    operation: &'static str,
    log_lines: u32,
    pub(super) dropped_log_lines: u32,
}

impl CallState {
    pub fn new(
        plugin: &str,
        operation: &'static str,
        context: ProviderContext,
        http_policy: HttpPolicy,
        memory_limit: u64,
        deadline: Instant,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        // Deny by default: no preopened directories, no environment, no arguments, no
        // sockets, no name lookup; stdin is empty and stdout is discarded. Clocks and random
        // stay, as the Rust and other standard libraries need them.
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            http_policy,
            limiter: MemoryLimiter::new(memory_limit),
            stderr,
            deadline,
            context,
            plugin: plugin.to_owned(),
            operation,
            log_lines: 0,
            dropped_log_lines: 0,
        }
    }

    /// What the plugin wrote to stderr, lossily decoded.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).trim().to_owned()
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_policy }
    }
}

impl operator::host::Host for CallState {
    async fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        if self.log_lines >= MAX_LOG_LINES_PER_CALL {
            self.dropped_log_lines += 1;
            return Ok(());
        }
        self.log_lines += 1;
        let mut message = message;
        if message.len() > MAX_LOG_LINE_BYTES {
            let cut = (0..=MAX_LOG_LINE_BYTES).rev().find(|&i| message.is_char_boundary(i)).unwrap_or(0);
            message.truncate(cut);
            message.push('…');
        }
        let (plugin, operation) = (&self.plugin, self.operation);
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, operation, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, operation, "{message}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, operation, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, operation, "{message}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, operation, "{message}"),
        }
        Ok(())
    }

    async fn context(&mut self) -> wasmtime::Result<ProviderContext> {
        Ok(self.context.clone())
    }
}

impl operator::types::Host for CallState {}

/// Caps the total linear memory of one instance (summed over all its memories, since
/// wasmtime's own `StoreLimits` caps each memory separately) and records the peak.
pub struct MemoryLimiter {
    limit: u64,
    total: u64,
    pub(super) peak: u64,
    pub(super) exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit: u64) -> Self {
        Self { limit, total: 0, peak: 0, exceeded: false }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total - current as u64 + desired as u64;
        if total > self.limit {
            // Refuse the growth: memory.grow returns -1 and the guest's allocator fails, which
            // a Rust guest turns into a trap; `exceeded` tells the host why.
            self.exceeded = true;
            return Ok(false);
        }
        self.total = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real component.
        Ok(desired <= 1_000_000)
    }
}
