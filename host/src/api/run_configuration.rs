//! `RunConfiguration` (reference 1.7): a run template with triggers (schedules, changes of the
//! pipeline or the template, and successful runs of other RunConfigurations).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::{RunReference, conditions_schema},
    conditions::{self, SynchronizationState},
    names::NamespacedName,
    run::{Dependencies, RunSpec},
    run_schedule::Schedule,
};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.kubeflow.org",
    version = "v1beta1",
    kind = "RunConfiguration",
    doc = "A run template with triggers: schedules, changes of the pipeline or the template, and successful runs of other RunConfigurations.",
    namespaced,
    status = "RunConfigurationStatus",
    shortname = "mlrc",
    printcolumn = r#"{"name":"SynchronizationState","type":"string","jsonPath":".status.conditions[?(@.type==\"Synchronized\")].reason"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RunConfigurationSpec {
    /// The template of every Run and RunSchedule this RunConfiguration creates.
    pub run: RunSpec,
    #[serde(default, skip_serializing_if = "Triggers::is_empty")]
    pub triggers: Triggers,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Triggers {
    /// One RunSchedule per entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(t, t == s))")
        .message("spec.triggers.schedules has duplicate entries: each schedule may appear only once")
        .reason(Reason::FieldValueInvalid))]
    pub schedules: Vec<Schedule>,
    /// Start a Run when the pipeline version or the run template changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(validation = Rule::new("self.all(x, self.exists_one(y, y == x))")
        .message("spec.triggers.onChange has duplicate entries: list pipeline and runSpec at most once each")
        .reason(Reason::FieldValueInvalid))]
    pub on_change: Vec<OnChangeType>,
    /// Start a Run whenever one of these RunConfigurations (`name` or `namespace/name`)
    /// completes a run successfully.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_configurations: Vec<NamespacedName>,
}

impl Triggers {
    pub fn is_empty(&self) -> bool {
        self.schedules.is_empty() && self.on_change.is_empty() && self.run_configurations.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnChangeType {
    Pipeline,
    RunSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunConfigurationStatus {
    /// The Provider last used (`spec.run.provider`), to detect a change of Provider.
    #[serde(default, skip_serializing_if = "NamespacedName::is_empty")]
    pub provider: NamespacedName,
    #[serde(default, skip_serializing_if = "LatestRuns::is_empty")]
    pub latest_runs: LatestRuns,
    #[serde(default, skip_serializing_if = "Dependencies::is_empty")]
    pub dependencies: Dependencies,
    #[serde(default, skip_serializing_if = "TriggersStatus::is_empty")]
    pub triggers: TriggersStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
}

impl RunConfigurationStatus {
    pub fn synchronization_state(&self) -> SynchronizationState {
        conditions::synchronization_state(&self.conditions)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LatestRuns {
    #[serde(default, skip_serializing_if = "is_empty_reference")]
    pub succeeded: RunReference,
}

impl LatestRuns {
    pub fn is_empty(&self) -> bool {
        is_empty_reference(&self.succeeded)
    }
}

fn is_empty_reference(reference: &RunReference) -> bool {
    reference == &RunReference::default()
}

/// What has already triggered a Run, so each trigger fires once per change.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggersStatus {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub run_configurations: BTreeMap<String, TriggeredRunReference>,
    #[serde(default, skip_serializing_if = "VersionReference::is_empty")]
    pub run_spec: VersionReference,
    #[serde(default, skip_serializing_if = "VersionReference::is_empty")]
    pub pipeline: VersionReference,
}

impl TriggersStatus {
    pub fn is_empty(&self) -> bool {
        self.run_configurations.is_empty() && self.run_spec.is_empty() && self.pipeline.is_empty()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggeredRunReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct VersionReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

impl VersionReference {
    pub fn is_empty(&self) -> bool {
        self.version.is_empty()
    }
}
