//! The shared synchronisation path, through the Experiment controller and the stub provider on
//! the real control plane: create, update, permanent and transient failures, provider change,
//! allowedNamespaces, deletion with remote cleanup and a failed delete that is retried.

use std::{sync::Arc, time::Duration};

use kfp_operator::{
    api::{Experiment, FINALIZER, Provider, conditions::SynchronizationState},
    controllers::{Context, provider, synced},
    plugins::{PluginRegistry, Sandbox, sha256_hex, source::OciSettings},
};
use kfp_test_support::plugins;
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde_json::json;

use crate::support::{create_provider, setup};

/// Starts the Provider controller and the controller of kind `K` for one namespace.
pub async fn start<K: synced::Synced>(client: &Client, namespace: &str) -> [tokio::task::JoinHandle<()>; 2] {
    let registry =
        Arc::new(PluginRegistry::new(Sandbox::new().unwrap(), client.clone(), OciSettings::default(), None, None));
    let context = Arc::new(Context::new(client.clone(), registry));
    let (first, second, provider_context) = (namespace.to_owned(), namespace.to_owned(), context.clone());
    [
        tokio::spawn(async move { provider::run(provider_context, Some(&first)).await }),
        tokio::spawn(async move { synced::run::<K>(context, Some(&second)).await }),
    ]
}

pub async fn create_stub_provider(client: &Client, namespace: &str, name: &str, allowed_namespaces: &[&str]) {
    let stub = plugins::bytes("stub_provider");
    let config_map: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "stub-plugin" },
        "binaryData": { "plugin.wasm": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &stub) },
    }))
    .unwrap();
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), namespace);
    config_maps
        .patch("stub-plugin", &PatchParams::apply("kfp-test").force(), &Patch::Apply(&config_map))
        .await
        .unwrap();
    let provider: Provider = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Provider",
        "metadata": { "name": name },
        "spec": {
            "pipelineRootStorage": "gs://root",
            "allowedNamespaces": allowed_namespaces,
            "plugin": { "configMap": { "name": "stub-plugin", "key": "plugin.wasm" }, "sha256": sha256_hex(&stub) },
        },
    }))
    .unwrap();
    Api::<Provider>::namespaced(client.clone(), namespace).create(&PostParams::default(), &provider).await.unwrap();
}

pub fn experiment(namespace: &str, name: &str, provider: &str) -> Experiment {
    serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Experiment",
        "metadata": { "name": name },
        "spec": { "provider": format!("{namespace}/{provider}"), "description": "first" },
    }))
    .unwrap()
}

/// Waits until the Experiment is in `state` and `done` holds; fails with what was seen.
async fn wait_for(
    api: &Api<Experiment>,
    name: &str,
    state: SynchronizationState,
    done: impl Fn(&Experiment) -> bool,
) -> Experiment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let experiment = api.get(name).await.unwrap();
        let current = experiment.status.as_ref().map(|s| s.synchronization_state()).unwrap_or_default();
        if current == state && done(&experiment) {
            return experiment;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("Experiment {name} did not reach {state}; last seen: {:#?}", experiment.status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn message(experiment: &Experiment) -> String {
    experiment.status.as_ref().and_then(|s| s.conditions.first()).map(|c| c.message.clone()).unwrap_or_default()
}

async fn gone(api: &Api<Experiment>, name: &str) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if api.get_opt(name).await.unwrap().is_none() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experiments_synchronise_through_the_plugin() {
    let (client, ns) = setup("experiments").await;
    let controllers = start::<Experiment>(&client, &ns).await;
    create_stub_provider(&client, &ns, "stub", &[]).await;
    let api: Api<Experiment> = Api::namespaced(client.clone(), &ns);

    // Create: Succeeded with the remote id, the version hash and the finalizer.
    api.create(&PostParams::default(), &experiment(&ns, "penguins", "stub")).await.unwrap();
    let created = wait_for(&api, "penguins", SynchronizationState::Succeeded, |_| true).await;
    let status = created.status.clone().unwrap();
    assert_eq!(status.provider.id, format!("experiment:{ns}/penguins"));
    assert_eq!(status.provider.name.to_string(), format!("{ns}/stub"));
    assert_eq!(status.version, created.compute_version());
    assert!(created.finalizers().iter().any(|f| f == FINALIZER));

    // Update: a new version, synchronised again.
    let change = json!({ "spec": { "description": "second" } });
    api.patch("penguins", &PatchParams::default(), &Patch::Merge(change)).await.unwrap();
    let updated = wait_for(&api, "penguins", SynchronizationState::Succeeded, |e| {
        e.status.as_ref().is_some_and(|s| s.version == e.compute_version() && s.observed_generation == Some(2))
    })
    .await;
    assert_ne!(updated.status.unwrap().version, status.version);

    // Permanent and transient plugin errors.
    api.create(&PostParams::default(), &experiment(&ns, "create-experiment-fail", "stub")).await.unwrap();
    let failed = wait_for(&api, "create-experiment-fail", SynchronizationState::Failed, |_| true).await;
    assert!(message(&failed).contains("permanent error: create experiment failed"), "{}", message(&failed));
    api.create(&PostParams::default(), &experiment(&ns, "create-experiment-transient", "stub")).await.unwrap();
    let retrying = wait_for(&api, "create-experiment-transient", SynchronizationState::Creating, |e| {
        message(e).contains("retrying in")
    })
    .await;
    assert!(message(&retrying).contains("create experiment failed transiently"), "{}", message(&retrying));

    // A changed provider fails the resource.
    create_stub_provider(&client, &ns, "other", &[]).await;
    let moved = json!({ "spec": { "provider": format!("{ns}/other") } });
    api.patch("penguins", &PatchParams::default(), &Patch::Merge(moved)).await.unwrap();
    let changed = wait_for(&api, "penguins", SynchronizationState::Failed, |_| true).await;
    assert_eq!(message(&changed), "the provider has changed");

    // allowedNamespaces.
    create_stub_provider(&client, &ns, "elsewhere", &["some-other-namespace"]).await;
    api.create(&PostParams::default(), &experiment(&ns, "refused", "elsewhere")).await.unwrap();
    let refused = wait_for(&api, "refused", SynchronizationState::Failed, |_| true).await;
    assert!(
        message(&refused).contains("is not in Provider") && message(&refused).contains("allowedNamespaces"),
        "{}",
        message(&refused)
    );

    // Deletion removes the remote experiment (through the Provider that holds it), then the object.
    api.delete("penguins", &DeleteParams::default()).await.unwrap();
    assert!(gone(&api, "penguins").await, "the finalizer was not released");

    // A failed delete is retried, not left stuck: the object stays, Deleting, saying so.
    api.create(&PostParams::default(), &experiment(&ns, "delete-experiment-fail", "stub")).await.unwrap();
    wait_for(&api, "delete-experiment-fail", SynchronizationState::Succeeded, |_| true).await;
    api.delete("delete-experiment-fail", &DeleteParams::default()).await.unwrap();
    let stuck =
        wait_for(&api, "delete-experiment-fail", SynchronizationState::Deleting, |e| message(e).contains("retrying"))
            .await;
    assert!(message(&stuck).contains("delete experiment failed"), "{}", message(&stuck));

    for controller in controllers {
        controller.abort();
    }
}

/// RunSchedules take the same path: created remotely with their definition, then deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_schedules_synchronise_through_the_plugin() {
    use kfp_operator::api::RunSchedule;
    let (client, ns) = setup("runschedules").await;
    let controllers = start::<RunSchedule>(&client, &ns).await;
    create_stub_provider(&client, &ns, "stub", &[]).await;
    let api: Api<RunSchedule> = Api::namespaced(client.clone(), &ns);
    let schedule: RunSchedule = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "RunSchedule",
        "metadata": { "name": "nightly" },
        "spec": { "provider": format!("{ns}/stub"), "pipeline": "penguin:v1-abc123", "schedule": { "cronExpression": "0 0 * * *" } },
    }))
    .unwrap();
    api.create(&PostParams::default(), &schedule).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let synced = loop {
        let current = api.get("nightly").await.unwrap();
        if current.status.as_ref().is_some_and(|s| s.synchronization_state() == SynchronizationState::Succeeded) {
            break current;
        }
        assert!(tokio::time::Instant::now() < deadline, "not Succeeded: {:#?}", current.status);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let status = synced.status.clone().unwrap();
    assert_eq!(status.provider.id, format!("runschedule:{ns}/nightly"));
    assert_eq!(status.version, synced.compute_version());

    api.delete("nightly", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while api.get_opt("nightly").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the finalizer was not released");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for controller in controllers {
        controller.abort();
    }
}

/// Pipelines: the framework must be offered by the Provider, its compiler plugin compiles the
/// (patched) definition, the provider plugin uploads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_compile_and_upload_through_the_plugins() {
    use kfp_operator::api::Pipeline;
    let (client, ns) = setup("pipelines").await;
    let controllers = start::<Pipeline>(&client, &ns).await;
    let compiler = plugins::bytes("stub_compiler");
    create_provider_with_frameworks(&client, &ns, json!([{
        "name": "tfx",
        "plugin": { "configMap": { "name": "plugins", "key": "compiler.wasm" }, "sha256": sha256_hex(&compiler) },
        "patches": [{ "type": "json", "payload": r#"[{"op": "add", "path": "/framework/parameters/beamArgs/0", "value": {"name": "--runner", "value": "DirectRunner"}}]"# }],
    }]))
    .await;

    let api: Api<Pipeline> = Api::namespaced(client.clone(), &ns);
    let pipeline = |name: &str, framework: &str| -> Pipeline {
        serde_json::from_value(json!({
            "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline",
            "metadata": { "name": name },
            "spec": { "provider": format!("{ns}/stub"), "image": "ghcr.io/team/penguin:v1", "framework": { "name": framework, "parameters": {} } },
        }))
        .unwrap()
    };
    for (name, framework) in [("penguin", "TFX"), ("compile-fail", "tfx"), ("other-framework", "kfpsdk")] {
        api.create(&PostParams::default(), &pipeline(name, framework)).await.unwrap();
    }
    let settled = |name: &'static str| {
        let api = api.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let current = api.get(name).await.unwrap();
                let state = current.status.as_ref().map(|s| s.synchronization_state()).unwrap_or_default();
                if matches!(state, SynchronizationState::Succeeded | SynchronizationState::Failed) {
                    return current;
                }
                assert!(tokio::time::Instant::now() < deadline, "{name} did not settle: {:#?}", current.status);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let message = |pipeline: &Pipeline| {
        pipeline.status.as_ref().and_then(|s| s.conditions.first()).map(|c| c.message.clone()).unwrap_or_default()
    };

    // The framework name matches case-insensitively, as upstream.
    let uploaded = settled("penguin").await;
    let status = uploaded.status.clone().unwrap();
    assert_eq!(status.synchronization_state(), SynchronizationState::Succeeded, "{}", message(&uploaded));
    assert_eq!(status.provider.id, format!("pipeline:{ns}/penguin"));
    assert_eq!(status.version, uploaded.compute_version());
    assert!(status.version.starts_with("v1-"));

    let failed = settled("compile-fail").await;
    assert!(message(&failed).contains("compile pipeline failed"), "the compiler plugin ran: {}", message(&failed));
    let unsupported = settled("other-framework").await;
    assert!(
        message(&unsupported).contains("[kfpsdk] framework not supported by Provider"),
        "{}",
        message(&unsupported)
    );

    for controller in controllers {
        controller.abort();
    }
}

/// Runs pin the latest Succeeded pipeline version (or the one they name), then start through
/// the plugin; a missing Pipeline or dependency keeps them waiting with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_pin_their_pipeline_and_start_through_the_plugin() {
    use kfp_operator::api::{Pipeline, Run};
    let (client, ns) = setup("runs").await;
    let mut controllers: Vec<_> = start::<Pipeline>(&client, &ns).await.into_iter().collect();
    let registry =
        Arc::new(PluginRegistry::new(Sandbox::new().unwrap(), client.clone(), OciSettings::default(), None, None));
    let run_context = Arc::new(Context::new(client.clone(), registry));
    let watched = ns.clone();
    controllers.push(tokio::spawn(async move {
        // This context has its own registry: load the Provider's plugin in it too.
        let provider_context = run_context.clone();
        let scope = watched.clone();
        tokio::join!(provider::run(provider_context, Some(&scope)), synced::run::<Run>(run_context, Some(&watched)));
    }));
    create_provider_with_frameworks(&client, &ns, json!([{ "name": "tfx" }])).await;
    let pipeline: Pipeline = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline",
        "metadata": { "name": "penguin" },
        "spec": { "provider": format!("{ns}/stub"), "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } },
    }))
    .unwrap();
    Api::<Pipeline>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pipeline).await.unwrap();

    let runs: Api<Run> = Api::namespaced(client.clone(), &ns);
    let run = |name: &str, pipeline: &str, parameters: serde_json::Value| -> Run {
        serde_json::from_value(json!({
            "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Run",
            "metadata": { "name": name },
            "spec": { "provider": format!("{ns}/stub"), "pipeline": pipeline, "parameters": parameters },
        }))
        .unwrap()
    };
    let from_upstream = json!([{ "name": "model", "valueFrom": { "runConfigurationRef": { "name": "upstream", "outputArtifact": "model" } } }]);
    for run in [
        run("latest", "penguin", json!([{ "name": "a", "value": "1" }])),
        run("pinned", "penguin:v9-abcdef", json!([])),
        run("no-pipeline", "missing", json!([])),
        run("no-dependency", "penguin", from_upstream),
    ] {
        runs.create(&PostParams::default(), &run).await.unwrap();
    }
    let observe = |name: &'static str, done: fn(&Run) -> bool| {
        let runs = runs.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let current = runs.get(name).await.unwrap();
                if done(&current) {
                    return current;
                }
                assert!(tokio::time::Instant::now() < deadline, "{name}: {:#?}", current.status);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    fn succeeded(run: &Run) -> bool {
        run.status.as_ref().is_some_and(|s| s.status.synchronization_state() == SynchronizationState::Succeeded)
    }
    fn waiting_message(run: &Run) -> String {
        run.status.as_ref().and_then(|s| s.status.conditions.first()).map(|c| c.message.clone()).unwrap_or_default()
    }

    let pipeline_version = {
        let latest = observe("latest", succeeded).await;
        let status = latest.status.clone().unwrap();
        assert!(status.status.provider.id.starts_with(&format!("run:{ns}/latest@")), "{}", status.status.provider.id);
        assert_eq!(status.status.version, latest.compute_version());
        status.dependencies.pipeline.version
    };
    let penguin = Api::<Pipeline>::namespaced(client.clone(), &ns).get("penguin").await.unwrap();
    assert_eq!(pipeline_version, penguin.status.unwrap().version, "pinned to the latest Succeeded version");
    let pinned = observe("pinned", succeeded).await;
    assert_eq!(pinned.status.unwrap().dependencies.pipeline.version, "v9-abcdef");

    let waiting = observe("no-pipeline", |run| waiting_message(run).contains("waiting for Pipeline")).await;
    assert!(!succeeded(&waiting));
    let waiting = observe("no-dependency", |run| waiting_message(run).contains("waiting for RunConfiguration")).await;
    assert!(
        waiting_message(&waiting).contains("to complete a run (parameter model takes its artifact model)"),
        "{}",
        waiting_message(&waiting)
    );
    assert!(!succeeded(&waiting));

    for controller in controllers {
        controller.abort();
    }
}

/// Creates ConfigMap `plugins` with the stub provider (`provider.wasm`) and compiler
/// (`compiler.wasm`), and Provider `stub` using the former, with these frameworks.
pub async fn create_provider_with_frameworks(client: &Client, namespace: &str, frameworks: serde_json::Value) {
    create_provider(client, namespace, "stub", "stub_provider", json!({ "frameworks": frameworks })).await;
}

/// The loop from a finished Run to its RunConfiguration and on to a dependent Run: completion
/// is polled through the plugin, the RunConfiguration's latest succeeded run gets the artifacts
/// the Run selects, and a Run taking a parameter from it resolves and starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_runs_feed_their_run_configuration_and_its_dependents() {
    use kfp_operator::api::{Pipeline, Run, RunConfiguration, run::CompletionState};
    let (client, ns) = setup("completion").await;
    let stack = start_stack(&client, &ns);
    create_provider_with_frameworks(&client, &ns, json!([{ "name": "tfx" }])).await;
    let object = |kind: &str, name: &str, labels: serde_json::Value, spec: serde_json::Value| json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name, "labels": labels }, "spec": spec });
    let provider = format!("{ns}/stub");
    let pipeline: Pipeline = serde_json::from_value(object(
        "Pipeline",
        "penguin",
        json!({}),
        json!({
            "provider": provider, "image": "img:v1", "framework": { "name": "tfx", "parameters": {} },
        }),
    ))
    .unwrap();
    Api::<Pipeline>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pipeline).await.unwrap();
    let training: RunConfiguration = serde_json::from_value(object(
        "RunConfiguration",
        "training",
        json!({}),
        json!({
            "run": { "provider": provider, "pipeline": "penguin" },
        }),
    ))
    .unwrap();
    let run_configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &ns);
    run_configurations.create(&PostParams::default(), &training).await.unwrap();

    let runs: Api<Run> = Api::namespaced(client.clone(), &ns);
    let rc_label = json!({ "pipelines.kubeflow.org/runconfiguration.name": "training" });
    let run = |name: &str, labels: serde_json::Value, extra: serde_json::Value| -> Run {
        let mut spec = json!({ "provider": provider, "pipeline": "penguin" });
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(object("Run", name, labels, spec)).unwrap()
    };
    let artifacts = json!({ "artifacts": [{ "name": "model", "path": "Pusher:pushed_model:0[pushed == 1]" }] });
    runs.create(&PostParams::default(), &run("training-1", rc_label, artifacts)).await.unwrap();
    runs.create(&PostParams::default(), &run("doomed-fails", json!({}), json!({}))).await.unwrap();
    let from_training = json!({ "parameters": [{ "name": "model", "valueFrom": { "runConfigurationRef": { "name": "training", "outputArtifact": "model" } } }] });
    runs.create(&PostParams::default(), &run("evaluation", json!({}), from_training)).await.unwrap();

    let completed = |name: &'static str| {
        let runs = runs.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            loop {
                let current = runs.get(name).await.unwrap();
                if let Some(state) = current.status.as_ref().and_then(|s| s.completion_state) {
                    return (current, state);
                }
                assert!(tokio::time::Instant::now() < deadline, "{name} did not complete: {:#?}", current.status);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let (training_run, state) = completed("training-1").await;
    assert_eq!(state, CompletionState::Succeeded);
    let training_status = training_run.status.unwrap();
    assert!(training_status.marked_completed_at.is_some());
    let (_, state) = completed("doomed-fails").await;
    assert_eq!(state, CompletionState::Failed);

    let latest = run_configurations.get("training").await.unwrap().status.unwrap().latest_runs.succeeded;
    assert_eq!(latest.provider_id, training_status.status.provider.id);
    assert_eq!(latest.artifacts.len(), 1);
    assert_eq!(latest.artifacts[0].location, format!("gs://root/{ns}/training-1/Pusher/pushed_model"));

    // The dependent Run resolves its parameter from that artifact and starts.
    let (evaluation, _) = completed("evaluation").await;
    let dependency = &evaluation.status.unwrap().dependencies.run_configurations["training"];
    assert_eq!(dependency.artifacts[0].location, latest.artifacts[0].location);
    stack.abort();
}

/// RunConfigurations as in examples/runconfiguration.yaml: a schedule and an onChange trigger,
/// and a second RunConfiguration that runs whenever the first succeeds, taking its artifact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_configurations_schedule_trigger_and_chain() {
    use kfp_operator::api::{Pipeline, Run, RunConfiguration, RunSchedule};
    let (client, ns) = setup("runconfigurations").await;
    let stack = start_stack(&client, &ns);
    create_provider_with_frameworks(&client, &ns, json!([{ "name": "tfx" }])).await;
    let provider = format!("{ns}/stub");
    let object = |kind: &str, name: &str, spec: serde_json::Value| json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name }, "spec": spec });
    let pipeline: Pipeline = serde_json::from_value(object(
        "Pipeline",
        "penguin",
        json!({
            "provider": provider, "image": "img:v1", "framework": { "name": "tfx", "parameters": {} },
        }),
    ))
    .unwrap();
    Api::<Pipeline>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pipeline).await.unwrap();
    let configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &ns);
    let training: RunConfiguration = serde_json::from_value(object("RunConfiguration", "training", json!({
        "run": { "provider": provider, "pipeline": "penguin", "artifacts": [{ "name": "model", "path": "Pusher:pushed_model:0[pushed == 1]" }] },
        "triggers": { "schedules": [{ "cronExpression": "0 0 * * *" }], "onChange": ["runSpec"] },
    })))
    .unwrap();
    let evaluation: RunConfiguration = serde_json::from_value(object("RunConfiguration", "evaluation", json!({
        "run": { "provider": provider, "pipeline": "penguin",
                 "parameters": [{ "name": "model", "valueFrom": { "runConfigurationRef": { "name": "training", "outputArtifact": "model" } } }] },
        "triggers": { "runConfigurations": ["training"] },
    })))
    .unwrap();
    configurations.create(&PostParams::default(), &training).await.unwrap();
    configurations.create(&PostParams::default(), &evaluation).await.unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let runs: Api<Run> = Api::namespaced(client.clone(), &ns);
    let schedules: Api<RunSchedule> = Api::namespaced(client.clone(), &ns);
    loop {
        let all_runs = runs.list(&Default::default()).await.unwrap().items;
        let by = |rc: &str| {
            all_runs
                .iter()
                .filter(|r| {
                    r.labels().get("pipelines.kubeflow.org/runconfiguration.name").map(String::as_str) == Some(rc)
                })
                .cloned()
                .collect::<Vec<_>>()
        };
        let (training_runs, evaluation_runs) = (by("training"), by("evaluation"));
        let evaluated = evaluation_runs.iter().any(|r| r.status.as_ref().is_some_and(|s| s.completion_state.is_some()));
        let rc_states: Vec<SynchronizationState> = configurations
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|rc| rc.status.as_ref().map(|s| s.synchronization_state()).unwrap_or_default())
            .collect();
        if evaluated && rc_states.iter().all(|s| *s == SynchronizationState::Succeeded) {
            // onChange runSpec started one training Run; the chain started one evaluation Run.
            assert_eq!(training_runs.len(), 1);
            assert_eq!(training_runs[0].labels()["pipelines.kubeflow.org/trigger-type"], "onChangeRunSpec");
            assert_eq!(evaluation_runs[0].labels()["pipelines.kubeflow.org/trigger-type"], "runConfiguration");
            let dependency = &evaluation_runs[0].status.as_ref().unwrap().dependencies.run_configurations["training"];
            assert!(dependency.artifacts[0].location.ends_with("/Pusher/pushed_model"));
            // One owned RunSchedule, synchronised, pinned to the pipeline's version.
            let owned = schedules.list(&Default::default()).await.unwrap().items;
            assert_eq!(owned.len(), 1);
            assert!(owned[0].spec.pipeline.as_ref().unwrap().version.as_deref().is_some_and(|v| v.starts_with("v1-")));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "runs: training {training_runs:#?} evaluation {evaluation_runs:#?}; RC states {rc_states:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    stack.abort();
}

/// Starts every controller and the completion poller (polling every 500 ms) for one namespace.
pub fn start_stack(client: &Client, namespace: &str) -> tokio::task::JoinHandle<()> {
    start_stack_in(client, &[namespace], None)
}

/// Starts every controller and the completion poller for each namespace, sharing one plugin
/// registry as one operator process does.
pub fn start_stack_in(client: &Client, namespaces: &[&str], ttl: Option<Duration>) -> tokio::task::JoinHandle<()> {
    use kfp_operator::{
        api::{Pipeline, Run, RunSchedule},
        controllers::{
            run_completion::{self, CompletionSettings},
            run_configuration,
        },
    };
    let registry =
        Arc::new(PluginRegistry::new(Sandbox::new().unwrap(), client.clone(), OciSettings::default(), None, None));
    let context = Arc::new(Context::new(client.clone(), registry));
    let stacks = namespaces.iter().map(|namespace| {
        let (context, scope) = (context.clone(), namespace.to_string());
        async move {
            let settings =
                CompletionSettings { interval: Duration::from_millis(500), concurrency: 4, completed_run_ttl: ttl };
            tokio::join!(
                provider::run(context.clone(), Some(&scope)),
                synced::run::<Pipeline>(context.clone(), Some(&scope)),
                synced::run::<Run>(context.clone(), Some(&scope)),
                synced::run::<RunSchedule>(context.clone(), Some(&scope)),
                run_configuration::run(context.clone(), Some(&scope)),
                run_completion::run(context, Some(&scope), settings),
            );
        }
    });
    let all = futures::future::join_all(stacks);
    tokio::spawn(async move {
        all.await;
    })
}

/// With a runCompletionTTL, a completed Run is deleted (remotely too, through its finalizer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_runs_are_deleted_after_the_ttl() {
    use kfp_operator::api::{Pipeline, Run};
    let (client, ns) = setup("ttl").await;
    let stack = start_stack_in(&client, &[&ns], Some(Duration::from_secs(1)));
    create_provider_with_frameworks(&client, &ns, json!([{ "name": "tfx" }])).await;
    let object = |kind: &str, name: &str, spec: serde_json::Value| json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name }, "spec": spec });
    let pipeline: Pipeline = serde_json::from_value(object(
        "Pipeline",
        "penguin",
        json!({
            "provider": format!("{ns}/stub"), "image": "img:v1", "framework": { "name": "tfx", "parameters": {} },
        }),
    ))
    .unwrap();
    Api::<Pipeline>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pipeline).await.unwrap();
    let run: Run = serde_json::from_value(object(
        "Run",
        "short-lived",
        json!({ "provider": format!("{ns}/stub"), "pipeline": "penguin" }),
    ))
    .unwrap();
    let runs: Api<Run> = Api::namespaced(client.clone(), &ns);
    runs.create(&PostParams::default(), &run).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let mut completed = false;
    loop {
        match runs.get_opt("short-lived").await.unwrap() {
            Some(run) => completed |= run.status.as_ref().is_some_and(|s| s.marked_completed_at.is_some()),
            None => break,
        }
        assert!(tokio::time::Instant::now() < deadline, "the completed Run was not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(completed, "the Run was deleted without having been seen completed");
    stack.abort();
}

/// A plugin that hangs or traps fails the resource it was called for, with the plugin's
/// message; the operator keeps synchronising everything else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_plugin_fails_only_its_resource() {
    use kfp_operator::api::Pipeline;
    let (client, ns) = setup("hostile-plugin").await;
    let stack = start_stack(&client, &ns);
    let limits = json!({ "plugin": { "limits": { "timeout": "1s" } }, "frameworks": [{ "name": "tfx" }] });
    create_provider(&client, &ns, "hostile", "hostile_provider", limits).await;
    let pipelines: Api<Pipeline> = Api::namespaced(client.clone(), &ns);
    for name in ["loop", "panic", "fine"] {
        let pipeline: Pipeline = serde_json::from_value(json!({
            "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline", "metadata": { "name": name },
            "spec": { "provider": format!("{ns}/hostile"), "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } },
        }))
        .unwrap();
        pipelines.create(&PostParams::default(), &pipeline).await.unwrap();
    }
    let settled = async |name: &str| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let status = pipelines.get(name).await.unwrap().status.unwrap_or_default();
            let state = status.synchronization_state();
            if matches!(state, SynchronizationState::Succeeded | SynchronizationState::Failed) {
                return (state, status.conditions.first().map(|c| c.message.clone()).unwrap_or_default());
            }
            assert!(tokio::time::Instant::now() < deadline, "{name} did not settle: {status:#?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (state, message) = settled("loop").await;
    assert_eq!(state, SynchronizationState::Failed);
    assert!(message.contains("create-pipeline: deadline of 1s exceeded"), "{message}");
    let (state, message) = settled("panic").await;
    assert_eq!(state, SynchronizationState::Failed);
    assert!(message.contains("the hostile plugin panics on purpose"), "{message}");
    assert_eq!(settled("fine").await.0, SynchronizationState::Succeeded);
    stack.abort();
}
