//! Installs CRDs and waits until they are usable, as envtest does: `Established`, then served
//! by discovery (which lags the condition).

use std::{path::Path, time::Duration};

use anyhow::{Context, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{
    Api, Client,
    api::{Patch, PatchParams},
    runtime::wait::{await_condition, conditions},
};

const CRD_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn install(client: &Client, crd_dir: &Path) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut installed = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(crd_dir)
        .with_context(|| format!("reading CRDs from {}", crd_dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries.into_iter().filter(|e| e.path().extension().is_some_and(|x| x == "yaml")) {
        let path = entry.path();
        let text = std::fs::read_to_string(&path)?;
        let crd: CustomResourceDefinition =
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        api.patch(&name, &PatchParams::apply("kfp-test-support").force(), &Patch::Apply(&crd))
            .await
            .with_context(|| format!("installing {}", path.display()))?;
        installed.push(crd);
    }
    if installed.is_empty() {
        bail!("no CRDs (*.yaml) in {}", crd_dir.display());
    }
    for crd in &installed {
        let name = crd.metadata.name.as_deref().unwrap_or_default();
        tokio::time::timeout(CRD_TIMEOUT, await_condition(api.clone(), name, conditions::is_crd_established()))
            .await
            .with_context(|| format!("CRD {name} not Established after {CRD_TIMEOUT:?}"))??;
    }
    wait_for_discovery(client, &installed).await
}

async fn wait_for_discovery(client: &Client, crds: &[CustomResourceDefinition]) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + CRD_TIMEOUT;
    for crd in crds {
        for version in crd.spec.versions.iter().filter(|v| v.served) {
            let group_version = format!("{}/{}", crd.spec.group, version.name);
            loop {
                let served = client
                    .list_api_group_resources(&group_version)
                    .await
                    .is_ok_and(|list| list.resources.iter().any(|r| r.name == crd.spec.names.plural));
                if served {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{} not in discovery for {group_version} after {CRD_TIMEOUT:?}", crd.spec.names.plural);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}
