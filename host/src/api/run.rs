//! `Run` (reference 1.5): a one-off pipeline run, and the `RunSpec` that RunConfigurations use
//! as their template.

use std::{cmp::Ordering, collections::BTreeMap};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::{OutputArtifact, RunReference, Status},
    hashing::{ObjectHasher, short_version},
    names::{NamespacedName, PipelineIdentifier},
};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.kubeflow.org",
    version = "v1beta1",
    kind = "Run",
    doc = "A one-off run of a pipeline. Its spec is immutable.",
    namespaced,
    status = "RunStatus",
    shortname = "mlr",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider.name"}"#,
    printcolumn = r#"{"name":"SynchronizationState","type":"string","jsonPath":".status.conditions[?(@.type==\"Synchronized\")].reason"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"CompletionState","type":"string","jsonPath":".status.completionState"}"#,
    validation = Rule::new("self.spec == oldSelf.spec").message(
        "the spec of a Run is immutable: delete the Run and create a new one to change it"
    ).reason(Reason::FieldValueForbidden).field_path(".spec")
)]
#[serde(rename_all = "camelCase")]
pub struct RunSpec {
    /// The Provider that runs the pipeline, as `namespace/name`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub provider: NamespacedName,
    /// `name` (the latest Succeeded version of that Pipeline) or `name:version` (pinned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineIdentifier>,
    /// The Experiment to run in; the Provider's default experiment when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub experiment_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Artifacts to expose in run completion events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<OutputArtifact>,
}

/// A runtime parameter: a literal `value`, or `valueFrom` an artifact of another
/// RunConfiguration's latest successful run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.valueFrom) || !has(self.value) || self.value == ''")
    .message("a parameter takes exactly one of value or valueFrom: remove one of them")
    .reason(Reason::FieldValueInvalid))]
pub struct Parameter {
    pub name: String,
    /// An empty value is the same as none, as upstream writes it with `omitempty`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueFrom>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValueFrom {
    pub run_configuration_ref: RunConfigurationRef,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunConfigurationRef {
    /// The RunConfiguration, as `name` (same namespace) or `namespace/name`.
    pub name: NamespacedName,
    /// The name of one of its `spec.run.artifacts`.
    pub output_artifact: String,
    /// When true, the parameter is left out instead of failing while the artifact is missing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A Run's status: the common status plus its dependencies and completion.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    #[serde(flatten)]
    pub status: Status,
    #[serde(default, skip_serializing_if = "Dependencies::is_empty")]
    pub dependencies: Dependencies,
    /// `Succeeded` or `Failed` once the remote run has finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_state: Option<CompletionState>,
    /// When the operator first saw the run complete; the base of `runCompletionTTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marked_completed_at: Option<Time>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CompletionState {
    Succeeded,
    Failed,
}

/// What a Run or RunConfiguration depends on, as resolved by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Dependencies {
    /// Latest succeeded runs of the referenced RunConfigurations, keyed as written in the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_configurations: BTreeMap<String, RunReference>,
    #[serde(default, skip_serializing_if = "ObservedPipeline::is_empty")]
    pub pipeline: ObservedPipeline,
}

impl Dependencies {
    pub fn is_empty(&self) -> bool {
        self.run_configurations.is_empty() && self.pipeline.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ObservedPipeline {
    /// The pipeline version used (pinned, or the latest Succeeded one when first resolved).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

impl ObservedPipeline {
    pub fn is_empty(&self) -> bool {
        self.version.is_empty()
    }
}

/// Upstream's `cmpParameters`: by name, value, literal before reference, then the reference's
/// name, output artifact and required before optional. Upstream compares only the referenced
/// RunConfiguration's name (not its namespace) and so hashes two references that differ only in
/// namespace in input order; comparing the namespace too gives the same result wherever upstream's
/// is deterministic.
fn compare_parameters(a: &Parameter, b: &Parameter) -> Ordering {
    a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)).then_with(|| match (&a.value_from, &b.value_from) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => {
            let (a, b) = (&a.run_configuration_ref, &b.run_configuration_ref);
            a.name
                .name
                .cmp(&b.name.name)
                .then_with(|| a.name.namespace.cmp(&b.name.namespace))
                .then_with(|| a.output_artifact.cmp(&b.output_artifact))
                .then_with(|| a.optional.cmp(&b.optional))
        }
    })
}

fn write_parameter(hasher: &mut ObjectHasher, parameter: &Parameter) {
    hasher.write_str(&parameter.name);
    hasher.write_str(&parameter.value);
    if let Some(value_from) = &parameter.value_from {
        let reference = &value_from.run_configuration_ref;
        hasher.write_str(&reference.name.name);
        hasher.write_str(&reference.name.namespace);
        hasher.write_str(&reference.output_artifact);
        hasher.write_str(if reference.optional { "true" } else { "false" });
    }
}

impl RunSpec {
    /// Upstream's `WriteRunSpec`: the part of a Run's hash that comes from its spec.
    pub fn write_to(&self, hasher: &mut ObjectHasher) {
        hasher.write_str(&self.pipeline.as_ref().map(ToString::to_string).unwrap_or_default());
        hasher.write_str(&self.experiment_name);
        hasher.write_list(&self.parameters, compare_parameters, write_parameter);
        hasher.write_kv_list(self.artifacts.iter().map(|a| (a.name.as_str(), a.path.to_string())));
    }

    /// The version the `onChange: [runSpec]` trigger compares.
    pub fn compute_version(&self) -> String {
        let mut hasher = ObjectHasher::new();
        self.write_to(&mut hasher);
        short_version(&hasher.finish())
    }
}

impl Run {
    /// The spec plus the pipeline version the run is pinned to.
    pub fn compute_hash(&self) -> [u8; 20] {
        let mut hasher = ObjectHasher::new();
        self.spec.write_to(&mut hasher);
        let pinned = self.status.as_ref().map(|s| s.dependencies.pipeline.version.as_str());
        hasher.write_str(pinned.unwrap_or_default());
        hasher.finish()
    }

    pub fn compute_version(&self) -> String {
        short_version(&self.compute_hash())
    }
}
