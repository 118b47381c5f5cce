//! `kfp-operator`: the operator binary.

mod plugin_cli;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kfp_operator::{
    api::crds,
    operator::{self, ConfigFile, RunOptions},
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
    /// Run the operator: the six controllers and run completion polling,
    /// behind leader election, with `/metrics`, `/healthz` and `/readyz`.
    Run {
        /// Upstream's controller-manager configuration file (`system.leaderElection.enabled`
        /// and `.id` apply); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
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
        /// Elect a leader on a Lease so that only one replica reconciles.
        #[arg(long)]
        leader_elect: Option<bool>,
        /// The Lease's name (upstream: `kfp-operator-lock`).
        #[arg(long)]
        leader_election_id: Option<String>,
        /// The Lease's namespace; defaults to `$POD_NAMESPACE`, else `default`.
        #[arg(long)]
        leader_election_namespace: Option<String>,
        #[arg(long, default_value = "0.0.0.0:8080")]
        metrics_address: std::net::SocketAddr,
        #[arg(long, default_value = "0.0.0.0:8081")]
        probe_address: std::net::SocketAddr,
        /// Delete completed Runs this long after completion (e.g. `10m`; upstream's
        /// `spec.runCompletionTTL`); never by default.
        #[arg(long)]
        run_completion_ttl: Option<String>,
    },
    /// Tools for plugin authors: inspect a component, or call it in the operator's sandbox.
    #[command(subcommand)]
    Plugin(plugin_cli::PluginCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The operator logs structured JSON at info; the tools log for a terminal, warnings only
    // (their errors are printed once, at the end). RUST_LOG overrides either.
    let filter = |default: &str| EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    match cli.command {
        Command::Run { .. } => tracing_subscriber::fmt().with_env_filter(filter("info")).json().init(),
        _ => tracing_subscriber::fmt().with_env_filter(filter("warn")).with_writer(std::io::stderr).init(),
    }
    let result = match cli.command {
        Command::Crds { output_dir } => write_crds(output_dir),
        Command::Plugin(command) => plugin_cli::run(command).await,
        Command::Run {
            config,
            plugin_cache_dir,
            insecure_registries,
            namespace,
            leader_elect,
            leader_election_id,
            leader_election_namespace,
            metrics_address,
            probe_address,
            run_completion_ttl,
        } => {
            let file = match config.map(|path| ConfigFile::read(&path)).transpose() {
                Ok(file) => file.unwrap_or_default(),
                Err(error) => return fail(error),
            };
            let election = file.system.leader_election;
            let ttl_text = run_completion_ttl.or(file.spec.run_completion_ttl);
            let run_completion_ttl =
                match ttl_text.as_deref().map(|t| (t, kfp_operator::plugins::limits::parse_duration(t))) {
                    None => None,
                    Some((_, Some(ttl))) => Some(ttl),
                    Some((text, None)) => {
                        return fail(anyhow::anyhow!("runCompletionTTL {text:?} is not a duration such as 10m"));
                    }
                };
            operator::run(RunOptions {
                plugin_cache_dir,
                insecure_registries,
                namespace,
                leader_election: leader_elect.or(election.enabled).unwrap_or(false),
                lease_name: leader_election_id.or(election.id).unwrap_or_else(|| "kfp-operator-lock".into()),
                lease_namespace: leader_election_namespace
                    .or_else(|| std::env::var("POD_NAMESPACE").ok())
                    .unwrap_or_else(|| "default".into()),
                metrics_address,
                probe_address,
                run_completion_ttl,
            })
            .await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(error),
    }
}

/// The error chain says what failed and why; a stack trace would only add noise.
fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
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
