//! `kfp-operator plugin inspect` and `plugin call`, as a plugin author runs them.

use std::process::{Command, Output};

use kfp_test_support::plugins;

fn kfp_operator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kfp-operator"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("running kfp-operator")
}

fn wasm(name: &str) -> String {
    plugins::build().join(format!("{name}.wasm")).display().to_string()
}

#[test]
fn inspect_shows_world_digest_and_interfaces() {
    let output = kfp_operator(&["plugin", "inspect", &wasm("stub_provider")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8(output.stdout).unwrap();
    let digest = kfp_operator::plugins::sha256_hex(&plugins::bytes("stub_provider"));
    for expected in [
        format!("sha256:  {digest}"),
        "world:   kfp:operator/provider@0.1.0".into(),
        "kfp:operator/host@0.1.0".into(),
        "create-pipeline".into(),
    ] {
        assert!(text.contains(&expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn call_prints_results_and_typed_errors() {
    let definition =
        r#"{"name":"team/p","version":"v1","image":"img","env":[],"framework":{"name":"tfx","parameters_json":"{}"}}"#;
    let output = kfp_operator(&[
        "plugin",
        "call",
        &wasm("stub_provider"),
        "create-pipeline",
        &format!(r#"{{"definition":{definition},"compiled_pipeline":"{{}}"}}"#),
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        r#"{
  "id": "pipeline:team/p"
}"#
    );

    let output = kfp_operator(&[
        "plugin",
        "call",
        &wasm("stub_provider"),
        "delete-pipeline",
        r#"{"id":"pipeline:team/delete-pipeline-fail"}"#,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.starts_with("error: plugin stub_provider.wasm (sha256:"), "{stderr}");
    assert!(stderr.contains("delete-pipeline: permanent error: delete pipeline failed"), "{stderr}");
    assert!(!stderr.contains("Stack backtrace"), "{stderr}");

    let output = kfp_operator(&[
        "plugin",
        "call",
        &wasm("hostile_provider"),
        "create-pipeline",
        &format!(r#"{{"definition":{},"compiled_pipeline":""}}"#, definition.replace("team/p", "team/loop")),
        "--timeout",
        "200ms",
    ]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("deadline of 200ms exceeded"));

    let output = kfp_operator(&[
        "plugin",
        "call",
        &wasm("stub_compiler"),
        "compile",
        &format!(r#"{{"definition":{definition}}}"#),
    ]);
    let compiled: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(compiled["pipelineInfo"]["name"], "team-p");

    let output = kfp_operator(&["plugin", "call", &wasm("stub_provider"), "no-such-operation", "{}"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("ARGUMENTS do not fit operation \"no-such-operation\""));
}
