//! The `pipelines.kubeflow.org/v1beta1` API: the six kinds, their shared encodings, the
//! version hashes and the `Synchronized` condition, matching upstream field for field
//! (reference chapter 1).

pub mod common;
pub mod conditions;
pub mod crds;
pub mod experiment;
pub mod hashing;
pub mod names;
pub mod pipeline;
pub mod provider;
pub mod run;
pub mod run_configuration;
pub mod run_schedule;
#[cfg(test)]
mod vectors;

pub use experiment::{Experiment, ExperimentSpec};
pub use pipeline::{Pipeline, PipelineSpec};
pub use provider::{Provider, ProviderSpec};
pub use run::{Run, RunSpec};
pub use run_configuration::{RunConfiguration, RunConfigurationSpec};
pub use run_schedule::{RunSchedule, RunScheduleSpec};

pub const GROUP: &str = "pipelines.kubeflow.org";
pub const VERSION: &str = "v1beta1";

/// Labels on Runs and RunSchedules a RunConfiguration creates (upstream reference 1.11).
pub const RUN_CONFIGURATION_LABEL: &str = "pipelines.kubeflow.org/runconfiguration.name";
pub const TRIGGER_TYPE_LABEL: &str = "pipelines.kubeflow.org/trigger-type";
pub const TRIGGER_SOURCE_LABEL: &str = "pipelines.kubeflow.org/trigger-source";
pub const TRIGGER_SOURCE_NAMESPACE_LABEL: &str = "pipelines.kubeflow.org/trigger-source-namespace";

/// Set on Pipeline, Run, RunSchedule and Experiment so the remote resource is cleaned up
/// before the object goes away.
pub const FINALIZER: &str = "finalizer.pipelines.kubeflow.org";
