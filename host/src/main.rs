//! `kfp-operator`: the operator binary.

mod plugin_cli;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use kfp_operator::api::crds;
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
