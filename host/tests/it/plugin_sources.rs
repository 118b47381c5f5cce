//! Plugin distribution: ConfigMap sources on the real control plane with hot reload, and the
//! compiled cache.

use std::{collections::BTreeMap, io::Write, sync::Arc, time::Duration};

use k8s_openapi::{ByteString, api::core::v1::ConfigMap};
use kfp_operator::{
    api::provider::{ConfigMapPluginSource, PluginLimits, PluginSpec},
    plugins::{
        CacheOutcome, CompiledCache, LoadRequest, PluginErrorKind, PluginId, PluginRegistry, ProviderResponse, Sandbox,
        sha256_hex, source::OciSettings,
    },
};
use kfp_test_support::plugins;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
};

use crate::{
    sandbox::{context, create_pipeline},
    support::setup,
};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn put_config_map(client: &Client, namespace: &str, bytes: Vec<u8>) {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some("plugin".into());
    config_map.binary_data = Some(BTreeMap::from([("plugin.wasm".to_owned(), ByteString(bytes))]));
    config_maps
        .patch("plugin", &PatchParams::apply("kfp-test").force(), &Patch::Apply(&config_map))
        .await
        .expect("ConfigMap written");
}

fn spec(sha256: &str) -> PluginSpec {
    PluginSpec {
        config_map: Some(ConfigMapPluginSource { name: "plugin".into(), key: "plugin.wasm".into() }),
        oci: None,
        sha256: sha256.into(),
        limits: PluginLimits::default(),
        allowed_hosts: vec![],
        credentials: vec![],
    }
}

async fn load(registry: &PluginRegistry, namespace: &str, spec: &PluginSpec) -> Result<(), String> {
    let request = LoadRequest { key: "team/stub", namespace, spec, context: context(r#"{"slowCallMillis": 1500}"#) };
    registry.load(request).await.map(|_| ()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_map_plugins_load_and_hot_reload() {
    let (client, namespace) = setup("plugin-configmap").await;
    let registry =
        Arc::new(PluginRegistry::new(Sandbox::new().unwrap(), client.clone(), OciSettings::default(), None, None));

    // Missing ConfigMap: a clear error, nothing serving.
    let stub = plugins::bytes("stub_provider");
    let error = load(&registry, &namespace, &spec(&sha256_hex(&stub))).await.unwrap_err();
    assert!(error.contains(&format!("ConfigMap {namespace}/plugin not found")), "{error}");
    assert!(registry.get("team/stub").is_none());

    // The stub, gzip-compressed in the ConfigMap; the digest is the component's own.
    put_config_map(&client, &namespace, gzip(&stub)).await;
    load(&registry, &namespace, &spec(&sha256_hex(&stub))).await.unwrap();
    let v1 = registry.get("team/stub").expect("the stub serves");
    assert_eq!(
        v1.call_provider(&create_pipeline("p", "i")).await.unwrap(),
        ProviderResponse::Id("pipeline:team/p".into())
    );

    // A slow call starts on v1 ...
    let in_flight = tokio::spawn(async move { v1.call_provider(&create_pipeline("slow-p", "i")).await });
    tokio::time::sleep(Duration::from_millis(200)).await;

    // ... while the ConfigMap and the pinned digest change to another plugin, which is swapped in.
    let hostile = plugins::bytes("hostile_provider");
    put_config_map(&client, &namespace, hostile.clone()).await;
    load(&registry, &namespace, &spec(&sha256_hex(&hostile))).await.unwrap();
    let v2 = registry.get("team/stub").unwrap();
    assert_eq!(v2.call_provider(&create_pipeline("p", "i")).await.unwrap(), ProviderResponse::Id("p".into()));
    // The in-flight call finished on the version it started on.
    assert_eq!(in_flight.await.unwrap().unwrap(), ProviderResponse::Id("pipeline:team/slow-p".into()));

    // A broken update (bytes that are not a component, correctly pinned) keeps v2 serving and
    // is reported.
    let garbage = b"not a component".to_vec();
    put_config_map(&client, &namespace, garbage.clone()).await;
    let error = load(&registry, &namespace, &spec(&sha256_hex(&garbage))).await.unwrap_err();
    assert!(error.contains("not a WebAssembly component"), "{error}");
    let status = registry.status("team/stub");
    assert_eq!(status.sha256.as_deref(), Some(sha256_hex(&hostile).as_str()));
    assert!(status.last_error.unwrap().contains("not a WebAssembly component"));
    assert_eq!(
        registry.get("team/stub").unwrap().call_provider(&create_pipeline("p", "i")).await.unwrap(),
        ProviderResponse::Id("p".into())
    );

    // Changed bytes without a changed digest: refused, with both digests in the message.
    put_config_map(&client, &namespace, stub.clone()).await;
    let error = load(&registry, &namespace, &spec(&sha256_hex(&garbage))).await.unwrap_err();
    assert!(error.contains("sha256 mismatch") && error.contains(&sha256_hex(&stub)), "{error}");
    assert_eq!(registry.status("team/stub").sha256.as_deref(), Some(sha256_hex(&hostile).as_str()));

    // A good load clears the error.
    load(&registry, &namespace, &spec(&sha256_hex(&stub))).await.unwrap();
    assert_eq!(registry.status("team/stub").last_error, None);
}

#[tokio::test]
async fn a_missing_key_names_what_the_config_map_has() {
    let (client, namespace) = setup("plugin-key").await;
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let mut config_map = ConfigMap::default();
    config_map.metadata.name = Some("plugin".into());
    config_map.binary_data = Some(BTreeMap::from([("other.wasm".to_owned(), ByteString(vec![1, 2, 3]))]));
    config_maps.patch("plugin", &PatchParams::apply("kfp-test").force(), &Patch::Apply(&config_map)).await.unwrap();
    let registry = PluginRegistry::new(Sandbox::new().unwrap(), client, OciSettings::default(), None, None);
    let error = load(&registry, &namespace, &spec(&"a".repeat(64))).await.unwrap_err();
    assert!(error.contains("has no binaryData key \"plugin.wasm\" (it has: other.wasm)"), "{error}");
}

#[test]
fn the_compiled_cache_survives_a_restart_and_refuses_tampering() {
    let dir = std::env::temp_dir().join(format!("kfp-cache-test-{}", std::process::id()));
    let bytes = plugins::bytes("stub_provider");
    let id = PluginId { name: "test/stub".into(), sha256: sha256_hex(&bytes) };

    let first = Sandbox::new().unwrap();
    let cache = CompiledCache::open(&dir, first.engine()).unwrap();
    assert_eq!(first.load_cached(&id, &bytes, &cache).unwrap().1, CacheOutcome::Miss);

    // A "restarted" operator: a new engine with the same configuration reuses the entry.
    let second = Sandbox::new().unwrap();
    let cache = CompiledCache::open(&dir, second.engine()).unwrap();
    let (prepared, outcome) = second.load_cached(&id, &bytes, &cache).unwrap();
    assert_eq!((outcome, prepared.world()), (CacheOutcome::Hit, "provider"));

    // The digest is checked even on a hit.
    let wrong = PluginId { sha256: "0".repeat(64), ..id.clone() };
    let error = second.load_cached(&wrong, &bytes, &cache).err().unwrap();
    assert!(matches!(error.kind, PluginErrorKind::DigestMismatch { .. }));

    // A modified entry is detected by its seal and recompiled, never loaded.
    let entry = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .unwrap();
    let mut blob = std::fs::read(&entry).unwrap();
    let middle = blob.len() / 2;
    blob[middle] ^= 0xff;
    std::fs::write(&entry, blob).unwrap();
    assert_eq!(second.load_cached(&id, &bytes, &cache).unwrap().1, CacheOutcome::Miss);
    assert_eq!(second.load_cached(&id, &bytes, &cache).unwrap().1, CacheOutcome::Hit);

    // A cache folder other users can write is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = CompiledCache::open(&dir, second.engine()).err().unwrap();
    assert!(error.to_string().contains("writable by other users"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}
