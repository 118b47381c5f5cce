//! Every manifest in `examples/` is accepted by the real API server and reads back into the
//! operator's types unchanged.

use kfp_operator::api::{Experiment, Pipeline, Provider, Run, RunConfiguration, RunSchedule};
use kube::{
    Api, Client, Resource,
    api::{DynamicObject, PostParams},
    core::NamespaceResourceScope,
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::Value;

use crate::support::{dynamic_api, setup};

#[tokio::test]
async fn every_example_is_accepted_and_reads_back() {
    let (client, namespace) = setup("examples").await;
    let dir = kfp_test_support::repo_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|path| path.extension().is_some_and(|ext| ext == "yaml"));
    files.sort();

    let mut kinds_seen = Vec::new();
    let mut plugin_sources_seen = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let object = Value::deserialize(document).unwrap();
            let kind = object["kind"].as_str().unwrap_or_default().to_owned();
            let context = format!("{} ({kind})", path.display());
            match kind.as_str() {
                "Pipeline" => {
                    apply::<Pipeline>(&client, &namespace, &object, &context).await;
                }
                "Experiment" => {
                    apply::<Experiment>(&client, &namespace, &object, &context).await;
                }
                "Run" => {
                    apply::<Run>(&client, &namespace, &object, &context).await;
                }
                "RunConfiguration" => {
                    apply::<RunConfiguration>(&client, &namespace, &object, &context).await;
                }
                "RunSchedule" => {
                    apply::<RunSchedule>(&client, &namespace, &object, &context).await;
                }
                "Provider" => {
                    let provider = apply::<Provider>(&client, &namespace, &object, &context).await;
                    let plugin = provider.spec.plugin.expect("example Providers name a plugin");
                    plugin_sources_seen.push(if plugin.config_map.is_some() { "configMap" } else { "oci" });
                }
                other => panic!("{context}: unexpected kind {other:?}"),
            }
            kinds_seen.push(kind);
        }
    }
    kinds_seen.sort();
    kinds_seen.dedup();
    assert_eq!(kinds_seen, ["Experiment", "Pipeline", "Provider", "Run", "RunConfiguration", "RunSchedule"]);
    plugin_sources_seen.sort();
    assert_eq!(plugin_sources_seen, ["configMap", "oci"], "one example Provider per plugin source");
}

/// Creates the example, then reads it back typed and checks the spec survived the round trip.
async fn apply<K>(client: &Client, namespace: &str, object: &Value, context: &str) -> K
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug
        + HasSpec,
{
    let expected: K = serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{context}: {e}"));
    let dynamic: DynamicObject = serde_json::from_value(object.clone()).unwrap();
    dynamic_api::<K>(client, namespace)
        .create(&PostParams::default(), &dynamic)
        .await
        .unwrap_or_else(|e| panic!("{context} was refused by the API server: {e}"));
    let typed: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object["metadata"]["name"].as_str().unwrap();
    let stored = typed.get(name).await.unwrap_or_else(|e| panic!("{context}: reading back: {e}"));
    assert_eq!(
        stored.spec_json(),
        expected.spec_json(),
        "{context}: the spec changed on the way through the API server"
    );
    stored
}

/// The spec as JSON, to compare what was sent with what was stored.
trait HasSpec {
    fn spec_json(&self) -> Value;
}

macro_rules! has_spec {
    ($($kind:ty),*) => {$(
        impl HasSpec for $kind {
            fn spec_json(&self) -> Value {
                serde_json::to_value(&self.spec).unwrap()
            }
        }
    )*};
}
has_spec!(Pipeline, Experiment, Run, RunConfiguration, RunSchedule, Provider);
