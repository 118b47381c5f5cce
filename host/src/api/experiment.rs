//! `Experiment` (reference 1.4): a named group of runs on the platform.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::Status,
    hashing::{ObjectHasher, short_version},
    names::NamespacedName,
};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.kubeflow.org",
    version = "v1beta1",
    kind = "Experiment",
    doc = "An experiment on the ML platform, grouping runs.",
    namespaced,
    status = "Status",
    shortname = "mlexp",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider.name"}"#,
    printcolumn = r#"{"name":"SynchronizationState","type":"string","jsonPath":".status.conditions[?(@.type==\"Synchronized\")].reason"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentSpec {
    /// The Provider that manages this experiment, as `namespace/name`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub provider: NamespacedName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Experiment {
    pub fn compute_hash(&self) -> [u8; 20] {
        let mut hasher = ObjectHasher::new();
        hasher.write_str(&self.spec.description);
        hasher.finish()
    }

    pub fn compute_version(&self) -> String {
        short_version(&self.compute_hash())
    }
}
