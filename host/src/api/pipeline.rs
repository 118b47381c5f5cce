//! `Pipeline` (reference 1.2): a user's pipeline image, compiled by its framework's compiler
//! and uploaded to the platform by the Provider.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::{JsonMap, NamedValue, Status, json_map_schema},
    hashing::{ObjectHasher, docker_image_tag, short_version},
    names::NamespacedName,
};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.kubeflow.org",
    version = "v1beta1",
    kind = "Pipeline",
    doc = "A pipeline: its image, compile-time environment and framework; compiled and uploaded to the platform by its Provider.",
    namespaced,
    status = "Status",
    shortname = "mlp",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider.name"}"#,
    printcolumn = r#"{"name":"SynchronizationState","type":"string","jsonPath":".status.conditions[?(@.type==\"Synchronized\")].reason"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// The Provider that manages this pipeline, as `namespace/name`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub provider: NamespacedName,
    /// The image holding the pipeline code and its framework's dependencies.
    pub image: String,
    /// Environment variables set while the pipeline is compiled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<NamedValue>,
    pub framework: PipelineFramework,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct PipelineFramework {
    /// One of the Provider's `spec.frameworks[].name` (e.g. `tfx`, `kfpsdk`).
    pub name: String,
    /// Framework-specific parameters (tfx: `components`, `beamArgs`; kfpsdk: `pipeline`).
    #[schemars(schema_with = "json_map_schema")]
    pub parameters: JsonMap,
}

impl Pipeline {
    /// Upstream's `Pipeline.ComputeHash`: image, env, framework name and parameters. The
    /// Provider is deliberately not hashed.
    pub fn compute_hash(&self) -> [u8; 20] {
        let spec = &self.spec;
        let mut hasher = ObjectHasher::new();
        hasher.write_str(&spec.image);
        hasher.write_kv_list(spec.env.iter().map(|e| (e.name.as_str(), e.value.clone())));
        hasher.write_str(&spec.framework.name);
        hasher.write_json_map(&spec.framework.parameters);
        hasher.finish()
    }

    /// `<image tag>-<hash>` (e.g. `v1-1a2b3c`), or the bare hash when the image reference
    /// does not parse or pins only a digest.
    pub fn compute_version(&self) -> String {
        let hash = short_version(&self.compute_hash());
        match docker_image_tag(&self.spec.image) {
            Some(tag) => format!("{tag}-{hash}"),
            None => hash,
        }
    }
}
