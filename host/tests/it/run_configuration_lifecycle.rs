//! A RunConfiguration's life beyond one namespace and after its deletion: the real
//! kube-controller-manager garbage-collects the Runs and RunSchedules it owns (whose finalizers
//! then delete them remotely), and parameters and triggers may come from a RunConfiguration in
//! another namespace.

use std::time::Duration;

use kfp_operator::api::{
    Pipeline, Run, RunConfiguration, RunSchedule, TRIGGER_SOURCE_NAMESPACE_LABEL, TRIGGER_TYPE_LABEL,
    conditions::SynchronizationState,
};
use kfp_test_support::http_server::RecordingServer;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    experiment_controller::start_stack_in,
    support::{create_recording_provider, remote_operations, setup},
};

fn object<K: serde::de::DeserializeOwned>(kind: &str, name: &str, spec: Value) -> K {
    serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name }, "spec": spec,
    }))
    .unwrap()
}

async fn create_pipeline(client: &Client, namespace: &str, provider: &str) {
    let pipeline: Pipeline = object(
        "Pipeline",
        "penguin",
        json!({ "provider": provider, "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } }),
    );
    Api::<Pipeline>::namespaced(client.clone(), namespace).create(&PostParams::default(), &pipeline).await.unwrap();
}

/// Polls `check` every 300 ms until it returns a value; fails with the last `Err` otherwise.
async fn eventually<T>(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> Result<T, String>) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(seen) => assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; {seen}"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn state<K>(resource: &K) -> SynchronizationState
where
    K: kube::Resource + serde::Serialize,
{
    let status = serde_json::to_value(resource).unwrap()["status"].clone();
    let status: kfp_operator::api::common::Status = serde_json::from_value(status).unwrap_or_default();
    status.synchronization_state()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_run_configuration_garbage_collects_its_runs_and_schedules() {
    let (client, ns) = setup("rc-gc").await;
    let stack = start_stack_in(&client, &[&ns], None);
    let recorder = RecordingServer::start();
    create_recording_provider(&client, &ns, &recorder, json!({ "frameworks": [{ "name": "tfx" }] })).await;
    let provider = format!("{ns}/stub");
    create_pipeline(&client, &ns, &provider).await;
    let configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &ns);
    let training: RunConfiguration = object(
        "RunConfiguration",
        "training",
        json!({
            "run": { "provider": provider, "pipeline": "penguin" },
            "triggers": { "schedules": [{ "cronExpression": "0 0 * * *" }], "onChange": ["runSpec"] },
        }),
    );
    configurations.create(&PostParams::default(), &training).await.unwrap();

    let (runs, schedules): (Api<Run>, Api<RunSchedule>) =
        (Api::namespaced(client.clone(), &ns), Api::namespaced(client.clone(), &ns));
    let (run_name, schedule_name) =
        eventually("an owned, synchronised Run and RunSchedule", Duration::from_secs(60), async || {
            let (all_runs, all_schedules) = (
                runs.list(&ListParams::default()).await.unwrap().items,
                schedules.list(&ListParams::default()).await.unwrap().items,
            );
            let synchronised = |states: Vec<SynchronizationState>| states == [SynchronizationState::Succeeded];
            if synchronised(all_runs.iter().map(state).collect())
                && synchronised(all_schedules.iter().map(state).collect())
            {
                for owned in [all_runs[0].owner_references(), all_schedules[0].owner_references()] {
                    assert_eq!(owned.len(), 1);
                    assert_eq!((owned[0].kind.as_str(), owned[0].name.as_str()), ("RunConfiguration", "training"));
                    assert_eq!(owned[0].controller, Some(true));
                }
                return Ok((all_runs[0].name_any(), all_schedules[0].name_any()));
            }
            Err(format!("runs {all_runs:#?}, schedules {all_schedules:#?}"))
        })
        .await;

    configurations.delete("training", &DeleteParams::default()).await.unwrap();
    eventually(
        "the garbage collector and the finalizers to remove the owned resources",
        Duration::from_secs(60),
        async || {
            let (run, schedule) =
                (runs.get_opt(&run_name).await.unwrap(), schedules.get_opt(&schedule_name).await.unwrap());
            if run.is_none() && schedule.is_none() {
                return Ok(());
            }
            Err(format!("left: {run:#?} {schedule:#?}"))
        },
    )
    .await;
    // Both went through their finalizers: the platform was told to delete them.
    let deleted: Vec<(String, String)> = remote_operations(&recorder)
        .into_iter()
        .filter(|(action, ..)| action == "delete")
        .map(|(_, kind, id)| (kind, id))
        .collect();
    assert!(
        deleted.iter().any(|(kind, id)| kind == "run" && id.starts_with(&format!("run:{ns}/{run_name}@"))),
        "{deleted:?}"
    );
    assert!(deleted.contains(&("runschedule".to_owned(), format!("runschedule:{ns}/{schedule_name}"))), "{deleted:?}");
    stack.abort();
}

/// `evaluation` in one namespace takes its trigger and a parameter from `training` in another,
/// through a Provider in the first namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_configurations_depend_on_run_configurations_in_other_namespaces() {
    let (client, upstream) = setup("xns-up").await;
    let (_, downstream) = setup("xns-down").await;
    let stack = start_stack_in(&client, &[&upstream, &downstream], None);
    let recorder = RecordingServer::start();
    let extra = json!({ "frameworks": [{ "name": "tfx" }], "parameters": { "runDurationSeconds": 1 } });
    create_recording_provider(&client, &upstream, &recorder, extra).await;
    let provider = format!("{upstream}/stub");
    create_pipeline(&client, &upstream, &provider).await;
    create_pipeline(&client, &downstream, &provider).await;

    let training: RunConfiguration = object(
        "RunConfiguration",
        "training",
        json!({
            "run": { "provider": provider, "pipeline": "penguin", "artifacts": [{ "name": "model", "path": "Pusher:pushed_model:0" }] },
            "triggers": { "onChange": ["runSpec"] },
        }),
    );
    let upstream_configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &upstream);
    upstream_configurations.create(&PostParams::default(), &training).await.unwrap();
    let trained = eventually("training's first run to succeed", Duration::from_secs(60), async || {
        let rc = upstream_configurations.get("training").await.unwrap();
        let latest = rc.status.as_ref().map(|s| s.latest_runs.succeeded.clone()).unwrap_or_default();
        if latest.provider_id.is_empty() { Err(format!("{:#?}", rc.status)) } else { Ok(latest) }
    })
    .await;

    let source = format!("{upstream}/training");
    let evaluation: RunConfiguration = object(
        "RunConfiguration",
        "evaluation",
        json!({
            "run": { "provider": provider, "pipeline": "penguin",
                     "parameters": [{ "name": "model", "valueFrom": { "runConfigurationRef": { "name": source, "outputArtifact": "model" } } }] },
            "triggers": { "runConfigurations": [source] },
        }),
    );
    Api::<RunConfiguration>::namespaced(client.clone(), &downstream)
        .create(&PostParams::default(), &evaluation)
        .await
        .unwrap();
    let runs: Api<Run> = Api::namespaced(client.clone(), &downstream);
    let run = eventually("the triggered Run in the other namespace to complete", Duration::from_secs(60), async || {
        let all = runs.list(&ListParams::default()).await.unwrap().items;
        match all.iter().find(|run| run.status.as_ref().is_some_and(|s| s.completion_state.is_some())) {
            Some(run) => Ok(run.clone()),
            None => Err(format!("runs {all:#?}")),
        }
    })
    .await;
    assert_eq!(run.labels()[TRIGGER_TYPE_LABEL], "runConfiguration");
    assert_eq!(run.labels()[TRIGGER_SOURCE_NAMESPACE_LABEL], upstream);
    let dependency = &run.status.as_ref().unwrap().dependencies.run_configurations[&source];
    assert_eq!(dependency.provider_id, trained.provider_id, "the Run took training's latest succeeded run");
    assert_eq!(dependency.artifacts[0].location, trained.artifacts[0].location);
    assert!(dependency.artifacts[0].location.ends_with("/Pusher/pushed_model"));

    // Dropping the dependency drops it from the status too (a plain merge patch would keep it).
    let downstream_configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &downstream);
    let independent = json!({ "spec": {
        "run": { "provider": provider, "pipeline": "penguin", "parameters": [] }, "triggers": { "runConfigurations": [] } } });
    downstream_configurations
        .patch("evaluation", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(independent))
        .await
        .unwrap();
    eventually("the removed dependency to leave the status", Duration::from_secs(30), async || {
        let status = downstream_configurations.get("evaluation").await.unwrap().status.unwrap_or_default();
        let gone = status.dependencies.run_configurations.is_empty() && status.triggers.run_configurations.is_empty();
        if gone { Ok(()) } else { Err(format!("{status:#?}")) }
    })
    .await;
    stack.abort();
}

/// `onChange: [pipeline]` starts a Run for each new version of the Pipeline, pinned to it; a
/// parameter taking an optional artifact from a RunConfiguration that has none is skipped, with
/// upstream's Event, instead of holding the Run back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pipeline_version_triggers_a_run_and_optional_artifacts_may_be_missing() {
    let (client, ns) = setup("onchange-pipeline").await;
    let recorder = RecordingServer::start();
    let stack = start_stack_in(&client, &[&ns], None);
    create_recording_provider(&client, &ns, &recorder, json!({ "frameworks": [{ "name": "tfx" }] })).await;
    let provider = format!("{ns}/stub");
    create_pipeline(&client, &ns, &provider).await;
    let optional = json!({ "name": "baseline", "valueFrom": { "runConfigurationRef": {
        "name": "never-ran", "outputArtifact": "model", "optional": true } } });
    let retrain: RunConfiguration = object(
        "RunConfiguration",
        "retrain",
        json!({ "run": { "provider": provider, "pipeline": "penguin", "parameters": [optional] },
                "triggers": { "onChange": ["pipeline"] } }),
    );
    let configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &ns);
    configurations.create(&PostParams::default(), &retrain).await.unwrap();

    let runs: Api<Run> = Api::namespaced(client.clone(), &ns);
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns);
    // Synchronised Runs of `retrain`, by the pipeline version they are pinned to.
    let started_runs = async |count: usize| {
        eventually(&format!("{count} synchronised onChangePipeline Run(s)"), Duration::from_secs(60), async || {
            let all = runs.list(&ListParams::default()).await.unwrap().items;
            let synced: Vec<String> = all
                .iter()
                .filter(|run| state(*run) == SynchronizationState::Succeeded)
                .filter(|run| run.labels().get(TRIGGER_TYPE_LABEL).map(String::as_str) == Some("onChangePipeline"))
                .filter_map(|run| run.spec.pipeline.as_ref()?.version.clone())
                .collect();
            if synced.len() == count { Ok(synced) } else { Err(format!("Runs: {all:#?}")) }
        })
        .await
    };
    let first_version = eventually("the Pipeline to synchronise", Duration::from_secs(30), async || {
        let pipeline = pipelines.get("penguin").await.unwrap();
        let status = pipeline.status.clone().unwrap_or_default();
        if status.synchronization_state() == SynchronizationState::Succeeded {
            Ok(status.version)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    assert_eq!(started_runs(1).await, [first_version.as_str()], "the first version triggers a Run pinned to it");

    // The skipped optional parameter: upstream's Event on the Run.
    let run_name = runs.list(&ListParams::default()).await.unwrap().items[0].name_any();
    eventually("the optional-parameter Event", Duration::from_secs(10), async || {
        let events: Vec<String> = Api::<k8s_openapi::api::events::v1::Event>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(run_name.as_str()))
            .filter_map(|e| e.note)
            .collect();
        let wanted = "Unable to resolve parameter 'baseline', but skipping as it is marked as optional.";
        if events.iter().any(|note| note == wanted) { Ok(()) } else { Err(format!("{events:?}")) }
    })
    .await;

    // A new Pipeline version: a second Run, pinned to it.
    let image = json!({ "spec": { "image": "img:v2" } });
    pipelines.patch("penguin", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(image)).await.unwrap();
    let mut versions = started_runs(2).await;
    versions.sort();
    assert!(versions.contains(&first_version) && versions.iter().any(|v| v.starts_with("v2-")), "{versions:?}");
    let creates =
        remote_operations(&recorder).into_iter().filter(|(action, kind, _)| action == "create" && kind == "run");
    assert_eq!(creates.count(), 2, "one remote run per pipeline version");
    stack.abort();
}
