//! Runs: before a Run is created remotely, it pins the pipeline version it runs (the version it
//! names, or the latest Succeeded one) and records the latest succeeded runs of the
//! RunConfigurations its parameters take artifacts from; both are frozen once known, so the
//! Run's version hash never moves. Unresolvable dependencies leave the Run waiting with the
//! reason, never `Succeeded` (a deliberate fix of upstream, reference appendix A).

use std::collections::BTreeMap;

use kube::{
    Api, Resource, ResourceExt,
    runtime::events::{Event, EventType},
};
use serde_json::json;

use super::{
    Context,
    synced::{Prepared, RequestError, Synced},
};
use crate::{
    api::{
        Pipeline, Provider, RUN_CONFIGURATION_LABEL, Run, RunConfiguration, TRIGGER_SOURCE_LABEL,
        TRIGGER_SOURCE_NAMESPACE_LABEL, TRIGGER_TYPE_LABEL,
        common::{self, RunReference, Status},
        conditions::SynchronizationState,
        names::NamespacedName,
        run::{Dependencies, Parameter},
    },
    plugins::{
        ProviderRequest,
        bindings::{NamedValue, OutputArtifact, RunDefinition, TriggerIndicator},
    },
};

impl Synced for Run {
    const KIND: &'static str = "run";

    fn spec_provider(&self) -> &NamespacedName {
        &self.spec.provider
    }

    fn computed_version(&self) -> String {
        self.compute_version()
    }

    fn common_status(&self) -> Status {
        self.status.clone().unwrap_or_default().status
    }

    async fn request(
        &self,
        _context: &Context,
        _provider: &Provider,
        id: Option<String>,
        name: String,
        version: String,
    ) -> Result<ProviderRequest, RequestError> {
        if id.is_some() {
            return Err(RequestError::Invalid(
                "a Run is never updated: its spec is immutable and its pipeline version pinned".into(),
            ));
        }
        Ok(ProviderRequest::CreateRun { definition: self.definition(name, version)? })
    }

    fn delete_request(id: String) -> ProviderRequest {
        ProviderRequest::DeleteRun { id }
    }

    const HAS_DEPENDENCIES: bool = true;

    fn pipeline_name(&self) -> Option<&str> {
        self.spec.pipeline.as_ref().map(|pipeline| pipeline.name.as_str())
    }

    fn depends_on(&self, run_configuration: &NamespacedName) -> bool {
        let namespace = self.namespace().unwrap_or_default();
        self.spec.parameters.iter().filter_map(|p| p.value_from.as_ref()).any(|value_from| {
            &value_from.run_configuration_ref.name.with_default_namespace(&namespace) == run_configuration
        })
    }

    async fn prepare(&self, context: &Context) -> Prepared {
        let status = self.status.clone().unwrap_or_default();
        if !status.status.provider.id.is_empty() {
            // Created remotely: what it ran with is settled.
            return Prepared::Ready;
        }
        let namespace = self.namespace().unwrap_or_default();
        let dependencies = status.dependencies;
        let mut record = serde_json::Map::new();

        if dependencies.pipeline.version.is_empty() {
            let Some(pipeline) = &self.spec.pipeline else {
                return Prepared::Fail("spec.pipeline is not set: name the Pipeline to run".into());
            };
            let version = match &pipeline.version {
                Some(version) => version.clone(),
                None => match succeeded_pipeline_version(context, &namespace, &pipeline.name).await {
                    Ok(Ok(version)) => version,
                    Ok(Err(reason)) => return Prepared::Wait(reason),
                    Err(error) => {
                        return Prepared::Wait(format!("reading Pipeline {namespace}/{}: {error}", pipeline.name));
                    }
                },
            };
            record.insert("pipeline".into(), json!({ "version": version }));
        }

        let mut runs = BTreeMap::new();
        for parameter in &self.spec.parameters {
            let Some(value_from) = &parameter.value_from else { continue };
            let reference = &value_from.run_configuration_ref;
            let key = reference.name.to_string();
            if dependencies.run_configurations.contains_key(&key) || runs.contains_key(&key) {
                continue;
            }
            let qualified = reference.name.with_default_namespace(&namespace);
            let run_configurations: Api<RunConfiguration> =
                Api::namespaced(context.client.clone(), &qualified.namespace);
            let succeeded = match run_configurations.get_opt(&qualified.name).await {
                Ok(found) => {
                    found.and_then(|rc| rc.status).map(|status| status.latest_runs.succeeded).unwrap_or_default()
                }
                Err(error) => return Prepared::Wait(format!("reading RunConfiguration {qualified}: {error}")),
            };
            if succeeded.provider_id.is_empty() {
                if reference.optional {
                    // Upstream's Event for a skipped optional parameter, word for word.
                    let note = format!(
                        "Unable to resolve parameter '{}', but skipping as it is marked as optional.",
                        parameter.name
                    );
                    let event = Event {
                        type_: EventType::Normal,
                        reason: "Synced".into(),
                        note: Some(note),
                        action: "Synchronize".into(),
                        secondary: None,
                    };
                    context.events.publish(event, self.object_ref(&()));
                    continue;
                }
                return Prepared::Wait(format!(
                    "waiting for RunConfiguration {qualified} to complete a run (parameter {} takes its artifact {})",
                    parameter.name, reference.output_artifact
                ));
            }
            runs.insert(key, succeeded);
        }
        if !runs.is_empty() {
            record.insert("runConfigurations".into(), json!(runs));
        }
        if record.is_empty() { Prepared::Ready } else { Prepared::Record(json!({ "dependencies": record })) }
    }
}

/// The version of the Pipeline `name` once it is Succeeded; otherwise (inner `Err`) why not
/// yet, for the resource's condition. Runs and RunConfigurations both observe it this way.
pub(super) async fn succeeded_pipeline_version(
    context: &Context,
    namespace: &str,
    name: &str,
) -> Result<Result<String, String>, kube::Error> {
    let pipelines: Api<Pipeline> = Api::namespaced(context.client.clone(), namespace);
    let Some(pipeline) = pipelines.get_opt(name).await? else {
        return Ok(Err(format!("waiting for Pipeline {namespace}/{name} to exist")));
    };
    let status = pipeline.status.unwrap_or_default();
    Ok(match status.synchronization_state() {
        SynchronizationState::Succeeded if !status.version.is_empty() => Ok(status.version),
        state => Err(format!("waiting for Pipeline {namespace}/{name} to be Succeeded (it is {state})")),
    })
}

impl Run {
    fn definition(&self, name: String, version: String) -> Result<RunDefinition, String> {
        let namespace = self.namespace().unwrap_or_default();
        let in_namespace =
            |object: &str| if object.is_empty() { String::new() } else { format!("{namespace}/{object}") };
        let labels = self.labels();
        let status = self.status.clone().unwrap_or_default();
        let parameters = resolve_parameters(&self.spec.parameters, &status.dependencies)?
            .into_iter()
            .map(|p| NamedValue { name: p.name, value: p.value })
            .collect();
        let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
        Ok(RunDefinition {
            name,
            version,
            pipeline_name: in_namespace(self.spec.pipeline.as_ref().map(|p| p.name.as_str()).unwrap_or_default()),
            pipeline_version: status.dependencies.pipeline.version.clone(),
            run_configuration_name: labels.get(RUN_CONFIGURATION_LABEL).map(|rc| in_namespace(rc)).unwrap_or_default(),
            experiment_name: in_namespace(&self.spec.experiment_name),
            parameters,
            artifacts: self
                .spec
                .artifacts
                .iter()
                .map(|a| OutputArtifact { name: a.name.clone(), path: a.path.to_string() })
                .collect(),
            trigger_indicator: TriggerIndicator {
                type_: label(TRIGGER_TYPE_LABEL),
                source: label(TRIGGER_SOURCE_LABEL),
                source_namespace: label(TRIGGER_SOURCE_NAMESPACE_LABEL),
            },
        })
    }
}

/// Runtime parameters with `valueFrom` replaced by the referenced artifact's location from the
/// recorded dependency runs; optional ones without an artifact are left out (upstream 2.7).
pub(super) fn resolve_parameters(
    parameters: &[Parameter],
    dependencies: &Dependencies,
) -> Result<Vec<common::NamedValue>, String> {
    let mut resolved = Vec::new();
    for parameter in parameters {
        let value = match &parameter.value_from {
            None => parameter.value.clone(),
            Some(value_from) => {
                let reference = &value_from.run_configuration_ref;
                let found = dependencies
                    .run_configurations
                    .get(&reference.name.to_string())
                    .and_then(|run: &RunReference| run.artifacts.iter().find(|a| a.name == reference.output_artifact));
                match found {
                    Some(artifact) => artifact.location.clone(),
                    None if reference.optional => continue,
                    None => {
                        return Err(format!(
                            "artifact '{}' not found in dependency '{}'",
                            reference.output_artifact, reference.name
                        ));
                    }
                }
            }
        };
        resolved.push(common::NamedValue { name: parameter.name.clone(), value });
    }
    Ok(resolved)
}
