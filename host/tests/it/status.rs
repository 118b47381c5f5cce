//! Status goes through the status subresource: written there, read back typed, and kept
//! apart from spec updates.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kfp_operator::api::{
    Pipeline, Run, RunConfiguration,
    common::{Artifact, ProviderAndId, RunReference, Status},
    conditions::{SynchronizationState, merge_condition, synchronized_condition},
    run::{CompletionState, RunStatus},
    run_configuration::RunConfigurationStatus,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::support::{assert_invalid, setup};

fn time(rfc3339: &str) -> Time {
    Time(rfc3339.parse().unwrap())
}

#[tokio::test]
async fn pipeline_status_round_trips_through_the_subresource() {
    let (client, ns) = setup("status-pipeline").await;
    let api: Api<Pipeline> = Api::namespaced(client, &ns);
    let pipeline: Pipeline = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline",
        "metadata": { "name": "p" },
        "spec": { "provider": "team/kfp", "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } },
    }))
    .unwrap();
    let created = api.create(&PostParams::default(), &pipeline).await.unwrap();
    let generation = created.metadata.generation;

    let mut status = Status {
        provider: ProviderAndId { name: "team/kfp".parse().unwrap(), id: "remote-1".into() },
        version: created.compute_version(),
        observed_generation: generation,
        conditions: Vec::new(),
    };
    merge_condition(
        &mut status.conditions,
        synchronized_condition(SynchronizationState::Succeeded, "", generation, time("2026-01-01T00:00:00Z")),
    );
    api.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await.unwrap();

    let stored = api.get("p").await.unwrap();
    assert_eq!(stored.status.as_ref(), Some(&status));
    assert_eq!(stored.status.unwrap().synchronization_state(), SynchronizationState::Succeeded);
    assert_eq!(stored.metadata.generation, generation, "a status write must not bump the generation");

    // Status sent to the main resource is ignored; spec sent to the status subresource too.
    let mut changed = api.get("p").await.unwrap();
    changed.status.as_mut().unwrap().version = "tampered".into();
    changed.spec.image = "img:v2".into();
    api.replace("p", &PostParams::default(), &changed).await.unwrap();
    let stored = api.get("p").await.unwrap();
    assert_eq!(stored.status.as_ref().unwrap().version, status.version);
    assert_eq!(stored.spec.image, "img:v2");
    assert_ne!(stored.metadata.generation, generation, "a spec change bumps the generation");

    api.patch_status("p", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "image": "img:v3" } })))
        .await
        .unwrap();
    assert_eq!(api.get("p").await.unwrap().spec.image, "img:v2");
}

#[tokio::test]
async fn run_status_with_completion_and_dependencies() {
    let (client, ns) = setup("status-run").await;
    let api: Api<Run> = Api::namespaced(client, &ns);
    let run: Run = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Run",
        "metadata": { "name": "r" },
        "spec": { "provider": "team/kfp", "pipeline": "p" },
    }))
    .unwrap();
    api.create(&PostParams::default(), &run).await.unwrap();

    let mut status = RunStatus {
        completion_state: Some(CompletionState::Succeeded),
        marked_completed_at: Some(time("2026-02-03T04:05:06Z")),
        ..RunStatus::default()
    };
    status.status.version = "abc123".into();
    status.dependencies.pipeline.version = "v1-abc123".into();
    status.dependencies.run_configurations.insert(
        "other/rc".into(),
        RunReference {
            provider_id: "run-7".into(),
            artifacts: vec![Artifact { name: "model".into(), location: "gs://bucket/model".into() }],
        },
    );
    api.patch_status("r", &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await.unwrap();
    assert_eq!(api.get("r").await.unwrap().status, Some(status));
}

#[tokio::test]
async fn run_configuration_status_round_trips() {
    let (client, ns) = setup("status-rc").await;
    let api: Api<RunConfiguration> = Api::namespaced(client, &ns);
    let rc: RunConfiguration = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "RunConfiguration",
        "metadata": { "name": "rc" },
        "spec": { "run": { "provider": "team/kfp" }, "triggers": { "onChange": ["runSpec"] } },
    }))
    .unwrap();
    api.create(&PostParams::default(), &rc).await.unwrap();

    let mut status = RunConfigurationStatus { provider: "team/kfp".parse().unwrap(), ..Default::default() };
    status.latest_runs.succeeded.provider_id = "run-1".into();
    status.triggers.run_spec.version = "abc123".into();
    status.triggers.run_configurations.insert("team/upstream".into(), Default::default());
    status.triggers.run_configurations.get_mut("team/upstream").unwrap().provider_id = "run-0".into();
    merge_condition(
        &mut status.conditions,
        synchronized_condition(
            SynchronizationState::Updating,
            "schedules changed",
            Some(1),
            time("2026-01-01T00:00:00Z"),
        ),
    );
    api.patch_status("rc", &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await.unwrap();
    let stored = api.get("rc").await.unwrap().status.unwrap();
    assert_eq!(stored, status);
    assert_eq!(stored.synchronization_state(), SynchronizationState::Updating);
}

/// Upstream's CRDs refuse a condition without a reason; so do ours.
#[tokio::test]
async fn a_condition_without_reason_is_refused() {
    let (client, ns) = setup("status-reason").await;
    let api: Api<RunConfiguration> = Api::namespaced(client, &ns);
    let rc: RunConfiguration = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "RunConfiguration",
        "metadata": { "name": "rc" },
        "spec": { "run": { "provider": "team/kfp" } },
    }))
    .unwrap();
    api.create(&PostParams::default(), &rc).await.unwrap();
    let bad = json!({ "status": { "conditions": [{
        "type": "Synchronized", "status": "Unknown", "reason": "", "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }]}});
    assert_invalid(api.patch_status("rc", &PatchParams::default(), &Patch::Merge(bad)).await, "reason");
}
