//! Experiments: one remote experiment each, through the shared synchronisation path.

use super::synced::Synced;
use crate::{
    api::{Experiment, common::Status, names::NamespacedName},
    plugins::{ProviderRequest, bindings::ExperimentDefinition},
};

impl Synced for Experiment {
    const KIND: &'static str = "experiment";

    fn spec_provider(&self) -> &NamespacedName {
        &self.spec.provider
    }

    fn computed_version(&self) -> String {
        self.compute_version()
    }

    fn common_status(&self) -> Status {
        self.status.clone().unwrap_or_default()
    }

    fn create_request(&self, name: String, version: String) -> ProviderRequest {
        ProviderRequest::CreateExperiment { definition: self.definition(name, version) }
    }

    fn update_request(&self, id: String, name: String, version: String) -> ProviderRequest {
        ProviderRequest::UpdateExperiment { id, definition: self.definition(name, version) }
    }

    fn delete_request(id: String) -> ProviderRequest {
        ProviderRequest::DeleteExperiment { id }
    }
}

impl Experiment {
    fn definition(&self, name: String, version: String) -> ExperimentDefinition {
        ExperimentDefinition { name, version, description: self.spec.description.clone() }
    }
}
