//! `RunSchedule` (reference 1.6): a recurring run, normally owned by a RunConfiguration.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    common::{NamedValue, OutputArtifact, Status},
    hashing::{ObjectHasher, go_time_string, short_version},
    names::{NamespacedName, PipelineIdentifier},
};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.kubeflow.org",
    version = "v1beta1",
    kind = "RunSchedule",
    doc = "A recurring run of a pipeline on a cron schedule, normally owned by a RunConfiguration.",
    namespaced,
    status = "Status",
    shortname = "mlrs",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".status.provider.name"}"#,
    printcolumn = r#"{"name":"SynchronizationState","type":"string","jsonPath":".status.conditions[?(@.type==\"Synchronized\")].reason"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RunScheduleSpec {
    /// The Provider that schedules the runs, as `namespace/name`.
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub provider: NamespacedName,
    /// Passed to the Provider as written: a RunSchedule does not resolve the latest version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<PipelineIdentifier>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub experiment_name: String,
    /// Already-resolved runtime parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<NamedValue>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<OutputArtifact>,
    #[serde(default, skip_serializing_if = "Schedule::is_empty")]
    pub schedule: Schedule,
}

/// When runs happen: a cron expression and an optional window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Standard 5-field cron, or 6 fields with leading seconds.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 256))]
    pub cron_expression: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<Time>,
}

impl Schedule {
    pub fn is_empty(&self) -> bool {
        self.cron_expression.is_empty() && self.start_time.is_none() && self.end_time.is_none()
    }
}

impl RunSchedule {
    /// The full hash; the RunConfiguration controller matches desired and existing schedules
    /// by it.
    pub fn compute_hash(&self) -> [u8; 20] {
        let spec = &self.spec;
        let mut hasher = ObjectHasher::new();
        hasher.write_str(&spec.pipeline.as_ref().map(ToString::to_string).unwrap_or_default());
        hasher.write_str(&spec.experiment_name);
        hasher.write_kv_list(spec.parameters.iter().map(|p| (p.name.as_str(), p.value.clone())));
        hasher.write_kv_list(spec.artifacts.iter().map(|a| (a.name.as_str(), a.path.to_string())));
        hasher.write_str(&spec.schedule.cron_expression);
        for time in [&spec.schedule.start_time, &spec.schedule.end_time].into_iter().flatten() {
            hasher.write_str(&go_time_string(&time.0));
        }
        hasher.finish()
    }

    pub fn compute_version(&self) -> String {
        short_version(&self.compute_hash())
    }
}
