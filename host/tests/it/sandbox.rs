//! The sandbox against real components built from source (`plugins/`): the stub provider and
//! compiler answer; every hostile behaviour fails its one call with a typed error, within the
//! deadline, while a good plugin keeps answering; the process's memory returns to its baseline.

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use kfp_operator::plugins::{
    Limits, PluginError, PluginErrorKind, PluginHandle, PluginId, ProviderRequest, ProviderResponse, Sandbox,
    bindings::{Framework, PipelineDefinition, ProviderContext, RunDefinition, RunState, TriggerIndicator},
    http_policy::HttpPolicy,
    sha256_hex,
};
use kfp_test_support::plugins;
use tokio::sync::{RwLock, RwLockReadGuard};

/// Tests that make resident memory jump (memory bombs, a full pool) share this lock; the test
/// that measures resident memory takes it exclusively, so tests running in parallel threads of
/// this process do not disturb its measurement.
static MEMORY_HEAVY: RwLock<()> = RwLock::const_new(());

async fn memory_heavy() -> RwLockReadGuard<'static, ()> {
    MEMORY_HEAVY.read().await
}

/// One sandbox per test process, as the operator has one engine.
fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| Sandbox::new().expect("a sandbox"))
}

pub fn context(parameters_json: &str) -> ProviderContext {
    ProviderContext {
        name: "test/stub".into(),
        pipeline_root_storage: "gs://test-root".into(),
        parameters_json: parameters_json.into(),
    }
}

pub fn load(name: &str, limits: Limits, policy: HttpPolicy, parameters_json: &str) -> PluginHandle {
    let bytes = plugins::bytes(name);
    let id = PluginId { name: format!("test/{name}"), sha256: sha256_hex(&bytes) };
    let prepared = sandbox().load(&id, &bytes).unwrap_or_else(|e| panic!("loading {name}: {e}"));
    PluginHandle::new(prepared, limits, policy, context(parameters_json))
}

pub fn pipeline(name: &str, image: &str) -> PipelineDefinition {
    PipelineDefinition {
        name: format!("team/{name}"),
        version: "v1-abc123".into(),
        image: image.into(),
        env: vec![],
        framework: Framework { name: "tfx".into(), parameters_json: r#"{"components":"m.f"}"#.into() },
    }
}

pub fn create_pipeline(name: &str, image: &str) -> ProviderRequest {
    ProviderRequest::CreatePipeline { definition: pipeline(name, image), compiled_pipeline: "{}".into() }
}

fn stub() -> PluginHandle {
    load("stub_provider", Limits::default(), HttpPolicy::default(), r#"{"runDurationSeconds": 0}"#)
}

fn hostile(limits: Limits) -> PluginHandle {
    load("hostile_provider", limits, HttpPolicy::default(), "{}")
}

fn short_limits() -> Limits {
    Limits { timeout: Duration::from_millis(500), ..Limits::default() }
}

#[track_caller]
fn expect_error<T: std::fmt::Debug>(result: Result<T, PluginError>) -> PluginError {
    let error = result.expect_err("the call should fail");
    // Every error names the plugin and its digest.
    let text = error.to_string();
    assert!(text.contains("plugin test/") && text.contains("sha256:"), "{text}");
    error
}

#[tokio::test]
async fn stub_provider_answers_and_fails_on_magic_names() {
    let stub = stub();
    let created = stub.call_provider(&create_pipeline("penguin", "img:v1")).await.unwrap();
    assert_eq!(created, ProviderResponse::Id("pipeline:team/penguin".into()));

    let error = expect_error(stub.call_provider(&create_pipeline("create-pipeline-fail", "img")).await);
    assert!(matches!(&error.kind, PluginErrorKind::Permanent(m) if m == "create pipeline failed"), "{error}");
    assert!(!error.is_transient());
    assert_eq!(error.operation.as_deref(), Some("create-pipeline"));

    let error = expect_error(stub.call_provider(&create_pipeline("create-pipeline-transient", "img")).await);
    assert!(matches!(error.kind, PluginErrorKind::Transient(_)), "{error}");
    assert!(error.is_transient());

    let error = expect_error(
        stub.call_provider(&ProviderRequest::DeletePipeline { id: "pipeline:team/delete-pipeline-fail".into() }).await,
    );
    assert!(matches!(&error.kind, PluginErrorKind::Permanent(m) if m == "delete pipeline failed"), "{error}");
}

#[tokio::test]
async fn stub_runs_complete_with_artifacts() {
    let stub = stub();
    let definition = RunDefinition {
        name: "team/training".into(),
        version: "abc123".into(),
        pipeline_name: "team/penguin".into(),
        pipeline_version: "v1-abc123".into(),
        run_configuration_name: String::new(),
        experiment_name: String::new(),
        parameters: vec![],
        artifacts: vec![],
        trigger_indicator: TriggerIndicator {
            type_: String::new(),
            source: String::new(),
            source_namespace: String::new(),
        },
    };
    let ProviderResponse::Id(id) = stub.call_provider(&ProviderRequest::CreateRun { definition }).await.unwrap() else {
        panic!("create-run returns an id");
    };
    let ProviderResponse::RunStatus(status) = stub.call_provider(&ProviderRequest::RunStatus { id }).await.unwrap()
    else {
        panic!("run-status returns a status");
    };
    assert_eq!(status.state, RunState::Succeeded);
    let pusher = status.artifacts.iter().find(|c| c.component == "Pusher").expect("a Pusher artifact");
    assert_eq!(pusher.artifacts[0].location, "gs://test-root/team/training/Pusher/pushed_model");
    assert_eq!(pusher.artifacts[0].metadata_json, r#"{"pushed":1}"#);
}

#[tokio::test]
async fn compiler_plugins_compile_and_refuse_provider_calls() {
    let compiler = load("stub_compiler", Limits::default(), HttpPolicy::default(), "{}");
    assert_eq!(compiler.prepared().world(), "compiler");
    let compiled = compiler.compile(&pipeline("penguin", "img:v1")).await.unwrap();
    let compiled: serde_json::Value = serde_json::from_str(&compiled).unwrap();
    assert_eq!(compiled["pipelineInfo"]["name"], "team-penguin");

    // A component of the other world is refused by kind, with both worlds named.
    let error = expect_error(compiler.call_provider(&create_pipeline("p", "i")).await);
    assert!(error.to_string().contains("is a compiler plugin, not a provider plugin"), "{error}");
    let error = expect_error(stub().compile(&pipeline("p", "i")).await);
    assert!(error.to_string().contains("is a provider plugin, not a compiler plugin"), "{error}");
}

#[test]
fn bad_bytes_are_refused_before_compiling() {
    let bytes = plugins::bytes("stub_provider");
    let wrong_digest = PluginId { name: "test/stub".into(), sha256: "0".repeat(64) };
    let error = sandbox().load(&wrong_digest, &bytes).err().expect("a digest mismatch");
    let PluginErrorKind::DigestMismatch { expected, actual } = &error.kind else { panic!("{error}") };
    assert_eq!((expected.as_str(), actual.as_str()), ("0".repeat(64).as_str(), sha256_hex(&bytes).as_str()));
    assert!(error.to_string().contains(&sha256_hex(&bytes)), "the message gives both digests: {error}");

    // A valid component of neither world (empty: the 8-byte component header).
    let foreign = b"\0asm\x0d\0\x01\0".to_vec();
    let id = PluginId { name: "test/foreign".into(), sha256: sha256_hex(&foreign) };
    let error = sandbox().load(&id, &foreign).err().expect("a foreign world is refused");
    assert!(matches!(error.kind, PluginErrorKind::WorldMismatch(_)), "{error}");
    let message = error.to_string();
    assert!(message.contains("kfp:operator/provider@0.1.0 or kfp:operator/compiler@0.1.0"), "{message}");
    assert!(message.contains("as a provider:") && message.contains("as a compiler:"), "{message}");

    for (what, bytes) in [
        ("corrupt", b"this is not wasm at all".to_vec()),
        ("core module", b"\0asm\x01\0\0\0".to_vec()),
        ("truncated component", bytes[..bytes.len() / 2].to_vec()),
    ] {
        let id = PluginId { name: format!("test/{what}"), sha256: sha256_hex(&bytes) };
        let error = sandbox().load(&id, &bytes).err().unwrap_or_else(|| panic!("{what} was accepted"));
        assert!(matches!(error.kind, PluginErrorKind::InvalidComponent(_)), "{what}: {error}");
    }
}

#[tokio::test]
async fn an_infinite_loop_hits_the_deadline() {
    let started = Instant::now();
    let error = expect_error(hostile(short_limits()).call_provider(&create_pipeline("loop", "")).await);
    assert!(matches!(error.kind, PluginErrorKind::DeadlineExceeded(d) if d == Duration::from_millis(500)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(3), "stopped only after {:?}", started.elapsed());
}

#[tokio::test]
async fn a_memory_bomb_runs_out_of_memory() {
    let _heavy = memory_heavy().await;
    let limits = Limits { memory_bytes: 32 << 20, ..short_limits() };
    let error = expect_error(hostile(limits).call_provider(&create_pipeline("memory-bomb", "")).await);
    assert!(matches!(error.kind, PluginErrorKind::OutOfMemory { limit } if limit == 32 << 20), "{error}");
    assert!(error.to_string().contains("limits.memory"), "says which limit to raise: {error}");
}

#[tokio::test]
async fn deep_recursion_and_panics_trap_with_a_message() {
    let hostile = hostile(short_limits());
    let error = expect_error(hostile.call_provider(&create_pipeline("recursion", "")).await);
    let PluginErrorKind::Trap { message } = &error.kind else { panic!("{error}") };
    assert!(message.starts_with("stack overflow"), "{message}");
    assert!(message.contains("wasm backtrace"), "the guest backtrace is kept: {message}");
    assert!(message.len() < 4096, "the backtrace of deep recursion is shortened: {} bytes", message.len());

    let error = expect_error(hostile.call_provider(&create_pipeline("panic", "")).await);
    let PluginErrorKind::Trap { message } = &error.kind else { panic!("{error}") };
    assert!(message.contains("the hostile plugin panics on purpose"), "the guest's panic message: {message}");
}

#[tokio::test]
async fn oversized_output_is_refused() {
    let error = expect_error(hostile(Limits::default()).call_provider(&create_pipeline("huge-output", "")).await);
    assert!(
        matches!(error.kind, PluginErrorKind::OutputTooLarge { size, limit } if size == 16 << 20 && limit == 4 << 20),
        "{error}"
    );
}

#[tokio::test]
async fn a_log_flood_is_capped_and_the_call_succeeds() {
    let response = hostile(Limits::default()).call_provider(&create_pipeline("log-flood", "")).await.unwrap();
    assert_eq!(response, ProviderResponse::Id("log-flood".into()));
}

/// Hostile calls run concurrently with good ones; the good ones keep answering promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_plugin_keeps_answering_while_hostile_ones_run() {
    let _heavy = memory_heavy().await;
    let hostile = Arc::new(hostile(Limits { timeout: Duration::from_secs(2), ..Limits::default() }));
    let mut attacks = Vec::new();
    for name in ["loop", "loop", "memory-bomb", "recursion"] {
        let hostile = hostile.clone();
        attacks.push(tokio::spawn(async move { hostile.call_provider(&create_pipeline(name, "")).await }));
    }
    let stub = stub();
    let started = Instant::now();
    for i in 0..50 {
        let response = stub.call_provider(&create_pipeline(&format!("p{i}"), "img")).await.unwrap();
        assert_eq!(response, ProviderResponse::Id(format!("pipeline:team/p{i}")));
    }
    let good_calls = started.elapsed();
    for attack in attacks {
        assert!(attack.await.unwrap().is_err());
    }
    assert!(good_calls < Duration::from_secs(2), "50 good calls took {good_calls:?} beside the hostile ones");
}

/// Resident memory after many hostile calls returns to where it was: instances' memory goes
/// back to the pool and is released.
#[tokio::test]
async fn memory_returns_to_baseline_after_hostile_calls() {
    let _exclusive = MEMORY_HEAVY.write().await;
    let hostile = hostile(Limits { memory_bytes: 128 << 20, ..short_limits() });
    // Warm up: the pool, the code and the allocator's first arenas.
    let _ = hostile.call_provider(&create_pipeline("memory-bomb", "")).await;
    let baseline = resident_bytes();
    for _ in 0..10 {
        let error = expect_error(hostile.call_provider(&create_pipeline("memory-bomb", "")).await);
        assert!(matches!(error.kind, PluginErrorKind::OutOfMemory { .. }), "{error}");
    }
    let after = resident_bytes();
    assert!(
        after < baseline + (64 << 20),
        "resident memory grew from {} MiB to {} MiB over 10 calls that each filled 128 MiB",
        baseline >> 20,
        after >> 20
    );
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Every call is counted by plugin, operation and outcome, timed, and its memory peak kept.
#[tokio::test]
async fn calls_are_measured_per_plugin() {
    let registry = prometheus::Registry::new();
    let metrics = Arc::new(kfp_operator::plugins::metrics::PluginMetrics::new(&registry).unwrap());
    let stub = stub().with_metrics(metrics);
    stub.call_provider(&create_pipeline("fine", "img")).await.unwrap();
    stub.call_provider(&create_pipeline("create-pipeline-fail", "img")).await.unwrap_err();
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
    let sample = |metric: &str, labels: &[&str]| {
        text.lines()
            .find(|line| line.starts_with(metric) && labels.iter().all(|label| line.contains(label)))
            .and_then(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {metric} with {labels:?} in:\n{text}"))
    };
    let plugin = r#"plugin="test/stub_provider""#;
    let operation = r#"operation="create-pipeline""#;
    assert_eq!(sample("kfp_operator_plugin_calls_total", &[plugin, operation, r#"outcome="ok""#]), 1.0);
    assert_eq!(sample("kfp_operator_plugin_calls_total", &[plugin, operation, r#"outcome="permanent_error""#]), 1.0);
    assert_eq!(sample("kfp_operator_plugin_call_duration_seconds_count", &[plugin, operation]), 2.0);
    assert!(sample("kfp_operator_plugin_instance_memory_peak_bytes", &[plugin]) > 0.0);
}

/// More simultaneous calls than the pool has instance slots: the extra ones fail with a
/// retryable `Exhausted` error instead of queueing without bound, and the others succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_instance_pool_fails_calls_as_retryable() {
    let _heavy = memory_heavy().await;
    // Its own sandbox: filling the shared one's pool would fail other tests' calls.
    let sandbox = Sandbox::new().unwrap();
    let bytes = plugins::bytes("stub_provider");
    let id = PluginId { name: "test/stub_provider".into(), sha256: sha256_hex(&bytes) };
    let prepared = sandbox.load(&id, &bytes).unwrap();
    let context = context(r#"{"slowCallMillis": 1500}"#);
    let stub = Arc::new(PluginHandle::new(prepared, Limits::default(), HttpPolicy::default(), context));
    let calls: Vec<_> = (0..kfp_operator::plugins::sandbox::MAX_CONCURRENT_INSTANCES + 12)
        .map(|i| {
            let stub = stub.clone();
            tokio::spawn(async move { stub.call_provider(&create_pipeline(&format!("slow-{i}"), "img")).await })
        })
        .collect();
    let (mut succeeded, mut exhausted) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => succeeded += 1,
            Err(error) => {
                assert!(matches!(error.kind, PluginErrorKind::Exhausted(_)) && error.is_transient(), "{error}");
                exhausted += 1;
            }
        }
    }
    assert!(exhausted > 0 && succeeded > 0, "{succeeded} succeeded, {exhausted} exhausted");
}
