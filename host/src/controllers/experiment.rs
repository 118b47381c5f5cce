//! Experiments: one remote experiment each, through the shared synchronisation path.

use super::synced::synced_kind;
use crate::{api::Experiment, plugins::bindings::ExperimentDefinition};

synced_kind!(Experiment, "experiment", CreateExperiment, UpdateExperiment, DeleteExperiment);

impl Experiment {
    fn definition(&self, name: String, version: String) -> ExperimentDefinition {
        ExperimentDefinition { name, version, description: self.spec.description.clone() }
    }
}
