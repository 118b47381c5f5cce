//! Records shared by several kinds (reference 1.1) and the common `Status`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    conditions::{self, SynchronizationState},
    names::{ArtifactPath, NamespacedName},
};

/// `{name, value}`: an environment variable or a resolved runtime parameter.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct NamedValue {
    pub name: String,
    pub value: String,
}

/// An output artifact to expose in run completion events: `name` ← the artifact at `path`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct OutputArtifact {
    pub name: String,
    pub path: ArtifactPath,
}

/// A produced artifact: its name and where it was written.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct Artifact {
    pub name: String,
    pub location: String,
}

/// A remote run: its id on the platform and the artifacts it produced.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
}

/// Which Provider manages the remote resource, and the resource's id there.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ProviderAndId {
    #[serde(default, skip_serializing_if = "NamespacedName::is_empty")]
    pub name: NamespacedName,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
}

impl ProviderAndId {
    pub fn is_empty(&self) -> bool {
        self.name.is_empty() && self.id.is_empty()
    }
}

/// The status every synchronised kind has (Pipeline, RunSchedule, Experiment, Provider, and
/// inlined in Run). Empty fields are left out, as upstream's `omitempty` does.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default, skip_serializing_if = "ProviderAndId::is_empty")]
    pub provider: ProviderAndId,
    /// The content hash being or last synchronised (reference 1.8).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

impl Status {
    pub fn synchronization_state(&self) -> SynchronizationState {
        conditions::synchronization_state(&self.conditions)
    }
}

/// A map of arbitrary JSON values (framework and provider parameters): the values are kept as
/// they are, which a structural schema has to say explicitly.
pub(crate) fn json_map_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "additionalProperties": { "x-kubernetes-preserve-unknown-fields": true }
    })
}

/// `metav1.Condition` with the validation controller-gen puts on it upstream, so a condition
/// with an empty or malformed reason is refused by the API server as it is there.
pub(crate) fn conditions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": {
            "type": "object",
            "required": ["lastTransitionTime", "message", "reason", "status", "type"],
            "properties": {
                "lastTransitionTime": { "type": "string", "format": "date-time" },
                "message": { "type": "string", "maxLength": 32768 },
                "observedGeneration": { "type": "integer", "format": "int64", "minimum": 0 },
                "reason": {
                    "type": "string",
                    "maxLength": 1024,
                    "minLength": 1,
                    "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
                },
                "status": { "type": "string", "enum": ["True", "False", "Unknown"] },
                "type": {
                    "type": "string",
                    "maxLength": 316,
                    "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
                }
            }
        }
    })
}

/// Framework or provider parameters: free-form JSON per key.
pub type JsonMap = BTreeMap<String, Value>;

impl NamespacedName {
    pub fn is_empty(&self) -> bool {
        self.namespace.is_empty() && self.name.is_empty()
    }
}
