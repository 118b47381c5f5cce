//! Plugin runtime benchmarks (results and commands in BENCHMARKS.md):
//! - `call`: instantiate + call of the stub provider through the operator's sandbox, and of
//!   the same component through bare wasmtime (pooling allocator with its defaults, epoch
//!   interruption, `ProviderPre` reused, a fresh store with a memory cap per call) in the same
//!   run;
//! - `load`: cold compile vs load from the compiled cache, for every shipped plugin;
//! - `throughput`: calls per second with 16 concurrent callers on a 2-worker runtime.
//!
//! Then a memory report: resident memory per loaded plugin and per live instance.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group};
use kfp_operator::plugins::{
    CompiledCache, Limits, PluginHandle, PluginId, ProviderRequest, Sandbox,
    bindings::{
        Framework, LogLevel, PipelineDefinition, ProviderContext,
        provider::{Provider, ProviderPre, kfp::operator},
    },
    http_policy::HttpPolicy,
    sha256_hex,
};
use kfp_test_support::plugins;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
    component::{HasSelf, Linker, ResourceTable},
};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

const PLUGINS: [&str; 3] = ["stub_provider", "stub_compiler", "hostile_provider"];

fn context() -> ProviderContext {
    ProviderContext {
        name: "bench/stub".into(),
        pipeline_root_storage: "gs://bench".into(),
        parameters_json: "{}".into(),
    }
}

fn definition() -> PipelineDefinition {
    PipelineDefinition {
        name: "bench/penguin".into(),
        version: "v1-abc123".into(),
        image: "img:v1".into(),
        env: vec![],
        framework: Framework { name: "tfx".into(), parameters_json: "{}".into() },
    }
}

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap()
}

fn load(sandbox: &Sandbox, name: &str) -> PluginHandle {
    let bytes = plugins::bytes(name);
    let id = PluginId { name: name.into(), sha256: sha256_hex(&bytes) };
    PluginHandle::new(sandbox.load(&id, &bytes).unwrap(), Limits::default(), HttpPolicy::default(), context())
}

/// The baseline: the same component on plain wasmtime, no limits beyond a memory cap, no
/// policy, metrics, tracing or timeout.
struct Bare {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Bare {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl operator::host::Host for Bare {
    async fn log(&mut self, _level: LogLevel, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
    async fn context(&mut self) -> wasmtime::Result<ProviderContext> {
        Ok(context())
    }
}

impl operator::types::Host for Bare {}

fn bare_provider() -> (Engine, ProviderPre<Bare>) {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(PoolingAllocationConfig::default()));
    let engine = Engine::new(&config).unwrap();
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    Provider::add_to_linker::<Bare, HasSelf<Bare>>(&mut linker, |state| state).unwrap();
    let component = wasmtime::component::Component::new(&engine, plugins::bytes("stub_provider")).unwrap();
    let pre = ProviderPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
    (engine, pre)
}

async fn bare_call(engine: &Engine, pre: &ProviderPre<Bare>, definition: &PipelineDefinition) -> String {
    let limits = StoreLimitsBuilder::new().memory_size(64 << 20).build();
    let mut store = Store::new(engine, Bare { wasi: WasiCtx::builder().build(), table: ResourceTable::new(), limits });
    store.limiter(|state| &mut state.limits);
    store.set_epoch_deadline(u64::MAX);
    let provider = pre.instantiate_async(&mut store).await.unwrap();
    provider.call_create_pipeline(&mut store, definition, "{}").await.unwrap().unwrap()
}

fn call(c: &mut Criterion) {
    let rt = runtime(1);
    let sandbox = Sandbox::new().unwrap();
    let handle = load(&sandbox, "stub_provider");
    let request = ProviderRequest::CreatePipeline { definition: definition(), compiled_pipeline: "{}".into() };
    let (engine, pre) = bare_provider();
    let definition = definition();

    let mut group = c.benchmark_group("call");
    group.bench_function("host_create_pipeline", |b| {
        b.to_async(&rt).iter(|| async { handle.call_provider(&request).await.unwrap() })
    });
    group.bench_function("bare_wasmtime_create_pipeline", |b| {
        b.to_async(&rt).iter(|| bare_call(&engine, &pre, &definition))
    });
    group.finish();
}

fn load_from_cache(c: &mut Criterion) {
    let sandbox = Sandbox::new().unwrap();
    let dir = std::env::temp_dir().join(format!("kfp-bench-cache-{}", std::process::id()));
    let cache = CompiledCache::open(&dir, sandbox.engine()).unwrap();
    let mut group = c.benchmark_group("load");
    group.sample_size(20);
    for name in PLUGINS {
        let bytes = plugins::bytes(name);
        let id = PluginId { name: name.into(), sha256: sha256_hex(&bytes) };
        sandbox.load_cached(&id, &bytes, &cache).unwrap();
        group.bench_function(format!("compile_cold/{name}"), |b| b.iter(|| sandbox.load(&id, &bytes).unwrap()));
        group.bench_function(format!("cache_hit/{name}"), |b| {
            b.iter(|| sandbox.load_cached(&id, &bytes, &cache).unwrap())
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

fn throughput(c: &mut Criterion) {
    const CALLERS: usize = 16;
    let rt = runtime(2);
    let sandbox = Sandbox::new().unwrap();
    let handle = Arc::new(load(&sandbox, "stub_provider"));
    let request =
        Arc::new(ProviderRequest::CreatePipeline { definition: definition(), compiled_pipeline: "{}".into() });
    let mut group = c.benchmark_group("throughput");
    group.bench_function("16_concurrent_callers_per_call", |b| {
        b.to_async(&rt).iter_custom(|iterations| {
            let (handle, request) = (handle.clone(), request.clone());
            async move {
                let per_caller = iterations.div_ceil(CALLERS as u64);
                let started = Instant::now();
                let tasks: Vec<_> = (0..CALLERS)
                    .map(|_| {
                        let (handle, request) = (handle.clone(), request.clone());
                        tokio::spawn(async move {
                            for _ in 0..per_caller {
                                handle.call_provider(&request).await.unwrap();
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.unwrap();
                }
                started.elapsed().mul_f64(iterations as f64 / (per_caller * CALLERS as u64) as f64)
            }
        })
    });
    group.finish();
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Resident memory per loaded plugin and per live instance (an instance lives for one call;
/// 32 slow calls hold 32 at once).
fn memory_report() {
    let rt = runtime(2);
    let sandbox = Sandbox::new().unwrap();
    let before = resident_bytes();
    let handles: Vec<PluginHandle> = PLUGINS.iter().map(|name| load(&sandbox, name)).collect();
    let loaded = resident_bytes();
    let stub = PluginHandle::new(
        handles[0].prepared().clone(),
        Limits::default(),
        HttpPolicy::default(),
        ProviderContext { parameters_json: r#"{"slowCallMillis": 1500}"#.into(), ..context() },
    );
    const LIVE: usize = 32;
    let during = rt.block_on(async {
        let mut slow = definition();
        slow.name = "bench/slow-call".into();
        let request = Arc::new(ProviderRequest::CreatePipeline { definition: slow, compiled_pipeline: "{}".into() });
        let tasks: Vec<_> = (0..LIVE)
            .map(|_| {
                let (stub, request) = (stub.clone(), request.clone());
                tokio::spawn(async move { stub.call_provider(&request).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(750)).await;
        let during = resident_bytes();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        during
    });
    let after = resident_bytes();
    println!("memory: resident before loading: {:.1} MiB", before as f64 / 1048576.0);
    println!(
        "memory: per loaded plugin: {:.2} MiB ({} plugins)",
        (loaded - before) as f64 / 1048576.0 / PLUGINS.len() as f64,
        PLUGINS.len()
    );
    println!(
        "memory: per live instance: {:.1} KiB ({LIVE} instances)",
        (during.saturating_sub(loaded)) as f64 / 1024.0 / LIVE as f64
    );
    println!("memory: after the calls: {:.1} MiB", after as f64 / 1048576.0);
}

criterion_group!(benches, call, load_from_cache, throughput);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    memory_report();
}
