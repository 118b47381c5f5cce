//! Reconcile throughput on the real control plane (results and command in BENCHMARKS.md).
//!
//! In one run: (1) the baseline, a plain client creating N Pipelines and N RunConfigurations and
//! writing one status for each, 16 requests at a time (what the API server allows); (2) the
//! operator's controllers, in this process with the stub provider, synchronising N Pipelines and N
//! RunConfigurations created the same way, timed until all are `Succeeded`; (3) the latency from
//! creating one Pipeline to `Succeeded`, 30 times; (4) this process's resident memory.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::StreamExt;
use kfp_operator::{
    api::{Pipeline, Provider, RunConfiguration, conditions::SynchronizationState},
    controllers::{Context, provider, run_configuration, synced},
    plugins::{PluginRegistry, Sandbox, sha256_hex, source::OciSettings},
};
use kfp_test_support::{ClusterOptions, TestCluster, chart_crd_dir, plugins};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

const CONCURRENCY: usize = 16;

fn pipeline(namespace: &str, name: &str) -> Pipeline {
    serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline", "metadata": { "name": name },
        "spec": { "provider": format!("{namespace}/stub"), "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } },
    }))
    .unwrap()
}

fn run_configuration(namespace: &str, name: &str) -> RunConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "RunConfiguration", "metadata": { "name": name },
        "spec": { "run": { "provider": format!("{namespace}/stub"), "pipeline": "p0" } },
    }))
    .unwrap()
}

async fn namespace(client: &Client, name: &str) {
    let object: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(json!({ "metadata": { "name": name } })).unwrap();
    Api::all(client.clone()).create(&PostParams::default(), &object).await.unwrap();
}

/// Creates `count` objects of both kinds, `CONCURRENCY` requests at a time.
async fn create_all(client: &Client, namespace: &str, count: usize) {
    let (pipelines, configurations): (Api<Pipeline>, Api<RunConfiguration>) =
        (Api::namespaced(client.clone(), namespace), Api::namespaced(client.clone(), namespace));
    futures::stream::iter(0..count)
        .for_each_concurrent(CONCURRENCY, |i| {
            let (pipelines, configurations) = (pipelines.clone(), configurations.clone());
            async move {
                pipelines.create(&PostParams::default(), &pipeline(namespace, &format!("p{i}"))).await.unwrap();
                configurations
                    .create(&PostParams::default(), &run_configuration(namespace, &format!("rc{i}")))
                    .await
                    .unwrap();
            }
        })
        .await;
}

fn synchronized_condition() -> Value {
    json!([{ "type": "Synchronized", "status": "True", "reason": "Succeeded", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z" }])
}

async fn baseline(client: &Client, count: usize) -> Duration {
    let ns = "bench-baseline";
    namespace(client, ns).await;
    let started = Instant::now();
    create_all(client, ns, count).await;
    let (pipelines, configurations): (Api<Pipeline>, Api<RunConfiguration>) =
        (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns));
    futures::stream::iter(0..count)
        .for_each_concurrent(CONCURRENCY, |i| {
            let (pipelines, configurations) = (pipelines.clone(), configurations.clone());
            async move {
                let status = Patch::Merge(
                    json!({ "status": { "version": "v1-abc123", "conditions": synchronized_condition() } }),
                );
                pipelines.patch_status(&format!("p{i}"), &PatchParams::default(), &status).await.unwrap();
                let status = Patch::Merge(json!({ "status": { "conditions": synchronized_condition() } }));
                configurations.patch_status(&format!("rc{i}"), &PatchParams::default(), &status).await.unwrap();
            }
        })
        .await;
    started.elapsed()
}

async fn all_succeeded(client: &Client, namespace: &str, count: usize) -> bool {
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), namespace);
    let configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), namespace);
    let done = |state: SynchronizationState| state == SynchronizationState::Succeeded;
    let p = pipelines.list(&ListParams::default()).await.unwrap().items;
    let rc = configurations.list(&ListParams::default()).await.unwrap().items;
    p.iter().filter(|o| o.status.as_ref().is_some_and(|s| done(s.synchronization_state()))).count() >= count
        && rc.iter().filter(|o| o.status.as_ref().is_some_and(|s| done(s.synchronization_state()))).count() >= count
}

/// Writes (create, update, patch, delete) the API server has served so far, by resource, from
/// its own `apiserver_request_total`: what each phase cost the API server, counted by it.
async fn api_server_writes(client: &Client) -> std::collections::BTreeMap<String, u64> {
    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new()).unwrap()).await.unwrap();
    let mut writes = std::collections::BTreeMap::new();
    for line in metrics.lines().filter(|line| line.starts_with("apiserver_request_total{")) {
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).map(|at| at + name.len() + 2)?;
            Some(&line[start..start + line[start..].find('"')?])
        };
        let (Some(verb), Some(resource)) = (label("verb"), label("resource")) else { continue };
        if !matches!(verb, "POST" | "PUT" | "PATCH" | "DELETE") || resource.is_empty() {
            continue;
        }
        let count: f64 = line.rsplit(' ').next().and_then(|n| n.parse().ok()).unwrap_or(0.0);
        let subresource = label("subresource").filter(|s| !s.is_empty()).map(|s| format!("/{s}")).unwrap_or_default();
        *writes.entry(format!("{verb} {resource}{subresource}")).or_default() += count as u64;
    }
    writes
}

/// The writes between two readings of [`api_server_writes`], as `(total, "what: n, ...")`.
fn writes_between(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> (u64, String) {
    let delta: Vec<(String, u64)> = after
        .iter()
        .map(|(what, n)| (what.clone(), n - before.get(what).copied().unwrap_or(0)))
        .filter(|(what, n)| *n > 0 && !what.contains("leases"))
        .collect();
    let total = delta.iter().map(|(_, n)| n).sum();
    (total, delta.iter().map(|(what, n)| format!("{what}: {n}")).collect::<Vec<_>>().join(", "))
}

/// CPU time (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // USER_HZ is 100 on Linux.
    ticks / 100.0
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("KFP_BENCH_OBJECTS").ok().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let cluster = TestCluster::start(ClusterOptions { crd_dir: Some(chart_crd_dir()) }).await.unwrap();
    let client = cluster.client().await.unwrap();

    let before = api_server_writes(&client).await;
    let raw = baseline(&client, count).await;
    let (raw_writes, raw_detail) = writes_between(&before, &api_server_writes(&client).await);
    let raw_rate = (4 * count) as f64 / raw.as_secs_f64();
    println!(
        "baseline: {} creates + {} status writes by a plain client in {:.2} s ({raw_rate:.0} writes/s; the API server counted {raw_writes} writes: {raw_detail})",
        2 * count,
        2 * count,
        raw.as_secs_f64()
    );

    let ns = "bench-operator";
    namespace(&client, ns).await;
    let stub = plugins::bytes("stub_provider");
    let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "plugins" },
        "binaryData": { "provider.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &stub) },
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &config_map).await.unwrap();
    let provider: Provider = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Provider", "metadata": { "name": "stub" },
        "spec": { "pipelineRootStorage": "gs://root", "frameworks": [{ "name": "tfx" }],
                  "plugin": { "configMap": { "name": "plugins", "key": "provider.wasm" }, "sha256": sha256_hex(&stub) } },
    }))
    .unwrap();
    Api::namespaced(client.clone(), ns).create(&PostParams::default(), &provider).await.unwrap();
    let registry =
        Arc::new(PluginRegistry::new(Sandbox::new().unwrap(), client.clone(), OciSettings::default(), None, None));
    let context = Arc::new(Context::new(client.clone(), registry));
    let controllers = tokio::spawn(async move {
        tokio::join!(
            provider::run(context.clone(), Some(ns)),
            synced::run::<Pipeline>(context.clone(), Some(ns)),
            run_configuration::run(context, Some(ns)),
        );
    });
    // Wait for the Provider's plugin, so the timing measures synchronisation only.
    while !Api::<Provider>::namespaced(client.clone(), ns)
        .get("stub")
        .await
        .unwrap()
        .status
        .is_some_and(|s| s.status.synchronization_state() == SynchronizationState::Succeeded)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let before = api_server_writes(&client).await;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    create_all(&client, ns, count).await;
    while !all_succeeded(&client, ns, count).await {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let operator = started.elapsed();
    let operator_cpu = cpu_seconds() - cpu_before;
    let (operator_writes, operator_detail) = writes_between(&before, &api_server_writes(&client).await);
    // Events are published off the reconcile path: how long after the last Succeeded the last
    // of the Pipelines' Events (Creating, Succeeded) reached the API server.
    let events_wanted = 2 * count as u64;
    let events_written = async || {
        let after = api_server_writes(&client).await;
        after.get("POST events").copied().unwrap_or(0) - before.get("POST events").copied().unwrap_or(0)
    };
    let mut events = events_written().await;
    while events < events_wanted && started.elapsed() < operator + Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        events = events_written().await;
    }
    let events_lag = started.elapsed() - operator;
    let operator_rate = (4 * count) as f64 / operator.as_secs_f64();
    println!(
        "operator: {count} Pipelines and {count} RunConfigurations created and Succeeded in {:.2} s ({operator_rate:.0} baseline-equivalent writes/s, {:.0} % of the baseline rate; the API server counted {operator_writes} writes, {:.0}/s: {operator_detail})",
        operator.as_secs_f64(),
        100.0 * operator_rate / raw_rate,
        operator_writes as f64 / operator.as_secs_f64(),
    );
    println!(
        "CPU time of this process (controllers, plugin calls and the bench client) meanwhile: {operator_cpu:.2} s ({:.0} % of one core)",
        100.0 * operator_cpu / operator.as_secs_f64()
    );
    println!(
        "events: {events} of the Pipelines' {events_wanted} Events written {:.2} s after the last Succeeded",
        events_lag.as_secs_f64()
    );

    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), ns);
    let mut latencies = Vec::new();
    for i in 0..30 {
        let name = format!("single{i}");
        let started = Instant::now();
        pipelines.create(&PostParams::default(), &pipeline(ns, &name)).await.unwrap();
        loop {
            let status = pipelines.get(&name).await.unwrap().status;
            if status.is_some_and(|s| s.synchronization_state() == SynchronizationState::Succeeded) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(started.elapsed());
    }
    latencies.sort();
    println!(
        "single Pipeline apply -> Succeeded: p50 {:.1} ms, p90 {:.1} ms (30 samples)",
        latencies[15].as_secs_f64() * 1e3,
        latencies[27].as_secs_f64() * 1e3
    );
    println!("resident memory of this process (operator controllers + bench client): {:.1} MiB", resident_mib());
    controllers.abort();
    drop(cluster);
}
