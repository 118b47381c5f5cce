//! The one wasmtime engine of the process and what it needs to compile and prepare plugins.

use std::{sync::Arc, time::Duration};

use sha2::{Digest, Sha256};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    component::{Component, HasSelf, InstancePre, Linker},
};

use super::{
    bindings::{
        compiler::CompilerPre,
        provider::{Provider, ProviderPre},
    },
    cache::CompiledCache,
    error::{PluginError, PluginErrorKind, PluginId},
    limits::MAX_MEMORY_BYTES,
    state::CallState,
};

/// How often the epoch advances. Deadlines are checked at this granularity, and a plugin
/// that computes without calling the host yields its thread this often, so one busy plugin
/// cannot starve the others (Spin uses the same tick).
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Concurrent instances the pooling allocator has room for. Each call holds one instance for
/// its duration; calls beyond this fail with an `Exhausted` error that the operator retries.
pub const MAX_CONCURRENT_INSTANCES: u32 = 128;

/// The process-wide sandbox: engine, epoch ticker and the linker with the host's capabilities.
#[derive(Clone)]
pub struct Sandbox {
    engine: Engine,
    linker: Arc<Linker<CallState>>,
}

impl Sandbox {
    pub fn new() -> wasmtime::Result<Self> {
        install_crypto_provider();
        let engine = Engine::new(&engine_config())?;
        spawn_epoch_ticker(&engine);

        let mut linker = Linker::new(&engine);
        // WASI without filesystem, environment or sockets (see `CallState::new`), outgoing
        // HTTP through the policy hook, and the host interface both worlds import.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Provider::add_to_linker::<CallState, HasSelf<CallState>>(&mut linker, |state| state)?;
        Ok(Self { engine, linker: Arc::new(linker) })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles `bytes` after checking they hash to the digest in `id`. Never compiles bytes
    /// that do not match.
    pub fn compile(&self, id: &PluginId, bytes: &[u8]) -> Result<Component, PluginError> {
        check_component_bytes(id, bytes)?;
        Component::new(&self.engine, bytes).map_err(|e| invalid(id, e))
    }

    /// Like [`Sandbox::load`], through the compiled cache: the digest is always checked, and
    /// compilation happens only on a cache miss.
    pub fn load_cached(
        &self,
        id: &PluginId,
        bytes: &[u8],
        cache: &CompiledCache,
    ) -> Result<(PreparedPlugin, CacheOutcome), PluginError> {
        check_component_bytes(id, bytes)?;
        if let Some(component) = cache.load(&self.engine, &id.sha256) {
            return Ok((self.prepare(id, &component)?, CacheOutcome::Hit));
        }
        let compiled = self.engine.precompile_component(bytes).map_err(|e| invalid(id, e))?;
        if let Err(error) = cache.store(&id.sha256, &compiled) {
            tracing::warn!(plugin = %id.name, %error, "could not cache the compiled plugin; it will be recompiled after a restart");
        }
        // SAFETY: `compiled` was produced just now by this engine's `precompile_component`.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| invalid(id, e))?;
        Ok((self.prepare(id, &component)?, CacheOutcome::Miss))
    }

    /// Links `component` and checks which world it implements.
    pub fn prepare(&self, id: &PluginId, component: &Component) -> Result<PreparedPlugin, PluginError> {
        let pre: InstancePre<CallState> = self
            .linker
            .instantiate_pre(component)
            .map_err(|e| PluginError::new(id, None, PluginErrorKind::WorldMismatch(format!("{e:#}"))))?;
        let world = match ProviderPre::new(pre.clone()) {
            Ok(provider) => PreparedWorld::Provider(provider),
            Err(provider_error) => match CompilerPre::new(pre) {
                Ok(compiler) => PreparedWorld::Compiler(compiler),
                Err(compiler_error) => {
                    let cause = format!("as a provider: {provider_error:#}; as a compiler: {compiler_error:#}");
                    return Err(PluginError::new(id, None, PluginErrorKind::WorldMismatch(cause)));
                }
            },
        };
        Ok(PreparedPlugin { id: id.clone(), world, sandbox: self.clone() })
    }

    /// Compiles and prepares in one step.
    pub fn load(&self, id: &PluginId, bytes: &[u8]) -> Result<PreparedPlugin, PluginError> {
        let component = self.compile(id, bytes)?;
        self.prepare(id, &component)
    }
}

/// A plugin ready to be instantiated: compiled, linked and type-checked once; each call makes
/// a fresh instance from it.
#[derive(Clone)]
pub struct PreparedPlugin {
    pub id: PluginId,
    pub(super) world: PreparedWorld,
    pub(super) sandbox: Sandbox,
}

#[derive(Clone)]
pub(super) enum PreparedWorld {
    Provider(ProviderPre<CallState>),
    Compiler(CompilerPre<CallState>),
}

impl PreparedPlugin {
    /// `provider` or `compiler`.
    pub fn world(&self) -> &'static str {
        match self.world {
            PreparedWorld::Provider(_) => "provider",
            PreparedWorld::Compiler(_) => "compiler",
        }
    }
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a load compiled the plugin or found it in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
}

/// The checks before any compilation: the digest, then the component header.
fn check_component_bytes(id: &PluginId, bytes: &[u8]) -> Result<(), PluginError> {
    let actual = sha256_hex(bytes);
    if actual != id.sha256 {
        let kind = PluginErrorKind::DigestMismatch { expected: id.sha256.clone(), actual };
        return Err(PluginError::new(id, None, kind));
    }
    if !wasmparser_is_component(bytes) {
        let cause =
            "the bytes are not a WebAssembly component (a core module or not Wasm at all); build for wasm32-wasip2";
        return Err(PluginError::new(id, None, PluginErrorKind::InvalidComponent(cause.into())));
    }
    Ok(())
}

fn invalid(id: &PluginId, error: wasmtime::Error) -> PluginError {
    PluginError::new(id, None, PluginErrorKind::InvalidComponent(format!("{error:#}")))
}

/// A component starts with the Wasm magic and layer 1 (core modules have layer 0).
fn wasmparser_is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn engine_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Deadlines: the epoch advances every EPOCH_TICK; each store sets its own deadline.
    config.epoch_interruption(true);
    // Instances come from a pre-reserved pool: instantiation is a few microseconds. When an
    // instance is dropped its memory is reset; up to the first MiB of each memory slot (what a
    // small plugin touches) and of each table is reset in place and stays resident, so the next
    // call on that slot takes no page faults; the rest is returned to the OS at once (batched
    // decommits would keep whole freed memories resident, up to the memory limit each).
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
        .total_core_instances(MAX_CONCURRENT_INSTANCES * 8)
        .total_memories(MAX_CONCURRENT_INSTANCES * 2)
        .total_tables(MAX_CONCURRENT_INSTANCES * 8)
        .total_stacks(MAX_CONCURRENT_INSTANCES)
        .max_memory_size(MAX_MEMORY_BYTES as usize)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the pages the instance
        // touched instead of the whole resident MiB.
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Two rustls crypto providers are linked in (ring through kube, aws-lc-rs through the OCI
/// client), so rustls cannot pick a process default by itself, and wasi-http's TLS client needs
/// one. Installing it twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Advances the engine's epoch every tick for as long as the engine exists.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}
