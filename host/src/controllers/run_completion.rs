//! Run completion: the operator polls `run-status` of synchronised Runs that have not finished
//! (every `interval`, with jitter, at most `concurrency` calls at once). A finished Run gets
//! `status.completionState` and `markedCompletedAt`; a Run created by a RunConfiguration that
//! succeeded becomes that RunConfiguration's `status.latestRuns.succeeded`, with the artifacts
//! its `spec.artifacts` select, which dependent Runs then take parameters from. With a
//! `runCompletionTTL`, completed Runs are deleted once it has passed. (Upstream's `/events`
//! feed is the other way in; it comes later.)

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt, api::ListParams};
use serde_json::{Value, json};

use super::{Context, merge_status, scoped_api};
use crate::{
    api::{
        RUN_CONFIGURATION_LABEL, Run, RunConfiguration,
        common::{Artifact, OutputArtifact},
        conditions::SynchronizationState,
        names::ArtifactPath,
        run::CompletionState,
    },
    plugins::{
        ProviderRequest, ProviderResponse,
        bindings::{ComponentArtifacts, RunState},
    },
};

#[derive(Debug, Clone)]
pub struct CompletionSettings {
    /// How often unfinished Runs are polled.
    pub interval: Duration,
    /// Plugin calls in flight at once.
    pub concurrency: usize,
    /// Completed Runs are deleted this long after `markedCompletedAt` (upstream's
    /// `runCompletionTTL`); never when unset.
    pub completed_run_ttl: Option<Duration>,
}

impl Default for CompletionSettings {
    fn default() -> Self {
        Self { interval: Duration::from_secs(10), concurrency: 8, completed_run_ttl: None }
    }
}

/// Polls until the task is dropped.
pub async fn run(context: Arc<Context>, namespace: Option<&str>, settings: CompletionSettings) {
    let runs = scoped_api::<Run>(&context.client, namespace);
    loop {
        match runs.list(&ListParams::default()).await {
            Ok(list) => {
                if let Some(ttl) = settings.completed_run_ttl {
                    delete_expired(&runs, &list.items, ttl).await;
                }
                let unfinished = list.items.into_iter().filter(awaiting_completion);
                futures::stream::iter(unfinished)
                    .for_each_concurrent(settings.concurrency, |run| poll(&context, run))
                    .await;
            }
            Err(error) => tracing::warn!(%error, "listing Runs to poll their completion"),
        }
        // Jitter spreads the polls of many replicas and restarts over the interval.
        let jitter = 0.8
            + 0.4
                * (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos()
                    as f64
                    / 1e9);
        tokio::time::sleep(settings.interval.mul_f64(jitter)).await;
    }
}

/// Deletes Runs completed longer than `ttl` ago; their finalizer cleans up remotely.
async fn delete_expired(runs: &Api<Run>, items: &[Run], ttl: Duration) {
    let now = jiff::Timestamp::now();
    for run in items.iter().filter(|run| run.metadata.deletion_timestamp.is_none()) {
        let Some(completed) = run.status.as_ref().and_then(|s| s.marked_completed_at.as_ref()) else { continue };
        let age = now.duration_since(completed.0).unsigned_abs();
        if age >= ttl {
            match runs.delete(&run.name_any(), &kube::api::DeleteParams::default()).await {
                Ok(_) => tracing::info!(run = %run.name_any(), ?age, "deleted a completed Run after runCompletionTTL"),
                Err(error) => tracing::warn!(run = %run.name_any(), %error, "could not delete an expired Run"),
            }
        }
    }
}

fn awaiting_completion(run: &Run) -> bool {
    run.metadata.deletion_timestamp.is_none()
        && run.status.as_ref().is_some_and(|status| {
            status.completion_state.is_none()
                && !status.status.provider.id.is_empty()
                && status.status.synchronization_state() == SynchronizationState::Succeeded
        })
}

async fn poll(context: &Context, run: Run) {
    let status = run.status.clone().unwrap_or_default();
    let (namespace, name) = (run.namespace().unwrap_or_default(), run.name_any());
    let Some(plugin) = context.plugins.get(&status.status.provider.name.to_string()) else { return };
    let id = status.status.provider.id.clone();
    let remote = match plugin.call_provider(&ProviderRequest::RunStatus { id: id.clone() }).await {
        Ok(ProviderResponse::RunStatus(remote)) => remote,
        Ok(other) => return tracing::warn!(run = %name, ?other, "run-status answered something else"),
        Err(error) => return tracing::info!(run = %name, %error, "run-status failed; polling again later"),
    };
    let completion = match remote.state {
        RunState::Succeeded => CompletionState::Succeeded,
        RunState::Failed => CompletionState::Failed,
        RunState::Pending | RunState::Running => return,
    };
    let runs: Api<Run> = Api::namespaced(context.client.clone(), &namespace);
    let completed = json!({ "completionState": completion, "markedCompletedAt": Time(jiff::Timestamp::now()) });
    if let Err(error) = merge_status(&runs, &name, completed).await {
        return tracing::warn!(run = %name, %error, "could not record the Run's completion");
    }
    tracing::info!(run = %name, ?completion, "run completed");
    let Some(run_configuration) = run.labels().get(RUN_CONFIGURATION_LABEL) else { return };
    if completion != CompletionState::Succeeded {
        return;
    }
    let artifacts = select_artifacts(&run.spec.artifacts, &remote.artifacts);
    let run_configurations: Api<RunConfiguration> = Api::namespaced(context.client.clone(), &namespace);
    let latest = json!({ "latestRuns": { "succeeded": { "providerId": id, "artifacts": artifacts } } });
    if let Err(error) = merge_status(&run_configurations, run_configuration, latest).await {
        tracing::warn!(run = %name, %run_configuration, %error, "could not record the RunConfiguration's latest run");
    }
}

/// The artifacts a Run exposes: for each of its `spec.artifacts`, the produced artifact at
/// `COMPONENT:OUTPUT:INDEX` if its metadata passes the path's filter.
pub fn select_artifacts(wanted: &[OutputArtifact], produced: &[ComponentArtifacts]) -> Vec<Artifact> {
    wanted
        .iter()
        .filter_map(|output| {
            let ArtifactPath { component, artifact, index, filter } = &output.path;
            let found = produced
                .iter()
                .filter(|c| &c.component == component)
                .flat_map(|c| c.artifacts.iter())
                .filter(|a| &a.name == artifact)
                .nth(usize::try_from(*index).ok()?)?;
            let metadata: Value = serde_json::from_str(&found.metadata_json).unwrap_or(Value::Null);
            let passes = filter.as_deref().is_none_or(|filter| evaluate_filter(filter, &metadata));
            passes.then(|| Artifact { name: output.name.clone(), location: found.location.clone() })
        })
        .collect()
}

/// Evaluates an artifact filter over the artifact's metadata: comparisons `key == value` or
/// `key != value` (numbers, `"strings"`, `true`/`false`), joined by `and` / `or` (`and` binds
/// tighter). The subset of go-bexpr upstream's documentation uses; written by hand because no
/// Rust crate implements bexpr. An expression outside it selects nothing.
pub fn evaluate_filter(filter: &str, metadata: &Value) -> bool {
    filter
        .split(" or ")
        .any(|conjunction| conjunction.split(" and ").all(|comparison| compare(comparison.trim(), metadata)))
}

fn compare(comparison: &str, metadata: &Value) -> bool {
    let (key, expected, equal) = match (comparison.split_once("!="), comparison.split_once("==")) {
        (Some((key, value)), _) => (key.trim(), value.trim(), false),
        (None, Some((key, value))) => (key.trim(), value.trim(), true),
        (None, None) => return false,
    };
    let actual = metadata.get(key);
    let expected: Value = serde_json::from_str(expected).unwrap_or_else(|_| Value::String(expected.to_owned()));
    let matches = match (actual, &expected) {
        (Some(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Some(a), b) => a == b,
        (None, _) => false,
    };
    matches == equal
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::bindings::ProducedArtifact;

    #[test]
    fn filters() {
        let metadata = json!({ "pushed": 1, "stage": "prod", "ok": true });
        assert!(evaluate_filter("pushed == 1", &metadata));
        assert!(evaluate_filter("pushed == 1.0", &metadata));
        assert!(!evaluate_filter("pushed == 0", &metadata));
        assert!(evaluate_filter(r#"stage == "prod" and ok == true"#, &metadata));
        assert!(evaluate_filter(r#"stage != "prod" or pushed == 1"#, &metadata));
        assert!(!evaluate_filter("missing == 1", &metadata));
        assert!(!evaluate_filter("nonsense", &metadata));
    }

    #[test]
    fn artifacts_are_selected_by_component_output_index_and_filter() {
        let produced = |metadata: &str| {
            vec![ComponentArtifacts {
                component: "Pusher".into(),
                artifacts: vec![
                    ProducedArtifact {
                        name: "pushed_model".into(),
                        location: "gs://a".into(),
                        metadata_json: metadata.into(),
                    },
                    ProducedArtifact {
                        name: "pushed_model".into(),
                        location: "gs://b".into(),
                        metadata_json: "{}".into(),
                    },
                ],
            }]
        };
        let wanted = |path: &str| vec![OutputArtifact { name: "model".into(), path: path.parse().unwrap() }];
        let selected = select_artifacts(&wanted("Pusher:pushed_model:0[pushed == 1]"), &produced(r#"{"pushed": 1}"#));
        assert_eq!(selected, [Artifact { name: "model".into(), location: "gs://a".into() }]);
        assert!(
            select_artifacts(&wanted("Pusher:pushed_model:0[pushed == 1]"), &produced(r#"{"pushed": 0}"#)).is_empty()
        );
        assert_eq!(select_artifacts(&wanted("Pusher:pushed_model:1"), &produced("{}"))[0].location, "gs://b");
        assert!(select_artifacts(&wanted("Pusher:pushed_model:2"), &produced("{}")).is_empty());
        assert!(select_artifacts(&wanted("Trainer:model"), &produced("{}")).is_empty());
    }
}
