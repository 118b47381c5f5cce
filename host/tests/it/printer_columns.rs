//! `kubectl get` columns come back from the API server's Table API as upstream defines them.

use kfp_operator::api::{Experiment, Pipeline, Provider, Run, RunConfiguration, RunSchedule};
use kube::{
    Client, Resource,
    api::{Patch, PatchParams},
};
use serde_json::{Value, json};

use crate::support::{create, dynamic_api, setup};

fn synchronized(reason: &str) -> Value {
    json!([{
        "type": "Synchronized", "status": "True", "reason": reason, "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }])
}

fn synchronised_status() -> Value {
    json!({
        "provider": { "name": "team/kfp", "id": "remote-42" },
        "version": "v1-abc123",
        "conditions": synchronized("Succeeded"),
    })
}

/// Creates the object, writes `status` through the status subresource and returns the
/// server's table for the kind in that namespace: (column names, first row's cells).
async fn table_for<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
    object: Value,
    status: Value,
) -> (Vec<String>, Vec<Value>) {
    let name = object["metadata"]["name"].as_str().unwrap().to_owned();
    create::<K>(client, namespace, object).await.expect("created");
    dynamic_api::<K>(client, namespace)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status })))
        .await
        .expect("status written");

    let url = K::url_path(&(), Some(namespace));
    let request = http::Request::get(url)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: Value = client.request(request).await.expect("a table");
    let columns =
        table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap().to_owned()).collect();
    let cells = table["rows"][0]["cells"].as_array().expect("one row").clone();
    (columns, cells)
}

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name }, "spec": spec })
}

/// Creates the object with `status` and checks the kind's table: its columns and the row's
/// cells, both listed after the `Name` column the server always puts first.
async fn assert_table<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
    object: Value,
    status: Value,
    expected: &[(&str, &str)],
) {
    let name = object["metadata"]["name"].clone();
    let (columns, cells) = table_for::<K>(client, namespace, object, status).await;
    let mut expected_columns = vec!["Name"];
    let mut expected_cells = vec![name];
    for (column, cell) in expected {
        expected_columns.push(column);
        expected_cells.push(json!(cell));
    }
    assert_eq!(columns, expected_columns, "{} columns", K::kind(&()));
    assert_eq!(cells, expected_cells, "{} cells", K::kind(&()));
}

const SYNCHRONISED_CELLS: [(&str, &str); 3] =
    [("Provider", "team/kfp"), ("SynchronizationState", "Succeeded"), ("Version", "v1-abc123")];

#[tokio::test]
async fn pipeline_columns() {
    let (client, ns) = setup("columns-pipeline").await;
    let spec = json!({ "provider": "team/kfp", "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } });
    let pipeline = object("Pipeline", "p", spec);
    assert_table::<Pipeline>(&client, &ns, pipeline, synchronised_status(), &SYNCHRONISED_CELLS).await;
}

#[tokio::test]
async fn run_columns() {
    let (client, ns) = setup("columns-run").await;
    let mut status = synchronised_status();
    status["completionState"] = json!("Failed");
    let run = object("Run", "r", json!({ "provider": "team/kfp" }));
    let mut expected = SYNCHRONISED_CELLS.to_vec();
    expected.push(("CompletionState", "Failed"));
    assert_table::<Run>(&client, &ns, run, status, &expected).await;
}

#[tokio::test]
async fn run_schedule_and_experiment_columns() {
    let (client, ns) = setup("columns-schedule").await;
    let spec = json!({ "provider": "team/kfp", "schedule": { "cronExpression": "0 0 * * *" } });
    let schedule = object("RunSchedule", "s", spec);
    assert_table::<RunSchedule>(&client, &ns, schedule, synchronised_status(), &SYNCHRONISED_CELLS).await;

    let mut status = synchronised_status();
    status["conditions"] = synchronized("Deleting");
    let experiment = object("Experiment", "e", json!({ "provider": "team/kfp", "description": "d" }));
    let expected = [("Provider", "team/kfp"), ("SynchronizationState", "Deleting"), ("Version", "v1-abc123")];
    assert_table::<Experiment>(&client, &ns, experiment, status, &expected).await;
}

#[tokio::test]
async fn run_configuration_and_provider_columns() {
    let (client, ns) = setup("columns-rc").await;
    let rc = object("RunConfiguration", "rc", json!({ "run": { "provider": "team/kfp" } }));
    let status = json!({ "provider": "team/kfp", "conditions": synchronized("Updating") });
    let expected = [("SynchronizationState", "Updating"), ("Provider", "team/kfp")];
    assert_table::<RunConfiguration>(&client, &ns, rc, status, &expected).await;

    let spec = json!({
        "pipelineRootStorage": "gs://root",
        "plugin": { "configMap": { "name": "cm", "key": "plugin.wasm" }, "sha256": "a".repeat(64) },
    });
    let status = json!({ "conditions": synchronized("Failed") });
    let provider = object("Provider", "kfp", spec);
    assert_table::<Provider>(&client, &ns, provider, status, &[("SynchronizationState", "Failed")]).await;
}
