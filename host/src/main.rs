//! `kfp-operator`: the operator binary.

mod plugin_cli;

use std::{path::PathBuf, process::ExitCode, sync::Arc};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kfp_operator::{
    api::{Experiment, Pipeline, RunSchedule, crds},
    controllers::{self, Context as ControllerContext},
    plugins::{CompiledCache, PluginRegistry, Sandbox, source::OciSettings},
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "A Wasm-extensible Kubeflow Pipelines operator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions as YAML, or write one file per CRD to a directory.
    Crds {
        /// Write `<group>_<plural>.yaml` files here (e.g. charts/kfp-operator/crds) instead
        /// of printing a multi-document stream.
        #[arg(long)]
        output_dir: Option<PathBuf>,
    },
    /// Run the operator (today: the Provider controller, which loads and reloads plugins, and
    /// the Pipeline, Experiment and RunSchedule controllers).
    Run {
        /// Where compiled plugins are cached between restarts (created if missing; must not be
        /// writable by other users).
        #[arg(long, default_value = "/var/cache/kfp-operator/plugins")]
        plugin_cache_dir: PathBuf,
        /// A registry (`host:port`) to pull plugins from over plain HTTP, e.g. on loopback.
        #[arg(long = "insecure-registry")]
        insecure_registries: Vec<String>,
        /// Watch only this namespace instead of the whole cluster.
        #[arg(long)]
        namespace: Option<String>,
    },
    /// Tools for plugin authors: inspect a component, or call it in the operator's sandbox.
    #[command(subcommand)]
    Plugin(plugin_cli::PluginCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(EnvFilter::from_default_env()).with_writer(std::io::stderr).init();
    let result = match Cli::parse().command {
        Command::Crds { output_dir } => write_crds(output_dir),
        Command::Plugin(command) => plugin_cli::run(command).await,
        Command::Run { plugin_cache_dir, insecure_registries, namespace } => {
            run_operator(plugin_cache_dir, insecure_registries, namespace).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The error chain says what failed and why; a stack trace would only add noise.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_operator(
    cache_dir: PathBuf,
    insecure_registries: Vec<String>,
    namespace: Option<String>,
) -> anyhow::Result<()> {
    let sandbox = Sandbox::new().map_err(|e| anyhow::anyhow!("starting the plugin sandbox: {e:#}"))?;
    let client = kube::Client::try_default().await.context("connecting to the Kubernetes API")?;
    let cache = match CompiledCache::open(&cache_dir, sandbox.engine()) {
        Ok(cache) => Some(Arc::new(cache)),
        Err(error) => {
            tracing::warn!(%error, "running without a compiled-plugin cache: plugins are recompiled after every restart");
            None
        }
    };
    let oci = OciSettings { insecure_registries };
    let plugins = Arc::new(PluginRegistry::new(sandbox, client.clone(), oci, cache, None));
    let context = Arc::new(ControllerContext::new(client, plugins));
    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("(all)"),
        "starting the Provider, Pipeline, Experiment and RunSchedule controllers"
    );
    tokio::join!(
        controllers::provider::run(context.clone(), namespace.as_deref()),
        controllers::synced::run::<Experiment>(context.clone(), namespace.as_deref()),
        controllers::synced::run::<RunSchedule>(context.clone(), namespace.as_deref()),
        controllers::synced::run::<Pipeline>(context, namespace.as_deref()),
    );
    Ok(())
}

fn write_crds(output_dir: Option<PathBuf>) -> anyhow::Result<()> {
    for crd in crds::all() {
        let yaml = crds::to_yaml(&crd)?;
        match &output_dir {
            Some(dir) => {
                let path = dir.join(crds::file_name(&crd));
                std::fs::write(&path, yaml).with_context(|| format!("writing {}", path.display()))?;
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(())
}
