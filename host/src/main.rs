//! `kfp-operator`: the operator binary.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kfp_operator::api::crds;

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { output_dir } => write_crds(output_dir),
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
