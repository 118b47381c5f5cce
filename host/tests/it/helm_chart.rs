//! The chart as a platform engineer installs it: `helm install` into the real control plane,
//! then the operator started with the Deployment's own arguments and environment, as the
//! chart's ServiceAccount (a token from the TokenRequest API), so that the chart's RBAC is
//! proven by the operator doing its whole job: plugins from a ConfigMap, every kind, status,
//! finalizers, owned Runs and RunSchedules, Run deletion after the TTL, Events and the Lease.

use std::time::Duration;

use k8s_openapi::api::{
    apps::v1::Deployment,
    authentication::v1::TokenRequest,
    core::v1::{Event, ServiceAccount},
};
use kfp_operator::api::{Pipeline, Run, RunConfiguration, conditions::SynchronizationState};
use kube::{
    Api,
    api::{ListParams, PostParams},
    config::{AuthInfo, Kubeconfig},
};
use serde_json::json;

use crate::{
    operator_process::{Replica, wait_until},
    support::{create_provider, setup},
};

fn helm(args: &[&str]) -> String {
    let helm = kfp_test_support::binaries::ensure().expect("the test control plane binaries").join("helm");
    let output = std::process::Command::new(&helm)
        .args(args)
        .env("KUBECONFIG", kfp_test_support::shared_kubeconfig())
        .env("HELM_CACHE_HOME", std::env::temp_dir().join("kfp-helm-cache"))
        .env("HELM_CONFIG_HOME", std::env::temp_dir().join("kfp-helm-config"))
        .output()
        .expect("running helm");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "helm {args:?} failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// A kubeconfig for the shared control plane that authenticates with `token` only.
fn kubeconfig_with_token(token: &str, path: &std::path::Path) {
    let mut config = Kubeconfig::read_from(kfp_test_support::shared_kubeconfig()).unwrap();
    for named in &mut config.auth_infos {
        named.auth_info = Some(AuthInfo { token: Some(token.to_owned().into()), ..AuthInfo::default() });
    }
    std::fs::write(path, serde_yaml::to_string(&config).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_installs_and_its_rbac_lets_the_operator_do_its_job() {
    let (client, ns) = setup("chart").await;
    let chart = kfp_test_support::repo_root().join("charts/kfp-operator");
    helm(&[
        "install",
        &ns,
        &chart.display().to_string(),
        "--namespace",
        &ns,
        "--set",
        &format!("watchNamespace={ns}"),
        "--set",
        "runCompletionTTL=1s",
    ]);

    // The Deployment runs the operator with the chart's arguments under its ServiceAccount.
    let deployment =
        Api::<Deployment>::namespaced(client.clone(), &ns).get(&format!("{ns}-kfp-operator")).await.unwrap();
    let pod = deployment.spec.unwrap().template.spec.unwrap();
    let service_account = pod.service_account_name.unwrap();
    let container = &pod.containers[0];
    let cache = std::env::temp_dir().join(format!("kfp-chart-cache-{}", std::process::id()));
    let args: Vec<String> = container
        .args
        .clone()
        .unwrap()
        .into_iter()
        .map(|arg| match arg.strip_prefix("--plugin-cache-dir=") {
            Some(_) => format!("--plugin-cache-dir={}", cache.display()),
            None => arg,
        })
        .collect();
    assert!(
        args.contains(&format!("--namespace={ns}")) && args.contains(&"--run-completion-ttl=1s".to_owned()),
        "{args:?}"
    );
    let token_request: TokenRequest = serde_json::from_value(json!({ "spec": { "audiences": [] } })).unwrap();
    let token = Api::<ServiceAccount>::namespaced(client.clone(), &ns)
        .create_token_request(&service_account, &PostParams::default(), &token_request)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .expect("a token for the chart's ServiceAccount");
    let kubeconfig = std::env::temp_dir().join(format!("kfp-chart-{ns}.kubeconfig"));
    kubeconfig_with_token(&token, &kubeconfig);
    let operator = Replica::spawn(&args, &kubeconfig, &[("POD_NAMESPACE", &ns)]);

    create_provider(&client, &ns, "stub", "stub_provider", json!({ "frameworks": [{ "name": "tfx" }] })).await;
    let object = |kind: &str, name: &str, spec: serde_json::Value| json!({ "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": kind, "metadata": { "name": name }, "spec": spec });
    let provider = format!("{ns}/stub");
    let pipeline: Pipeline = serde_json::from_value(object(
        "Pipeline",
        "penguin",
        json!({ "provider": provider, "image": "img:v1", "framework": { "name": "tfx", "parameters": {} } }),
    ))
    .unwrap();
    Api::<Pipeline>::namespaced(client.clone(), &ns).create(&PostParams::default(), &pipeline).await.unwrap();
    let configuration: RunConfiguration = serde_json::from_value(object(
        "RunConfiguration",
        "training",
        json!({
            "run": { "provider": provider, "pipeline": "penguin" },
            "triggers": { "schedules": [{ "cronExpression": "0 0 * * *" }], "onChange": ["runSpec"] },
        }),
    ))
    .unwrap();
    let configurations: Api<RunConfiguration> = Api::namespaced(client.clone(), &ns);
    configurations.create(&PostParams::default(), &configuration).await.unwrap();

    // The onChange Run ran, fed the RunConfiguration, and was deleted after the TTL.
    let runs: Api<Run> = Api::namespaced(client.clone(), &ns);
    wait_until(
        &format!("the RunConfiguration's Run to complete and expire; operator log:\n{}", operator.log_tail()),
        Duration::from_secs(60),
        async || {
            let rc = configurations.get("training").await.unwrap();
            let status = rc.status.unwrap_or_default();
            status.synchronization_state() == SynchronizationState::Succeeded
                && !status.latest_runs.succeeded.provider_id.is_empty()
                && runs.list(&ListParams::default()).await.unwrap().items.is_empty()
        },
    )
    .await;
    let events = Api::<Event>::namespaced(client.clone(), &ns).list(&ListParams::default()).await.unwrap().items;
    assert!(
        events
            .iter()
            .any(|e| e.involved_object.name.as_deref() == Some("penguin") && e.reason.as_deref() == Some("Synced")),
        "the operator records Events: {:?}",
        events.iter().map(|e| (e.involved_object.name.clone(), e.reason.clone())).collect::<Vec<_>>()
    );
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), &ns)
        .get("kfp-operator-lock")
        .await
        .unwrap();
    assert!(lease.spec.unwrap().holder_identity.is_some(), "the operator holds the leader-election Lease");

    drop(operator);
    helm(&["uninstall", &ns, "--namespace", &ns]);
    let _ = (std::fs::remove_dir_all(&cache), std::fs::remove_file(&kubeconfig));
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), &ns).get_opt(&service_account).await.unwrap().is_none(),
        "helm uninstall removes what the chart installed"
    );
}
