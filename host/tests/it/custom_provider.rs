//! The custom-provider template in examples/ builds, is a provider, and answers `unsupported`
//! for what it does not implement, as its README says.

use kfp_operator::plugins::{
    Limits, PluginErrorKind, PluginHandle, PluginId, ProviderRequest, Sandbox, http_policy::HttpPolicy, sha256_hex,
};

use crate::sandbox::context;

#[tokio::test]
async fn the_custom_provider_template_builds_and_runs() {
    let template = kfp_test_support::repo_root().join("examples/custom-provider");
    let target = kfp_test_support::plugins::build().join("../../..").join("custom-provider");
    let wasm_dir = kfp_test_support::plugins::build_wasm_workspace(&template, &target).expect("the template builds");

    let bytes = std::fs::read(wasm_dir.join("my_provider.wasm")).unwrap();
    let id = PluginId { name: "test/my-provider".into(), sha256: sha256_hex(&bytes) };
    let prepared = Sandbox::new().unwrap().load(&id, &bytes).unwrap();
    assert_eq!(prepared.world(), "provider");
    let handle = PluginHandle::new(prepared, Limits::default(), HttpPolicy::default(), context("{}"));
    let error = handle.call_provider(&ProviderRequest::DeleteExperiment { id: "x".into() }).await.unwrap_err();
    assert!(matches!(error.kind, PluginErrorKind::Unsupported(_)), "{error}");
    // Without its parameter it says what to set.
    let error = handle.call_provider(&ProviderRequest::DeletePipeline { id: "x".into() }).await.unwrap_err();
    assert!(error.to_string().contains("set spec.parameters.apiUrl on the Provider"), "{error}");
}
