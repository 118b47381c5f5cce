//! OCI distribution end to end with a real registry: the stub provider is pushed as a Wasm OCI
//! artifact, pulled by digest and called; a wrong digest and a tampered blob are refused.

use kfp_operator::{
    api::provider::{OciPluginSource, PluginLimits, PluginSpec},
    plugins::{LoadRequest, PluginRegistry, ProviderResponse, Sandbox, sha256_hex, source::OciSettings},
};
use kfp_test_support::{oci_registry::OciRegistry, plugins};
use oci_client::{
    Reference,
    client::{ClientConfig, ClientProtocol},
    secrets::RegistryAuth,
};
use oci_wasm::{WasmClient, WasmConfig};

use crate::{
    sandbox::{context, create_pipeline},
    support::setup,
};

/// Pushes `bytes` as `<registry>/kfp/<name>:v1` and returns the manifest digest and the layer
/// digest.
async fn push(registry: &OciRegistry, name: &str, bytes: Vec<u8>) -> (String, String) {
    let client = WasmClient::new(oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.host()]),
        ..ClientConfig::default()
    }));
    let reference: Reference = format!("{}/kfp/{name}:v1", registry.host()).parse().unwrap();
    let layer_digest = format!("sha256:{}", sha256_hex(&bytes));
    let (config, layer) = WasmConfig::from_raw_component(bytes, None).unwrap();
    client.push(&reference, &RegistryAuth::Anonymous, layer, config, None).await.expect("pushed");
    let manifest = client.fetch_manifest_digest(&reference, &RegistryAuth::Anonymous).await.unwrap();
    (manifest, layer_digest)
}

fn oci_spec(reference: String, sha256: String) -> PluginSpec {
    PluginSpec {
        config_map: None,
        oci: Some(OciPluginSource { reference, pull_secret: None }),
        sha256,
        limits: PluginLimits::default(),
        allowed_hosts: vec![],
        credentials: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_are_pulled_by_digest_and_tampering_is_refused() {
    let (client, namespace) = setup("oci").await;
    let registry = OciRegistry::start().expect("a registry");
    let settings = OciSettings { insecure_registries: vec![registry.host()] };
    let plugins_registry = PluginRegistry::new(Sandbox::new().unwrap(), client, settings, None, None);
    // Each case gets its own key: a key already serving the pinned digest is not re-fetched.
    let load = async |key: &str, spec: &PluginSpec| {
        let request = LoadRequest { key, namespace: &namespace, spec, context: context("{}") };
        plugins_registry.load(request).await.map_err(|e| e.to_string())
    };

    let stub = plugins::bytes("stub_provider");
    let (manifest, layer) = push(&registry, "stub-provider", stub.clone()).await;
    let reference = format!("{}/kfp/stub-provider@{manifest}", registry.host());
    load("team/oci", &oci_spec(reference.clone(), sha256_hex(&stub))).await.expect("pulled and loaded");
    let handle = plugins_registry.get("team/oci").unwrap();
    assert_eq!(
        handle.call_provider(&create_pipeline("p", "i")).await.unwrap(),
        ProviderResponse::Id("pipeline:team/p".into())
    );

    // A manifest digest the registry does not have.
    let missing = format!("{}/kfp/stub-provider@sha256:{}", registry.host(), "1".repeat(64));
    let error = load("team/missing", &oci_spec(missing.clone(), sha256_hex(&stub))).await.unwrap_err();
    assert!(error.contains(&format!("pulling {missing}")), "{error}");

    // The right artifact but a different pinned component digest.
    let error = load("team/wrong-digest", &oci_spec(reference.clone(), "2".repeat(64))).await.unwrap_err();
    assert!(error.contains("sha256 mismatch"), "{error}");

    // The blob changed on the registry's disk: the pull refuses it.
    let blob = registry.blob_path(&layer);
    let mut bytes = std::fs::read(&blob).expect("the layer blob on disk");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();
    let error = load("team/tampered", &oci_spec(reference, sha256_hex(&stub))).await.unwrap_err();
    assert!(error.contains("pulling") && error.to_lowercase().contains("digest"), "{error}");
    assert!(plugins_registry.get("team/tampered").is_none());
    // The version loaded before keeps serving.
    assert!(plugins_registry.get("team/oci").is_some());
}
