//! `kfp-operator run`: the controllers, behind leader election, with metrics and probes.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context as _, bail};
use kube_lease_manager::LeaseManagerBuilder;
use serde::Deserialize;

use crate::{
    api::{Experiment, Pipeline, Run, RunSchedule},
    controllers::{self, Context},
    plugins::{CompiledCache, PluginRegistry, Sandbox, source::OciSettings},
    telemetry::{self, Telemetry},
};

/// How long a leader's lease lasts without renewal: a standby takes over within this after the
/// leader dies (upstream's controller-runtime default is also 15 s).
const LEASE_SECONDS: u64 = 15;
const LEASE_GRACE_SECONDS: u64 = 5;
/// How long a stopping operator waits for its queued Events to be written.
const EVENT_DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub plugin_cache_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    /// Watch only this namespace (development, tests); all namespaces otherwise.
    pub namespace: Option<String>,
    pub leader_election: bool,
    pub lease_name: String,
    pub lease_namespace: String,
    pub metrics_address: SocketAddr,
    pub probe_address: SocketAddr,
    /// Delete completed Runs this long after completion (upstream `runCompletionTTL`).
    pub run_completion_ttl: Option<std::time::Duration>,
}

/// The upstream controller-manager configuration file keys that still apply (upstream
/// reference 6.4); the others (workflow, provider-service and multiversion settings) have no
/// meaning without Argo and provider Deployments and are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub system: SystemConfig,
    #[serde(default)]
    pub spec: SpecConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecConfig {
    /// A Go duration such as `10m`.
    pub run_completion_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SystemConfig {
    #[serde(default)]
    pub leader_election: LeaderElectionConfig,
}

#[derive(Debug, Default, Deserialize)]
pub struct LeaderElectionConfig {
    pub enabled: Option<bool>,
    pub id: Option<String>,
}

impl ConfigFile {
    pub fn read(path: &std::path::Path) -> anyhow::Result<Self> {
        let bytes = crate::plugins::source::from_file(path).map_err(anyhow::Error::msg)?;
        serde_yaml::from_slice(&bytes).with_context(|| format!("{} is not a valid configuration file", path.display()))
    }
}

pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let sandbox = Sandbox::new().map_err(|e| anyhow::anyhow!("starting the plugin sandbox: {e:#}"))?;
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let telemetry = Arc::new(Telemetry::new()?);
    tokio::spawn({
        let telemetry = telemetry.clone();
        async move {
            if let Err(error) = telemetry::serve(telemetry, options.metrics_address, options.probe_address).await {
                tracing::error!(%error, "the metrics and probe server stopped");
            }
        }
    });
    let cache = match CompiledCache::open(&options.plugin_cache_dir, sandbox.engine()) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(error) => {
            tracing::warn!(%error, "running without a compiled-plugin cache: plugins are recompiled after every restart");
            None
        }
    };
    let oci = OciSettings { insecure_registries: options.insecure_registries.clone() };
    let plugins = Arc::new(PluginRegistry::new(sandbox, client.clone(), oci, cache, Some(telemetry.plugins.clone())));
    let context = Arc::new(Context::with_telemetry(client.clone(), plugins, telemetry.clone()));
    let namespace = options.namespace.clone();

    if !options.leader_election {
        telemetry.set_ready();
        run_controllers(context, namespace.as_deref(), options.run_completion_ttl).await;
        return Ok(());
    }

    let manager = LeaseManagerBuilder::new(client, &options.lease_name)
        .with_namespace(&options.lease_namespace)
        .with_duration(LEASE_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .build()
        .await
        .context("setting up leader election")?;
    let (mut leader, lease_task) = manager.watch().await;
    // A standby is healthy and ready; it just does not reconcile.
    telemetry.set_ready();
    tracing::info!(lease = %options.lease_name, namespace = %options.lease_namespace, "waiting to become the leader");
    while !*leader.borrow_and_update() {
        leader.changed().await.context("the leader election task stopped")?;
    }
    tracing::info!(lease = %options.lease_name, "became the leader; starting the controllers");
    let lost = async {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                return;
            }
        }
    };
    tokio::select! {
        () = run_controllers(context, namespace.as_deref(), options.run_completion_ttl) => {}
        () = lost => bail!("lost the leader lease {}; exiting so that a standby takes over", options.lease_name),
    }
    // Shutting down: closing the channel makes the lease task release the lease at once.
    drop(leader);
    let _ = lease_task.await;
    Ok(())
}

/// Runs every controller until a shutdown signal.
async fn run_controllers(
    context: Arc<Context>,
    namespace: Option<&str>,
    run_completion_ttl: Option<std::time::Duration>,
) {
    tracing::info!(
        namespace = namespace.unwrap_or("(all)"),
        "starting the Provider, Pipeline, Experiment, RunSchedule, Run and RunConfiguration controllers and run completion polling"
    );
    let reconcilers = async {
        tokio::join!(
            controllers::provider::run(context.clone(), namespace),
            controllers::synced::run::<Pipeline>(context.clone(), namespace),
            controllers::synced::run::<Experiment>(context.clone(), namespace),
            controllers::synced::run::<RunSchedule>(context.clone(), namespace),
            controllers::synced::run::<Run>(context.clone(), namespace),
            controllers::run_configuration::run(context.clone(), namespace),
        )
    };
    let completion =
        controllers::run_completion::CompletionSettings { completed_run_ttl: run_completion_ttl, ..Default::default() };
    // The controllers stop on SIGTERM/SIGINT; the completion poller stops with them.
    tokio::select! {
        _ = reconcilers => {}
        () = controllers::run_completion::run(context.clone(), namespace, completion) => {}
    }
    if !context.events.drain(EVENT_DRAIN_TIMEOUT).await {
        tracing::warn!("stopping with Events still unwritten");
    }
    tracing::info!("controllers stopped");
}
