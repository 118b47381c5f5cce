//! Version-hash vectors for every kind, from `tests/hash-vectors/vectors.txt`: the output of
//! a Go program following upstream's hasher byte layout with Go's own `encoding/json`, `time`
//! and `distribution/reference` (the integration tests re-run it and compare). An object
//! upstream synchronised must keep its `status.version` here, so these vectors are a
//! compatibility contract: never regenerate them to make a test pass.

use serde_json::json;

/// The vector named `name` in `vectors.txt` (`name value` per line).
fn vector(name: &str) -> &'static str {
    include_str!("../../../tests/hash-vectors/vectors.txt")
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no vector {name:?} in tests/hash-vectors/vectors.txt"))
}

use super::{Experiment, Pipeline, Run, RunSchedule, hashing::ObjectHasher, hashing::short_version};

fn pipeline(spec: serde_json::Value) -> Pipeline {
    serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline",
        "metadata": { "name": "penguin", "namespace": "team" },
        "spec": spec,
    }))
    .unwrap()
}

#[test]
fn pipeline_versions() {
    let full = pipeline(json!({
        "provider": "kfp/provider",
        "image": "ghcr.io/team/penguin:v1.2",
        "env": [{ "name": "b", "value": "2" }, { "name": "a", "value": "1" }, { "name": "a", "value": "0" }],
        "framework": { "name": "tfx", "parameters": {
            "components": "penguin.create_components",
            "beamArgs": [{ "value": "DirectRunner", "name": "--runner" }],
            "usePipelineSpec2_1": true,
            "threshold": 0.50,
            "big": 1e21,
            "html": "<a&b> \u{2028}",
            "nothing": null,
        }},
    }));
    assert_eq!(full.compute_version(), vector("pipeline_full"));

    // The Provider is not part of the hash.
    let mut other_provider = full.clone();
    other_provider.spec.provider = "other/provider".parse().unwrap();
    assert_eq!(other_provider.compute_version(), vector("pipeline_full"));

    let digest = format!("image@sha256:{}", "a".repeat(64));
    let pinned = pipeline(json!({
        "provider": "kfp/provider", "image": digest,
        "framework": { "name": "kfpsdk", "parameters": {} },
    }));
    assert_eq!(pinned.compute_version(), vector("pipeline_digest"));

    let untagged = pipeline(json!({
        "provider": "kfp/provider", "image": "image",
        "framework": { "name": "tfx", "parameters": { "pipeline": "m.p" } },
    }));
    assert_eq!(untagged.compute_version(), vector("pipeline_latest"));
}

#[test]
fn experiment_version() {
    let experiment: Experiment = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Experiment",
        "metadata": { "name": "e" },
        "spec": { "provider": "kfp/provider", "description": "An experiment <with> html & stuff" },
    }))
    .unwrap();
    assert_eq!(experiment.compute_version(), vector("experiment"));

    // Hand-derived: the description as one NUL-terminated field.
    let mut hasher = ObjectHasher::new();
    hasher.write_str("An experiment <with> html & stuff");
    assert_eq!(short_version(&hasher.finish()), vector("experiment"));
}

fn run_spec_json() -> serde_json::Value {
    json!({
        "provider": "kfp/provider",
        "pipeline": "penguin:v1-abc123",
        "experimentName": "exp",
        "parameters": [
            { "name": "b", "value": "x" },
            { "name": "a", "valueFrom": { "runConfigurationRef": { "name": "ns/rc", "outputArtifact": "model", "optional": true } } },
            { "name": "a", "valueFrom": { "runConfigurationRef": { "name": "another-rc", "outputArtifact": "model" } } },
            { "name": "a", "value": "lit" },
            { "name": "c", "valueFrom": { "runConfigurationRef": { "name": "ns/rc", "outputArtifact": "model", "optional": true } } },
            { "name": "c", "valueFrom": { "runConfigurationRef": { "name": "ns/rc", "outputArtifact": "model" } } },
        ],
        "artifacts": [
            { "name": "pushed", "path": "Pusher:pushed_model[pushed == 1]" },
            { "name": "examples", "path": "CsvExampleGen:examples" },
        ],
    })
}

#[test]
fn run_and_run_spec_versions() {
    let run: Run = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Run",
        "metadata": { "name": "r" },
        "spec": run_spec_json(),
        "status": { "dependencies": { "pipeline": { "version": "v1-abc123" } } },
    }))
    .unwrap();
    assert_eq!(run.spec.compute_version(), vector("run_spec"));
    assert_eq!(run.compute_version(), vector("run"));

    // Parameter and artifact order in the manifest does not matter.
    let mut reordered = run.clone();
    reordered.spec.parameters.reverse();
    reordered.spec.artifacts.reverse();
    assert_eq!(reordered.compute_version(), vector("run"));

    let empty: Run = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Run",
        "metadata": { "name": "r" },
        "spec": { "provider": "kfp/provider" },
    }))
    .unwrap();
    assert_eq!(empty.compute_version(), vector("run_empty"));
}

#[test]
fn run_schedule_version() {
    let schedule: RunSchedule = serde_json::from_value(json!({
        "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "RunSchedule",
        "metadata": { "name": "s" },
        "spec": {
            "provider": "kfp/provider",
            "pipeline": "penguin:v1-abc123",
            "parameters": [{ "name": "b", "value": "2" }, { "name": "a", "value": "1" }],
            "artifacts": [
                { "name": "pushed", "path": "Pusher:pushed_model[pushed == 1]" },
                { "name": "examples", "path": "CsvExampleGen:examples" },
            ],
            "schedule": {
                "cronExpression": "0 0 * * *",
                "startTime": "2024-01-01T00:00:00Z",
                "endTime": "2024-06-30T13:30:00.25+01:00",
            },
        },
    }))
    .unwrap();
    assert_eq!(schedule.compute_version(), vector("run_schedule"));
}

#[test]
fn schedule_times_format_like_go() {
    let time: jiff::Timestamp = "2024-06-30T13:30:00.25+01:00".parse().unwrap();
    assert_eq!(super::hashing::go_time_string(&time), vector("time_string"));
}
