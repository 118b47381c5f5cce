//! Helpers shared by the integration tests.

use kfp_operator::{api::Provider, plugins::sha256_hex};
use kfp_test_support::{http_server::RecordingServer, plugins};
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, PostParams},
};
use serde_json::{Value, json};

/// A client of the shared control plane and a fresh namespace for one test.
pub async fn setup(prefix: &str) -> (Client, String) {
    let client = kfp_test_support::shared_client().await;
    let namespace = kfp_test_support::test_namespace(&client, prefix).await.expect("a test namespace");
    (client, namespace)
}

/// An untyped API for kind `K`, so tests can send objects the Rust types would refuse to
/// build (that is the point of a validation test).
pub fn dynamic_api<K: Resource<DynamicType = ()>>(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

/// Creates `object` (JSON with apiVersion, kind, metadata, spec) as kind `K`.
pub async fn create<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
    object: Value,
) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(object).expect("a well-formed object");
    dynamic_api::<K>(client, namespace).create(&PostParams::default(), &object).await
}

/// Asserts the API server refused the object as invalid (422) with `message` in its reason.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, kube::Error>, message: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert!(
                status.message.contains(message),
                "the API server's message does not say {message:?}:\n{}",
                status.message
            );
        }
        other => {
            panic!("expected the API server to refuse the object with {message:?}, got {other:?}")
        }
    }
}

/// Creates ConfigMap `plugins-<name>` holding `plugin` (e.g. `stub_provider`) and the stub
/// compiler, and Provider `name` using the plugin, with `extra` merged into its spec.
pub async fn create_provider(client: &Client, namespace: &str, name: &str, plugin: &str, extra: Value) {
    let bytes = plugins::bytes(plugin);
    let encode = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let config_map_name = if name == "stub" { "plugins".to_owned() } else { format!("plugins-{name}") };
    let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": config_map_name },
        "binaryData": { "provider.wasm": encode(&bytes), "compiler.wasm": encode(&plugins::bytes("stub_compiler")) },
    }))
    .unwrap();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), namespace);
    config_maps.create(&PostParams::default(), &config_map).await.unwrap();
    let mut spec = json!({
        "pipelineRootStorage": "gs://root",
        "parameters": { "runDurationSeconds": 1 },
        "plugin": { "configMap": { "name": config_map_name, "key": "provider.wasm" }, "sha256": sha256_hex(&bytes) },
    });
    json_patch::merge(&mut spec, &extra);
    let provider: Provider = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Provider", "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap();
    Api::<Provider>::namespaced(client.clone(), namespace).create(&PostParams::default(), &provider).await.unwrap();
}

/// A stub Provider `stub` that reports every remote operation to `recorder`, with `extra`
/// merged into its spec.
pub async fn create_recording_provider(client: &Client, namespace: &str, recorder: &RecordingServer, extra: Value) {
    let mut spec = json!({
        "parameters": { "recordTo": recorder.url("/operations") },
        "plugin": { "allowedHosts": [format!("127.0.0.1:{}", recorder.port())] },
    });
    json_patch::merge(&mut spec, &extra);
    create_provider(client, namespace, "stub", "stub_provider", spec).await;
}

/// The remote operations the stub provider reported, as (action, kind, remote id).
pub fn remote_operations(recorder: &RecordingServer) -> Vec<(String, String, String)> {
    let field = |report: &Value, name: &str| report[name].as_str().unwrap_or_default().to_owned();
    recorder
        .requests()
        .iter()
        .map(|request| {
            let report: Value = serde_json::from_slice(&request.body).expect("a JSON report");
            (field(&report, "action"), field(&report, "kind"), field(&report, "id"))
        })
        .collect()
}
