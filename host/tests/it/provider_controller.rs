//! The Provider controller on the real control plane: Providers load their plugins and say so
//! in their status and Events; a broken reload keeps the last good version and says which; a
//! Provider without a plugin fails with what to do; a ConfigMap that appears later is picked
//! up through the watch; removed frameworks and deleted Providers are forgotten.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString,
    api::{core::v1::ConfigMap, events::v1::Event},
};
use kfp_operator::{
    api::{Provider, conditions::SynchronizationState, provider::ProviderStatus},
    controllers::{Context, provider},
    plugins::{PluginRegistry, Sandbox, sha256_hex, source::OciSettings},
};
use kfp_test_support::plugins;
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::support::setup;

async fn put_config_map(client: &Client, namespace: &str, name: &str, data: &[(&str, Vec<u8>)]) {
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some(name.into());
    config_map.binary_data =
        Some(data.iter().map(|(key, bytes)| (key.to_string(), ByteString(bytes.clone()))).collect::<BTreeMap<_, _>>());
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .patch(name, &PatchParams::apply("kfp-test").force(), &Patch::Apply(&config_map))
        .await
        .unwrap();
}

/// Waits until the Provider's status satisfies `done`, or fails with the last status seen.
async fn wait_for(
    api: &Api<Provider>,
    name: &str,
    what: &str,
    done: impl Fn(&ProviderStatus) -> bool,
) -> ProviderStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = api.get(name).await.unwrap().status.unwrap_or_default();
        if done(&status) {
            return status;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("Provider {name} did not become {what}; status: {status:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn provider_object(name: &str, spec: serde_json::Value) -> Provider {
    let object = json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Provider", "metadata": { "name": name }, "spec": spec });
    serde_json::from_value(object).unwrap()
}

fn message(status: &ProviderStatus) -> &str {
    status.status.conditions.first().map(|c| c.message.as_str()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_load_their_plugins_and_report_it() {
    let (client, namespace) = setup("provider-controller").await;
    let registry =
        Arc::new(PluginRegistry::new(Sandbox::new().unwrap(), client.clone(), OciSettings::default(), None, None));
    let context = Arc::new(Context::new(client.clone(), registry.clone()));
    let watched = namespace.clone();
    let controller = tokio::spawn(async move { provider::run(context, Some(&watched)).await });
    let providers: Api<Provider> = Api::namespaced(client.clone(), &namespace);

    let (stub, compiler) = (plugins::bytes("stub_provider"), plugins::bytes("stub_compiler"));
    put_config_map(
        &client,
        &namespace,
        "plugins",
        &[("provider.wasm", stub.clone()), ("compiler.wasm", compiler.clone())],
    )
    .await;
    let provider: Provider = provider_object(
        "stub",
        json!({
            "pipelineRootStorage": "gs://root",
            "plugin": { "configMap": { "name": "plugins", "key": "provider.wasm" }, "sha256": sha256_hex(&stub) },
            "frameworks": [{ "name": "tfx", "plugin": { "configMap": { "name": "plugins", "key": "compiler.wasm" }, "sha256": sha256_hex(&compiler) } }],
        }),
    );
    providers.create(&PostParams::default(), &provider).await.unwrap();

    let status = wait_for(&providers, "stub", "Succeeded", |s| {
        s.status.synchronization_state() == SynchronizationState::Succeeded
    })
    .await;
    let plugin = status.plugin.expect("the loaded plugin");
    assert_eq!(
        (plugin.sha256.as_str(), plugin.world.as_str()),
        (sha256_hex(&stub).as_str(), "kfp:operator/provider@0.1.0")
    );
    assert_eq!(status.frameworks.len(), 1);
    assert_eq!(
        (status.frameworks[0].name.as_str(), status.frameworks[0].world.as_str()),
        ("tfx", "kfp:operator/compiler@0.1.0")
    );
    assert_eq!(status.status.observed_generation, Some(1));
    assert!(registry.get(&provider::plugin_key(&namespace, "stub")).is_some());

    // A broken update: Failed with the loader's message, the last good version still serving.
    let garbage = b"not a component".to_vec();
    put_config_map(
        &client,
        &namespace,
        "plugins",
        &[("provider.wasm", garbage.clone()), ("compiler.wasm", compiler.clone())],
    )
    .await;
    let pin = json!({ "spec": { "plugin": { "sha256": sha256_hex(&garbage) } } });
    providers.patch("stub", &PatchParams::default(), &Patch::Merge(pin)).await.unwrap();
    let status =
        wait_for(&providers, "stub", "Failed", |s| s.status.synchronization_state() == SynchronizationState::Failed)
            .await;
    assert!(message(&status).contains("not a WebAssembly component"), "{}", message(&status));
    assert!(message(&status).contains(&format!("sha256:{}, keeps serving", sha256_hex(&stub))), "{}", message(&status));
    assert_eq!(status.plugin.unwrap().sha256, sha256_hex(&stub));
    assert_eq!(status.status.observed_generation, Some(2));

    // Events with upstream's reasons (published off the reconcile path, so polled for).
    let events: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reasons: Vec<String> = events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("stub"))
            .filter_map(|e| e.reason)
            .collect();
        if reasons.contains(&"Synced".to_owned()) && reasons.contains(&"SyncFailed".to_owned()) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "Events of Provider stub: {reasons:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An upstream manifest without a plugin: Failed with what to do.
    let legacy: Provider = provider_object(
        "legacy",
        json!({ "pipelineRootStorage": "gs://root", "serviceImage": "kfp-provider:1.0", "serviceAccount": "kfp" }),
    );
    providers.create(&PostParams::default(), &legacy).await.unwrap();
    let status =
        wait_for(&providers, "legacy", "Failed", |s| s.status.synchronization_state() == SynchronizationState::Failed)
            .await;
    assert!(message(&status).contains("spec.plugin is not set"), "{}", message(&status));

    // A ConfigMap created after its Provider is picked up by the watch, well before the retry.
    let late: Provider = provider_object(
        "late",
        json!({
            "pipelineRootStorage": "gs://root",
            "plugin": { "configMap": { "name": "late-plugin", "key": "plugin.wasm" }, "sha256": sha256_hex(&stub) },
        }),
    );
    providers.create(&PostParams::default(), &late).await.unwrap();
    let status =
        wait_for(&providers, "late", "Failed", |s| s.status.synchronization_state() == SynchronizationState::Failed)
            .await;
    assert!(message(&status).contains("late-plugin not found"), "{}", message(&status));
    let started = tokio::time::Instant::now();
    put_config_map(&client, &namespace, "late-plugin", &[("plugin.wasm", stub.clone())]).await;
    wait_for(&providers, "late", "Succeeded", |s| s.status.synchronization_state() == SynchronizationState::Succeeded)
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}: the ConfigMap watch did not trigger",
        started.elapsed()
    );

    // A framework removed from the spec stops serving; so do the plugins of a deleted Provider,
    // and nothing else.
    let compiler_key = provider::framework_plugin_key(&namespace, "stub", "tfx");
    assert!(registry.get(&compiler_key).is_some());
    providers
        .patch("stub", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "frameworks": [] } })))
        .await
        .unwrap();
    wait_for(&providers, "stub", "without frameworks", |s| s.frameworks.is_empty()).await;
    assert!(registry.get(&compiler_key).is_none(), "the removed framework's compiler is forgotten");
    providers.delete("stub", &Default::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while registry.get(&provider::plugin_key(&namespace, "stub")).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the deleted Provider's plugin is still loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(registry.get(&provider::plugin_key(&namespace, "late")).is_some(), "other Providers keep theirs");

    controller.abort();
}
