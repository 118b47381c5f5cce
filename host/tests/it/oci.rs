//! OCI distribution end to end with a real registry: the stub provider is pushed as a Wasm OCI
//! artifact, pulled by digest and called; a wrong digest and a tampered blob are refused.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kfp_operator::{
    api::provider::{OciPluginSource, PluginLimits, PluginSpec},
    plugins::{LoadRequest, PluginRegistry, ProviderResponse, Sandbox, sha256_hex, source::OciSettings},
};
use kfp_test_support::{oci_registry::OciRegistry, plugins};
use kube::{Api, api::PostParams};
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
async fn push(registry: &OciRegistry, name: &str, bytes: Vec<u8>, auth: &RegistryAuth) -> (String, String) {
    let client = WasmClient::new(oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(vec![registry.host()]),
        ..ClientConfig::default()
    }));
    let reference: Reference = format!("{}/kfp/{name}:v1", registry.host()).parse().unwrap();
    let layer_digest = format!("sha256:{}", sha256_hex(&bytes));
    let (config, layer) = WasmConfig::from_raw_component(bytes, None).unwrap();
    client.push(&reference, auth, layer, config, None).await.expect("pushed");
    let manifest = client.fetch_manifest_digest(&reference, auth).await.unwrap();
    (manifest, layer_digest)
}

fn oci_spec(reference: String, sha256: String) -> PluginSpec {
    oci_spec_with_secret(reference, sha256, None)
}

fn oci_spec_with_secret(reference: String, sha256: String, pull_secret: Option<&str>) -> PluginSpec {
    PluginSpec {
        config_map: None,
        oci: Some(OciPluginSource { reference, pull_secret: pull_secret.map(str::to_owned) }),
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
    let (manifest, layer) = push(&registry, "stub-provider", stub.clone(), &RegistryAuth::Anonymous).await;
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

/// A registry that requires a login: pulled with the Provider's dockerconfigjson Secret,
/// refused without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_registries_are_pulled_with_the_pull_secret() {
    let (client, namespace) = setup("oci-auth").await;
    let registry = OciRegistry::start_with_login("robot", "registry-password").expect("a registry with a login");
    let login = RegistryAuth::Basic("robot".into(), "registry-password".into());
    let stub = plugins::bytes("stub_provider");
    let (manifest, _) = push(&registry, "stub-provider", stub.clone(), &login).await;
    let reference = format!("{}/kfp/stub-provider@{manifest}", registry.host());

    let docker_config = serde_json::json!({ "auths": { registry.host(): {
        "auth": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "robot:registry-password"),
    }}});
    let mut secret = Secret::default();
    secret.metadata.name = Some("registry-login".into());
    secret.type_ = Some("kubernetes.io/dockerconfigjson".into());
    secret.data =
        Some(BTreeMap::from([(".dockerconfigjson".to_owned(), ByteString(docker_config.to_string().into_bytes()))]));
    Api::<Secret>::namespaced(client.clone(), &namespace).create(&PostParams::default(), &secret).await.unwrap();

    let settings = OciSettings { insecure_registries: vec![registry.host()] };
    let plugins_registry = PluginRegistry::new(Sandbox::new().unwrap(), client, settings, None, None);
    let load = async |key: &str, secret: Option<&str>| {
        let spec = oci_spec_with_secret(reference.clone(), sha256_hex(&stub), secret);
        let request = LoadRequest { key, namespace: &namespace, spec: &spec, context: context("{}") };
        plugins_registry.load(request).await.map(|_| ()).map_err(|e| e.to_string())
    };

    load("team/with-login", Some("registry-login")).await.expect("pulled with the Secret's login");
    let handle = plugins_registry.get("team/with-login").unwrap();
    assert_eq!(
        handle.call_provider(&create_pipeline("p", "i")).await.unwrap(),
        ProviderResponse::Id("pipeline:team/p".into())
    );

    let error = load("team/anonymous", None).await.unwrap_err();
    assert!(error.contains("Not authorized") && error.contains("set spec.plugin.oci.pullSecret"), "{error}");
    let error = load("team/missing-secret", Some("no-such-secret")).await.unwrap_err();
    assert!(error.contains(&format!("pull secret {namespace}/no-such-secret: not found")), "{error}");
}
