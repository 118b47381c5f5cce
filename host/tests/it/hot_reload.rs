//! Hot reload of a Provider's plugin while resources synchronise through it, on the real control
//! plane: a call in flight during the swap finishes on the old version, the resources created
//! around the swap all synchronise (none fails, none is created twice remotely), and a broken
//! step on the way (the Provider's pin moved before the ConfigMap has the new build) keeps the
//! old version serving.

use std::time::Duration;

use k8s_openapi::api::{core::v1::ConfigMap, events::v1::Event};
use kfp_operator::{
    api::{Experiment, Provider, conditions::SynchronizationState},
    plugins::sha256_hex,
};
use kfp_test_support::{http_server::RecordingServer, plugins};
use kube::{
    Api, Client,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::{
    experiment_controller::{experiment, start},
    support::{create_recording_provider, remote_operations, setup},
};

/// The stub provider with a custom section appended: the same behaviour under another digest,
/// as a rebuilt plugin would be.
fn stub_rebuilt() -> Vec<u8> {
    let mut bytes = plugins::bytes("stub_provider");
    let (name, payload) = (b"kfp-test-build", b"2");
    // A custom section: id 0, then the size of (name length, name, payload); all sizes fit in
    // one LEB128 byte here.
    let size = 1 + name.len() + payload.len();
    bytes.extend([0, size as u8, name.len() as u8]);
    bytes.extend(name);
    bytes.extend(payload);
    bytes
}

async fn eventually(what: &str, mut done: impl AsyncFnMut() -> Result<(), String>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match done().await {
            Ok(()) => return,
            Err(seen) if tokio::time::Instant::now() > deadline => panic!("{what}; last seen: {seen}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn provider_digest(providers: &Api<Provider>) -> (SynchronizationState, String, String) {
    let status = providers.get("stub").await.unwrap().status.unwrap_or_default();
    let message = status.status.conditions.first().map(|c| c.message.clone()).unwrap_or_default();
    (status.status.synchronization_state(), status.plugin.map(|p| p.sha256).unwrap_or_default(), message)
}

async fn create_experiments(client: &Client, namespace: &str, names: impl Iterator<Item = String>) {
    let experiments: Api<Experiment> = Api::namespaced(client.clone(), namespace);
    for name in names {
        experiments.create(&PostParams::default(), &experiment(namespace, &name, "stub")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_plugin_reloads_while_resources_synchronise() {
    let (client, ns) = setup("hot-reload").await;
    let recorder = RecordingServer::start();
    let _controllers = start::<Experiment>(&client, &ns).await;
    create_recording_provider(&client, &ns, &recorder, json!({})).await;
    let (old, new) = (sha256_hex(&plugins::bytes("stub_provider")), sha256_hex(&stub_rebuilt()));
    let providers: Api<Provider> = Api::namespaced(client.clone(), &ns);
    eventually("the Provider loads the first version", async || {
        let seen = provider_digest(&providers).await;
        if seen.0 == SynchronizationState::Succeeded && seen.1 == old { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;

    // A create in flight: the stub reports it to the recorder, which holds its answer.
    recorder.hold();
    create_experiments(&client, &ns, ["in-flight".to_owned()].into_iter()).await;
    eventually("the in-flight create reaches the plugin", async || {
        let operations = remote_operations(&recorder);
        if operations.is_empty() { Err("no operation yet".into()) } else { Ok(()) }
    })
    .await;

    // The Provider pins the new build before the ConfigMap has it: the load fails on the
    // digest and the old version keeps serving, saying so. Then the ConfigMap gets the new
    // build, and its watch reloads the Provider.
    let pin = json!({ "spec": { "plugin": { "sha256": new } } });
    providers.patch("stub", &PatchParams::default(), &Patch::Merge(pin)).await.unwrap();
    eventually("the Provider reports the mismatch and keeps the old version", async || {
        let seen = provider_digest(&providers).await;
        let keeps = seen.2.contains(&format!("sha256:{old}, keeps serving"));
        if seen.0 == SynchronizationState::Failed && keeps { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;
    let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, stub_rebuilt());
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let update = json!({ "binaryData": { "provider.wasm": encoded } });
    config_maps.patch("plugins", &PatchParams::default(), &Patch::Merge(update)).await.unwrap();
    eventually("the Provider serves the new version", async || {
        let seen = provider_digest(&providers).await;
        if seen.0 == SynchronizationState::Succeeded && seen.1 == new { Ok(()) } else { Err(format!("{seen:?}")) }
    })
    .await;

    // The held call finishes on the old version; resources keep coming during and after.
    create_experiments(&client, &ns, (0..10).map(|i| format!("around-{i}"))).await;
    recorder.release();
    create_experiments(&client, &ns, (10..20).map(|i| format!("around-{i}"))).await;

    let experiments: Api<Experiment> = Api::namespaced(client.clone(), &ns);
    eventually("every Experiment synchronises", async || {
        let all = experiments.list(&ListParams::default()).await.unwrap().items;
        let pending: Vec<String> = all
            .iter()
            .filter(|e| e.status.as_ref().map(|s| s.synchronization_state()) != Some(SynchronizationState::Succeeded))
            .map(|e| format!("{}: {:?}", e.metadata.name.clone().unwrap_or_default(), e.status))
            .collect();
        if all.len() == 21 && pending.is_empty() { Ok(()) } else { Err(format!("{} of 21: {pending:?}", all.len())) }
    })
    .await;

    // Exactly one remote create per Experiment, and no failure on the way.
    let mut created: Vec<String> =
        remote_operations(&recorder).into_iter().filter(|(action, ..)| action == "create").map(|(.., id)| id).collect();
    created.sort();
    let expected: Vec<String> = {
        let mut names: Vec<String> = (0..20).map(|i| format!("around-{i}")).chain(["in-flight".to_owned()]).collect();
        names.sort();
        names.into_iter().map(|name| format!("experiment:{ns}/{name}")).collect()
    };
    assert_eq!(created, expected, "one remote create per Experiment");
    let failures: Vec<String> = Api::<Event>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("SyncFailed"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Experiment"))
        .filter_map(|e| e.note)
        .collect();
    assert!(failures.is_empty(), "no Experiment failed during the reload: {failures:?}");
}
