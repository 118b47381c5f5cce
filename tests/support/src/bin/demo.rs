//! `make demo` / `make demo-check`: the operator's main job on a local control plane.
//!
//! Starts the control plane with the CRDs, puts the stub provider plugin in a ConfigMap of
//! namespace `kfp-demo` (pinning its real digest into `examples/provider-configmap.yaml`),
//! applies the examples, starts `kfp-operator run` and prints a table of every resource's state
//! until all are `Succeeded` (Runs: synchronised and completed). `--check` then exits 0 (or
//! non-zero with a report after the timeout); without it the demo keeps running until Ctrl-C.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use k8s_openapi::{
    ByteString,
    api::core::v1::{ConfigMap, Namespace},
};
use kfp_test_support::{ClusterOptions, TestCluster, chart_crd_dir, plugins, repo_root};
use kube::{
    Api, Client,
    api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams},
};
use serde_json::Value;

const NAMESPACE: &str = "kfp-demo";
const CHECK_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut operator, mut check) = (None, false);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--operator" => operator = args.next().map(PathBuf::from),
            "--check" => check = true,
            other => bail!("unknown argument {other:?}; usage: kfp-demo --operator <kfp-operator binary> [--check]"),
        }
    }
    let operator = operator.context("--operator <path to the kfp-operator binary> is required")?;

    println!("starting a local control plane (etcd, kube-apiserver, kube-controller-manager) with the CRDs...");
    let mut cluster = TestCluster::start(ClusterOptions { crd_dir: Some(chart_crd_dir()) }).await?;
    let client = cluster.client().await?;
    println!("kubeconfig: {}", cluster.kubeconfig_path().display());

    let mut namespace = Namespace::default();
    namespace.metadata.name = Some(NAMESPACE.into());
    Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await?;

    println!("building the stub provider plugin and loading it into ConfigMap {NAMESPACE}/stub-provider-plugin...");
    let stub = plugins::bytes("stub_provider");
    let digest = kfp_operator_digest(&stub);
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some("stub-provider-plugin".into());
    config_map.binary_data = Some(BTreeMap::from([("plugin.wasm".to_owned(), ByteString(stub))]));
    Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE).create(&PostParams::default(), &config_map).await?;

    apply_examples(&client, &digest).await?;

    println!("starting {} run --namespace {NAMESPACE}...", operator.display());
    let cache = std::env::temp_dir().join(format!("kfp-demo-cache-{}", std::process::id()));
    let mut operator = Command::new(&operator)
        .args(["run", "--namespace", NAMESPACE, "--metrics-address", "127.0.0.1:0", "--probe-address", "127.0.0.1:0"])
        .arg(format!("--plugin-cache-dir={}", cache.display()))
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting kfp-operator")?;

    let started = Instant::now();
    let mut last_table = String::new();
    let outcome = loop {
        let (table, done) = table(&client).await?;
        if table != last_table {
            println!("\n{:>5.1}s\n{table}", started.elapsed().as_secs_f64());
            last_table = table;
        }
        if done {
            println!("every resource is Succeeded after {:.1} s.", started.elapsed().as_secs_f64());
            if check {
                break Ok(());
            }
            println!("the demo keeps running; Ctrl-C stops it.");
            tokio::signal::ctrl_c().await?;
            break Ok(());
        }
        if check && started.elapsed() > CHECK_TIMEOUT {
            break Err(anyhow::anyhow!(
                "not everything is Succeeded after {CHECK_TIMEOUT:?}; the last table above says what is not"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = operator.kill();
    let _ = operator.wait();
    cluster.stop();
    let _ = std::fs::remove_dir_all(cache);
    outcome
}

/// The SHA-256 of the plugin, as the Provider pins it.
fn kfp_operator_digest(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bytes);
    digest.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// Applies every example except the OCI Provider (its registry is a placeholder), with the
/// stub's real digest pinned in the ConfigMap Provider.
async fn apply_examples(client: &Client, digest: &str) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("examples"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|x| x == "yaml") && !path.ends_with("provider-oci.yaml"));
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path)?;
        for document in serde_yaml::Deserializer::from_str(&text) {
            let mut object: Value = serde::Deserialize::deserialize(document)?;
            if object["kind"] == "Provider" {
                object["spec"]["plugin"]["sha256"] = Value::String(digest.to_owned());
            }
            let object: DynamicObject = serde_json::from_value(object)?;
            let kind = object.types.as_ref().map(|t| t.kind.clone()).unwrap_or_default();
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource(&kind));
            api.create(&PostParams::default(), &object)
                .await
                .with_context(|| format!("applying {}", path.display()))?;
            println!("applied {kind} {}", object.metadata.name.unwrap_or_default());
        }
    }
    Ok(())
}

const KINDS: [&str; 6] = ["Provider", "Pipeline", "Experiment", "RunConfiguration", "RunSchedule", "Run"];

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("pipelines.kubeflow.org", "v1beta1", kind))
}

/// The state of every resource, and whether all are Succeeded (Runs also completed).
async fn table(client: &Client) -> anyhow::Result<(String, bool)> {
    let mut lines = vec![format!("{:<18} {:<40} {:<14} {:<14} {}", "KIND", "NAME", "STATE", "COMPLETION", "MESSAGE")];
    let mut done = true;
    for kind in KINDS {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &resource(kind));
        for object in api.list(&ListParams::default()).await?.items {
            let status = &object.data["status"];
            let condition = status["conditions"].as_array().and_then(|c| c.first()).cloned().unwrap_or(Value::Null);
            let state = condition["reason"].as_str().unwrap_or("-").to_owned();
            let completion =
                status["completionState"].as_str().unwrap_or(if kind == "Run" { "-" } else { "" }).to_owned();
            let message: String = condition["message"].as_str().unwrap_or_default().chars().take(60).collect();
            done &= state == "Succeeded" && (kind != "Run" || completion == "Succeeded");
            lines.push(format!(
                "{kind:<18} {:<40} {state:<14} {completion:<14} {message}",
                object.metadata.name.unwrap_or_default()
            ));
        }
    }
    Ok((lines.join("\n"), done && lines.len() > 1))
}
