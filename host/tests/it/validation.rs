//! Invalid objects are refused by the API server itself (CRD patterns and CEL rules), with a
//! message that says what to fix. One test per rule and per pattern; each also checks that the
//! valid neighbour of the bad object is accepted, so a rule that refuses everything fails too.

use kfp_operator::api::{Experiment, Pipeline, Provider, Run, RunConfiguration, RunSchedule};
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::{assert_invalid, create, dynamic_api, setup};

fn object(kind: &str, name: &str, spec: Value) -> Value {
    json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name }, "spec": spec })
}

fn run_spec() -> Value {
    json!({ "provider": "team/kfp", "pipeline": "penguin" })
}

fn plugin() -> Value {
    json!({ "configMap": { "name": "cm", "key": "plugin.wasm" }, "sha256": "a".repeat(64) })
}

fn provider_spec(plugin: Value) -> Value {
    json!({ "pipelineRootStorage": "gs://root", "plugin": plugin })
}

fn reference_parameter() -> Value {
    json!({ "name": "model", "valueFrom": { "runConfigurationRef": { "name": "upstream", "outputArtifact": "model" } } })
}

#[tokio::test]
async fn run_spec_is_immutable() {
    let (client, ns) = setup("cel-immutable").await;
    create::<Run>(&client, &ns, object("Run", "r", run_spec())).await.expect("a valid Run");
    let api = dynamic_api::<Run>(&client, &ns);

    let change = Patch::Merge(json!({ "spec": { "experimentName": "other" } }));
    assert_invalid(api.patch("r", &PatchParams::default(), &change).await, "the spec of a Run is immutable");

    // Metadata stays editable.
    let labels = Patch::Merge(json!({ "metadata": { "labels": { "team": "ml" } } }));
    api.patch("r", &PatchParams::default(), &labels).await.expect("labels can change");

    // A RunConfiguration's run template is the same type and must stay mutable.
    create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "rc", json!({ "run": run_spec() })))
        .await
        .unwrap();
    dynamic_api::<RunConfiguration>(&client, &ns)
        .patch("rc", &PatchParams::default(), &Patch::Merge(json!({ "spec": { "run": { "experimentName": "x" } } })))
        .await
        .expect("a RunConfiguration's spec.run can change");
}

#[tokio::test]
async fn a_parameter_takes_value_or_value_from() {
    let (client, ns) = setup("cel-parameter").await;
    let message = "a parameter takes exactly one of value or valueFrom";
    let mut both = reference_parameter();
    both["value"] = json!("literal");

    let mut spec = run_spec();
    spec["parameters"] = json!([both]);
    assert_invalid(create::<Run>(&client, &ns, object("Run", "both", spec.clone())).await, message);
    assert_invalid(
        create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "both", json!({ "run": spec }))).await,
        message,
    );

    // Either one alone is fine, and so is an empty value beside valueFrom (upstream writes
    // value with omitempty, so "" and absent are the same).
    let mut empty_value = reference_parameter();
    empty_value["value"] = json!("");
    let mut spec = run_spec();
    spec["parameters"] = json!([reference_parameter(), { "name": "x", "value": "1" }, empty_value]);
    create::<Run>(&client, &ns, object("Run", "fine", spec)).await.expect("valid parameters");
}

#[tokio::test]
async fn duplicate_schedules_are_refused() {
    let (client, ns) = setup("cel-schedules").await;
    let daily = json!({ "cronExpression": "0 0 * * *", "startTime": "2026-01-01T00:00:00Z" });
    let spec =
        json!({ "run": run_spec(), "triggers": { "schedules": [daily, { "cronExpression": "0 6 * * *" }, daily] } });
    assert_invalid(
        create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "dup", spec)).await,
        "spec.triggers.schedules has duplicate entries",
    );
    let same_cron_other_window = json!({ "cronExpression": "0 0 * * *" });
    let spec = json!({ "run": run_spec(), "triggers": { "schedules": [daily, same_cron_other_window] } });
    create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "distinct", spec))
        .await
        .expect("distinct schedules");
}

#[tokio::test]
async fn duplicate_on_change_triggers_are_refused() {
    let (client, ns) = setup("cel-onchange").await;
    let spec = json!({ "run": run_spec(), "triggers": { "onChange": ["pipeline", "runSpec", "pipeline"] } });
    assert_invalid(
        create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "dup", spec)).await,
        "spec.triggers.onChange has duplicate entries",
    );
    let spec = json!({ "run": run_spec(), "triggers": { "onChange": ["bogus"] } });
    assert_invalid(
        create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "enum", spec)).await,
        "supported values: \"pipeline\", \"runSpec\"",
    );
    let spec = json!({ "run": run_spec(), "triggers": { "onChange": ["pipeline", "runSpec"] } });
    create::<RunConfiguration>(&client, &ns, object("RunConfiguration", "ok", spec)).await.expect("both triggers once");
}

#[tokio::test]
async fn a_plugin_has_exactly_one_source() {
    let (client, ns) = setup("cel-source").await;
    let message = "a plugin needs exactly one source";
    let mut neither = plugin();
    neither.as_object_mut().unwrap().remove("configMap");
    let mut both = plugin();
    both["oci"] = json!({ "reference": format!("registry.local/p@sha256:{}", "b".repeat(64)) });
    for (name, bad) in [("neither", neither.clone()), ("both", both.clone())] {
        assert_invalid(create::<Provider>(&client, &ns, object("Provider", name, provider_spec(bad))).await, message);
    }
    // The same rule guards framework compiler plugins.
    let mut spec = provider_spec(plugin());
    spec["frameworks"] = json!([{ "name": "tfx", "plugin": both }]);
    assert_invalid(create::<Provider>(&client, &ns, object("Provider", "framework", spec)).await, message);

    let mut oci_only = both.clone();
    oci_only.as_object_mut().unwrap().remove("configMap");
    for (name, good) in [("configmap", plugin()), ("oci", oci_only)] {
        create::<Provider>(&client, &ns, object("Provider", name, provider_spec(good))).await.expect("one source");
    }
}

#[tokio::test]
async fn a_plugin_digest_is_64_lowercase_hex_digits() {
    let (client, ns) = setup("cel-digest").await;
    for (name, digest) in
        [("short", "abc123".to_owned()), ("upper", "A".repeat(64)), ("prefixed", format!("sha256:{}", "a".repeat(57)))]
    {
        let mut bad = plugin();
        bad["sha256"] = json!(digest);
        assert_invalid(
            create::<Provider>(&client, &ns, object("Provider", name, provider_spec(bad))).await,
            "sha256 must be the 64 lowercase hex digits",
        );
    }
    let mut missing = plugin();
    missing.as_object_mut().unwrap().remove("sha256");
    assert_invalid(
        create::<Provider>(&client, &ns, object("Provider", "missing", provider_spec(missing))).await,
        "sha256",
    );
}

#[tokio::test]
async fn an_oci_reference_pins_a_digest() {
    let (client, ns) = setup("cel-oci").await;
    let message = "oci.reference must pin the manifest digest";
    for (name, reference) in [
        ("tag", "registry.local/kfp/provider:v1".to_owned()),
        ("short", "registry.local/kfp/provider@sha256:abc".to_owned()),
        ("algorithm", format!("registry.local/kfp/provider@sha512:{}", "c".repeat(64))),
    ] {
        let plugin = json!({ "oci": { "reference": reference }, "sha256": "a".repeat(64) });
        assert_invalid(
            create::<Provider>(&client, &ns, object("Provider", name, provider_spec(plugin))).await,
            message,
        );
    }
}

#[tokio::test]
async fn provider_references_need_a_namespace() {
    let (client, ns) = setup("pattern-provider").await;
    let framework = json!({ "name": "tfx", "parameters": {} });
    for (name, provider) in [("no-namespace", "kfp"), ("too-many", "a/b/c"), ("upper", "Team/kfp")] {
        let spec = json!({ "provider": provider, "image": "img", "framework": framework });
        assert_invalid(create::<Pipeline>(&client, &ns, object("Pipeline", name, spec)).await, "spec.provider");
        assert_invalid(
            create::<Experiment>(&client, &ns, object("Experiment", name, json!({ "provider": provider }))).await,
            "spec.provider",
        );
        assert_invalid(
            create::<RunSchedule>(&client, &ns, object("RunSchedule", name, json!({ "provider": provider }))).await,
            "spec.provider",
        );
        let run = json!({ "run": { "provider": provider } });
        assert_invalid(
            create::<RunConfiguration>(&client, &ns, object("RunConfiguration", name, run)).await,
            "spec.run.provider",
        );
    }
}

#[tokio::test]
async fn pipeline_identifiers_follow_the_pattern() {
    let (client, ns) = setup("pattern-pipeline-id").await;
    for (name, pipeline) in [("three-parts", "a:b:c"), ("slash", "team/p"), ("empty-version", "p:")] {
        let spec = json!({ "provider": "team/kfp", "pipeline": pipeline });
        assert_invalid(create::<Run>(&client, &ns, object("Run", name, spec)).await, "spec.pipeline");
    }
    let spec = json!({ "provider": "team/kfp", "pipeline": "penguin_1:v1-abc.2" });
    create::<Run>(&client, &ns, object("Run", "pinned", spec)).await.expect("a pinned pipeline");
}

#[tokio::test]
async fn artifact_paths_follow_the_pattern() {
    let (client, ns) = setup("pattern-artifact").await;
    for (name, path) in
        [("no-output", "Pusher"), ("bad-index", "Pusher:model:x"), ("open-filter", "Pusher:model[pushed")]
    {
        let mut spec = run_spec();
        spec["artifacts"] = json!([{ "name": "model", "path": path }]);
        assert_invalid(create::<Run>(&client, &ns, object("Run", name, spec)).await, "spec.artifacts[0].path");
    }
    let mut spec = run_spec();
    spec["artifacts"] = json!([{ "name": "model", "path": "Pusher:pushed_model:0[pushed == 1]" }]);
    create::<Run>(&client, &ns, object("Run", "filtered", spec)).await.expect("a filtered path");
}

#[tokio::test]
async fn provider_fields_follow_their_patterns() {
    let (client, ns) = setup("pattern-provider-fields").await;
    let mut spec = provider_spec(plugin());
    spec["serviceAccount"] = json!("Not_A_Name");
    assert_invalid(create::<Provider>(&client, &ns, object("Provider", "sa", spec)).await, "spec.serviceAccount");

    let mut spec = provider_spec(plugin());
    spec["frameworks"] = json!([{ "name": "tfx", "patches": [{ "type": "yaml", "payload": "{}" }] }]);
    assert_invalid(
        create::<Provider>(&client, &ns, object("Provider", "patch", spec)).await,
        "supported values: \"json\", \"merge\"",
    );

    let mut with_scheme = plugin();
    with_scheme["allowedHosts"] = json!(["api.example.com", "https://api.example.com/v1"]);
    assert_invalid(
        create::<Provider>(&client, &ns, object("Provider", "hosts", provider_spec(with_scheme))).await,
        "spec.plugin.allowedHosts[1]",
    );

    let mut bad_timeout = plugin();
    bad_timeout["limits"] = json!({ "timeout": "ten seconds" });
    assert_invalid(
        create::<Provider>(&client, &ns, object("Provider", "timeout", provider_spec(bad_timeout))).await,
        "spec.plugin.limits.timeout",
    );

    let mut good = plugin();
    good["allowedHosts"] = json!(["api.example.com", "*.googleapis.com", "127.0.0.1:8080"]);
    good["limits"] = json!({ "timeout": "1m30s", "memory": "64Mi", "maxOutput": "4Mi" });
    let mut spec = provider_spec(good);
    spec["serviceAccount"] = json!("kfp-provider");
    create::<Provider>(&client, &ns, object("Provider", "fine", spec)).await.expect("a valid Provider");
}
