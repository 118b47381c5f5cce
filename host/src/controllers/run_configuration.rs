//! RunConfigurations (upstream reference 2.6): observe the pipeline version, refresh the
//! dependency runs, start Runs on the `onChange` and `runConfigurations` triggers, keep one owned
//! RunSchedule per schedule (matched by hash), and report an aggregate state. Owned Runs and
//! RunSchedules carry controller owner references, so kube-controller-manager's garbage
//! collector deletes them with the RunConfiguration. Deliberate fixes: a RunConfiguration whose
//! schedules changed is `Updating` (upstream writes an empty reason), and one whose parameters
//! cannot be resolved waits with the reason instead of reporting `Succeeded`.

use std::{collections::BTreeMap, sync::Arc};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
    runtime::{Controller, controller::Action, reflector::ObjectRef, watcher},
};

use super::{
    Context, replacing_patch,
    run::{resolve_parameters, succeeded_pipeline_version},
    scoped_api,
};
use crate::api::{
    Pipeline, RUN_CONFIGURATION_LABEL, Run, RunConfiguration, RunSchedule, TRIGGER_SOURCE_LABEL,
    TRIGGER_SOURCE_NAMESPACE_LABEL, TRIGGER_TYPE_LABEL,
    common::{NamedValue, RunReference},
    conditions::{SynchronizationState, merge_condition, synchronized_condition},
    names::{NamespacedName, PipelineIdentifier},
    run::{Dependencies, RunSpec},
    run_configuration::{OnChangeType, RunConfigurationStatus, TriggeredRunReference, TriggersStatus},
    run_schedule::RunScheduleSpec,
};

#[derive(Debug, thiserror::Error)]
#[error("RunConfiguration {name}: {source}")]
pub struct Error {
    name: String,
    #[source]
    source: kube::Error,
}

/// Runs the controller until shutdown; `namespace` limits it (tests).
pub async fn run(context: Arc<Context>, namespace: Option<&str>) {
    let configurations = scoped_api::<RunConfiguration>(&context.client, namespace);
    let controller = Controller::new(configurations, watcher::Config::default());
    let (by_pipeline, by_dependency, all) = (controller.store(), controller.store(), controller.store());
    let telemetry = context.telemetry.clone();
    let controller = controller
        .owns(scoped_api::<RunSchedule>(&context.client, namespace), watcher::Config::default())
        .watches(scoped_api::<Pipeline>(&context.client, namespace), watcher::Config::default(), move |pipeline| {
            let (namespace, name) = (pipeline.namespace(), pipeline.name_any());
            by_pipeline
                .state()
                .into_iter()
                .filter(|rc| {
                    rc.namespace() == namespace && rc.spec.run.pipeline.as_ref().is_some_and(|p| p.name == name)
                })
                .map(|rc| ObjectRef::from_obj(&*rc))
                .collect::<Vec<_>>()
        })
        .watches(
            scoped_api::<RunConfiguration>(&context.client, namespace),
            watcher::Config::default(),
            move |changed| {
                let changed = NamespacedName::new(changed.namespace().unwrap_or_default(), changed.name_any());
                by_dependency
                    .state()
                    .into_iter()
                    .filter(|rc| referenced(rc).iter().any(|reference| reference == &changed))
                    .map(|rc| ObjectRef::from_obj(&*rc))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(
            |rc, context| async move {
                let key = format!("{}/{}", rc.namespace().unwrap_or_default(), rc.name_any());
                context.telemetry.clone().measure("runconfiguration", key, reconcile(rc, context)).await
            },
            |rc, error, context| {
                let delay = context.backoff.next(&format!(
                    "runconfiguration/{}/{}",
                    rc.namespace().unwrap_or_default(),
                    rc.name_any()
                ));
                tracing::warn!(runconfiguration = %rc.name_any(), %error, ?delay, "reconcile failed; retrying");
                Action::requeue(delay)
            },
            context,
        )
        .for_each(|_| async {});
    super::with_queue_pruning(telemetry, "runconfiguration", all, controller).await;
}

/// Every RunConfiguration this one reads (parameter sources and triggers), namespace defaulted.
fn referenced(rc: &RunConfiguration) -> Vec<NamespacedName> {
    let namespace = rc.namespace().unwrap_or_default();
    let from_parameters =
        rc.spec.run.parameters.iter().filter_map(|p| p.value_from.as_ref()).map(|v| &v.run_configuration_ref.name);
    from_parameters
        .chain(rc.spec.triggers.run_configurations.iter())
        .map(|reference| reference.with_default_namespace(&namespace))
        .collect()
}

async fn reconcile(rc: Arc<RunConfiguration>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = rc.namespace().unwrap_or_default();
    let name = rc.name_any();
    let key = format!("runconfiguration/{namespace}/{name}");
    if rc.metadata.deletion_timestamp.is_some() {
        context.own_writes.forget(&key);
        return Ok(Action::await_change());
    }
    if context.own_writes.is_stale(&key, rc.metadata.resource_version.as_deref()) {
        // Our last write is still on its way through the watch, which reconciles again.
        return Ok(Action::await_change());
    }
    let kube_error = |source| Error { name: format!("{namespace}/{name}"), source };
    let writer =
        Writer { api: Api::namespaced(context.client.clone(), &namespace), rc: &rc, context: &context, key: &key };
    let current = rc.status.clone().unwrap_or_default();
    let mut status = current.clone();

    // The provider must not change under existing runs and schedules.
    if !current.provider.is_empty() && current.provider != rc.spec.run.provider {
        writer.write(status, SynchronizationState::Failed, "the provider has changed").await.map_err(kube_error)?;
        return Ok(Action::await_change());
    }

    // Everything below ends in one status write: the observed pipeline version and dependency
    // runs, the triggers' bookkeeping and the state.
    status.dependencies = observe_dependencies(&context, &rc, &namespace).await.map_err(kube_error)?;
    let parameters = match resolve_parameters(&rc.spec.run.parameters, &status.dependencies) {
        Ok(parameters) => parameters,
        Err(reason) => {
            let state = current.synchronization_state();
            writer.write(status, state, &format!("waiting: {reason}")).await.map_err(kube_error)?;
            return Ok(Action::requeue(context.backoff.next(&key)));
        }
    };

    // Triggers: a Run when the run template, the pipeline version or a dependency's run changes.
    // A Run started here and a failed status write after it are safe: the Run's name is
    // deterministic, so the retry finds it.
    if let Some((triggers, indicator)) = evaluate_triggers(&rc, &status) {
        if let Some(indicator) = indicator {
            start_run(&context, &rc, &status.dependencies, indicator).await.map_err(kube_error)?;
        }
        status.triggers = triggers;
    }

    // Schedules: one owned RunSchedule per entry, matched by hash. When nothing was created or
    // deleted, the schedules listed are the current ones and give the aggregate state.
    let owned = owned_schedules(&context, &rc).await.map_err(kube_error)?;
    let (state, message) =
        if sync_schedules(&context, &rc, &owned, &status.dependencies, &parameters).await.map_err(kube_error)? {
            (SynchronizationState::Updating, "the schedules changed".to_owned())
        } else {
            aggregate(&owned)
        };
    writer.write(status, state, &message).await.map_err(kube_error)?;
    if state == SynchronizationState::Succeeded {
        context.backoff.reset(&key);
    }
    Ok(Action::await_change())
}

/// The observed pipeline version (pinned, else the latest Succeeded, else empty) and the latest
/// succeeded runs of the referenced RunConfigurations (only the artifacts parameters use).
async fn observe_dependencies(
    context: &Context,
    rc: &RunConfiguration,
    namespace: &str,
) -> Result<Dependencies, kube::Error> {
    let mut dependencies = Dependencies::default();
    if let Some(pipeline) = &rc.spec.run.pipeline {
        dependencies.pipeline.version = match &pipeline.version {
            Some(version) => version.clone(),
            // Not (yet) Succeeded or gone: follow it back to no version, as upstream does.
            None => succeeded_pipeline_version(context, namespace, &pipeline.name).await?.unwrap_or_default(),
        };
    }
    let used: BTreeMap<String, Vec<&str>> = rc.spec.run.parameters.iter().filter_map(|p| p.value_from.as_ref()).fold(
        BTreeMap::new(),
        |mut used, value_from| {
            let reference = &value_from.run_configuration_ref;
            used.entry(reference.name.to_string()).or_default().push(reference.output_artifact.as_str());
            used
        },
    );
    let keys = used.keys().cloned().chain(rc.spec.triggers.run_configurations.iter().map(ToString::to_string));
    for key in keys {
        let reference: NamespacedName = key.parse().unwrap_or_default();
        let qualified = reference.with_default_namespace(namespace);
        let others: Api<RunConfiguration> = Api::namespaced(context.client.clone(), &qualified.namespace);
        let latest = others
            .get_opt(&qualified.name)
            .await?
            .and_then(|o| o.status)
            .map(|s| s.latest_runs.succeeded)
            .unwrap_or_default();
        let wanted = used.get(&key).cloned().unwrap_or_default();
        let artifacts = latest.artifacts.into_iter().filter(|a| wanted.contains(&a.name.as_str())).collect();
        dependencies.run_configurations.insert(key, RunReference { provider_id: latest.provider_id, artifacts });
    }
    Ok(dependencies)
}

/// What started a Run: upstream's trigger-type label, the trigger's source, and the value that
/// fired it (the run-spec or pipeline version, or the dependency's run id).
struct Trigger {
    kind: &'static str,
    source: String,
    source_namespace: String,
    value: String,
}

/// The new trigger status if it changed, with what triggered a Run (none when only the
/// bookkeeping changed, e.g. a trigger removed).
fn evaluate_triggers(
    rc: &RunConfiguration,
    status: &RunConfigurationStatus,
) -> Option<(TriggersStatus, Option<Trigger>)> {
    let old = &status.triggers;
    let mut new = old.clone();
    if rc.spec.triggers.on_change.contains(&OnChangeType::Pipeline) {
        new.pipeline.version = status.dependencies.pipeline.version.clone();
    }
    if rc.spec.triggers.on_change.contains(&OnChangeType::RunSpec) {
        new.run_spec.version = rc.spec.run.compute_version();
    }
    new.run_configurations = rc
        .spec
        .triggers
        .run_configurations
        .iter()
        .map(|reference| {
            let key = reference.to_string();
            let provider_id =
                status.dependencies.run_configurations.get(&key).map(|r| r.provider_id.clone()).unwrap_or_default();
            (key, TriggeredRunReference { provider_id })
        })
        .collect();
    if &new == old {
        return None;
    }
    let namespace = rc.namespace().unwrap_or_default();
    let indicator = if !new.run_spec.version.is_empty() && new.run_spec.version != old.run_spec.version {
        Some(Trigger {
            kind: "onChangeRunSpec",
            source: rc.name_any(),
            source_namespace: namespace,
            value: new.run_spec.version.clone(),
        })
    } else if !new.pipeline.version.is_empty() && new.pipeline.version != old.pipeline.version {
        let pipeline = rc.spec.run.pipeline.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        Some(Trigger {
            kind: "onChangePipeline",
            source: pipeline,
            source_namespace: namespace,
            value: new.pipeline.version.clone(),
        })
    } else {
        new.run_configurations
            .iter()
            .find(|(key, run)| !run.provider_id.is_empty() && old.run_configurations.get(*key) != Some(run))
            .map(|(key, run)| {
                let reference: NamespacedName = key.parse().unwrap_or_default();
                let qualified = reference.with_default_namespace(&namespace);
                Trigger {
                    kind: "runConfiguration",
                    source: qualified.name,
                    source_namespace: qualified.namespace,
                    value: run.provider_id.clone(),
                }
            })
    };
    Some((new, indicator))
}

fn owner_reference(rc: &RunConfiguration) -> OwnerReference {
    rc.controller_owner_ref(&()).expect("a RunConfiguration read from the API server has a uid")
}

fn sanitise_label(value: &str) -> String {
    value.replace('/', "_").chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect()
}

/// Starts a Run from the template, pinned to the observed pipeline version, owned by the
/// RunConfiguration and labelled with what triggered it.
async fn start_run(
    context: &Context,
    rc: &RunConfiguration,
    dependencies: &Dependencies,
    trigger: Trigger,
) -> Result<(), kube::Error> {
    let namespace = rc.namespace().unwrap_or_default();
    let mut spec: RunSpec = rc.spec.run.clone();
    if let Some(pipeline) = &mut spec.pipeline
        && !dependencies.pipeline.version.is_empty()
    {
        *pipeline = PipelineIdentifier::new(pipeline.name.clone(), Some(dependencies.pipeline.version.clone()));
    }
    // A deterministic name: the same trigger firing twice (a stale read, a retry, a new
    // leader) finds the Run it already created instead of starting a second one. Upstream uses
    // generateName and compares hashes of existing Runs, which rarely match.
    let mut fired = crate::api::hashing::ObjectHasher::new();
    fired.write_str(trigger.kind);
    fired.write_str(&trigger.source_namespace);
    fired.write_str(&trigger.source);
    fired.write_str(&trigger.value);
    let name = format!("{}-{}", rc.name_any(), crate::api::hashing::short_version(&fired.finish()));
    let mut run = Run::new(&name, spec);
    run.metadata.owner_references = Some(vec![owner_reference(rc)]);
    run.metadata.labels = Some(BTreeMap::from([
        (RUN_CONFIGURATION_LABEL.to_owned(), rc.name_any()),
        (TRIGGER_TYPE_LABEL.to_owned(), trigger.kind.to_owned()),
        (TRIGGER_SOURCE_LABEL.to_owned(), sanitise_label(&trigger.source)),
        (TRIGGER_SOURCE_NAMESPACE_LABEL.to_owned(), sanitise_label(&trigger.source_namespace)),
    ]));
    match Api::<Run>::namespaced(context.client.clone(), &namespace).create(&PostParams::default(), &run).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// The RunSchedules this RunConfiguration controls. The label narrows the list to its own
/// (a namespace may hold thousands); the owner reference decides.
async fn owned_schedules(context: &Context, rc: &RunConfiguration) -> Result<Vec<RunSchedule>, kube::Error> {
    let api: Api<RunSchedule> = Api::namespaced(context.client.clone(), &rc.namespace().unwrap_or_default());
    let uid = rc.uid().unwrap_or_default();
    let selector = format!("{RUN_CONFIGURATION_LABEL}={}", rc.name_any());
    let all = api.list(&ListParams::default().labels(&selector)).await?.items;
    Ok(all
        .into_iter()
        .filter(|s| s.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true)))
        .collect())
}

/// Creates missing and deletes excess owned RunSchedules; whether anything changed.
async fn sync_schedules(
    context: &Context,
    rc: &RunConfiguration,
    owned: &[RunSchedule],
    dependencies: &Dependencies,
    parameters: &[NamedValue],
) -> Result<bool, kube::Error> {
    let api: Api<RunSchedule> = Api::namespaced(context.client.clone(), &rc.namespace().unwrap_or_default());
    let pipeline = rc.spec.run.pipeline.as_ref().map(|p| {
        let version = if dependencies.pipeline.version.is_empty() {
            p.version.clone()
        } else {
            Some(dependencies.pipeline.version.clone())
        };
        PipelineIdentifier::new(p.name.clone(), version)
    });
    let desired: Vec<RunSchedule> = rc
        .spec
        .triggers
        .schedules
        .iter()
        .map(|schedule| {
            let mut desired = RunSchedule::new(
                "",
                RunScheduleSpec {
                    provider: rc.spec.run.provider.clone(),
                    pipeline: pipeline.clone(),
                    experiment_name: rc.spec.run.experiment_name.clone(),
                    parameters: parameters.to_vec(),
                    artifacts: rc.spec.run.artifacts.clone(),
                    schedule: schedule.clone(),
                },
            );
            desired.metadata.name = None;
            desired.metadata.generate_name = Some(format!("{}-", rc.name_any()));
            desired.metadata.owner_references = Some(vec![owner_reference(rc)]);
            desired.metadata.labels = Some(BTreeMap::from([(RUN_CONFIGURATION_LABEL.to_owned(), rc.name_any())]));
            desired
        })
        .collect();
    let mut changed = false;
    for schedule in &desired {
        if !owned.iter().any(|o| o.compute_hash() == schedule.compute_hash()) {
            api.create(&PostParams::default(), schedule).await?;
            changed = true;
        }
    }
    for schedule in owned {
        let wanted = desired.iter().any(|d| d.compute_hash() == schedule.compute_hash());
        if !wanted && schedule.metadata.deletion_timestamp.is_none() {
            api.delete(&schedule.name_any(), &DeleteParams::default()).await?;
            changed = true;
        }
    }
    Ok(changed)
}

/// The aggregate of the owned RunSchedules (upstream's rule).
fn aggregate(owned: &[RunSchedule]) -> (SynchronizationState, String) {
    let states: Vec<(SynchronizationState, String)> = owned
        .iter()
        .map(|s| {
            let status = s.status.clone().unwrap_or_default();
            let message = status.conditions.first().map(|c| c.message.clone()).unwrap_or_default();
            (status.synchronization_state(), message)
        })
        .collect();
    use SynchronizationState::*;
    if states.iter().any(|(state, _)| !matches!(state, Succeeded | Failed)) {
        return (Updating, "Waiting for all dependant runschedules to be in a state of Succeeded".into());
    }
    if let Some((_, message)) = states.iter().find(|(state, _)| *state == Failed) {
        return (Failed, message.clone());
    }
    (Succeeded, String::new())
}

/// Writes one RunConfiguration's status and remembers the write (see `OwnWrites`).
struct Writer<'a> {
    api: Api<RunConfiguration>,
    rc: &'a RunConfiguration,
    context: &'a Context,
    key: &'a str,
}

impl Writer<'_> {
    /// Writes the status with state, message, provider and observedGeneration, when anything
    /// changed.
    async fn write(
        &self,
        mut status: RunConfigurationStatus,
        state: SynchronizationState,
        message: &str,
    ) -> Result<(), kube::Error> {
        let generation = self.rc.metadata.generation;
        status.observed_generation = generation;
        status.provider = self.rc.spec.run.provider.clone();
        merge_condition(
            &mut status.conditions,
            synchronized_condition(state, message, generation, Time(jiff::Timestamp::now())),
        );
        if Some(&status) == self.rc.status.as_ref() {
            return Ok(());
        }
        let to_json = |status: &RunConfigurationStatus| serde_json::to_value(status).expect("a status serialises");
        let patch = replacing_patch(&to_json(&self.rc.status.clone().unwrap_or_default()), &to_json(&status));
        self.context.write_own_status(&self.api, self.key, &self.rc.name_any(), patch).await?;
        Ok(())
    }
}
