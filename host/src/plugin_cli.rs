//! `kfp-operator plugin ...`: tools for plugin authors, using the operator's own sandbox and
//! limits, so what works here works in the cluster.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use kfp_operator::plugins::{
    Limits, PluginHandle, PluginId, ProviderRequest, Sandbox,
    bindings::{PipelineDefinition, ProviderContext},
    http_policy::{HostPattern, HttpPolicy},
    limits::{parse_duration, parse_quantity},
    sha256_hex,
    source::from_file,
};
use serde_json::Value;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Show a plugin's world, imports, exports, size and sha256.
    Inspect {
        /// The `.wasm` component (gzip accepted).
        file: PathBuf,
    },
    /// Run one call in the operator's sandbox and print the result or the typed error.
    ///
    /// OPERATION is a WIT export (`create-pipeline`, `run-status`, `compile`, ...); ARGUMENTS is
    /// a JSON object with its parameters in snake case, e.g. for delete-pipeline `{"id": "x"}`
    /// and for create-pipeline `{"definition": {...}, "compiled_pipeline": "{}"}`.
    Call {
        file: PathBuf,
        operation: String,
        arguments: String,
        /// The Provider's `spec.parameters`, as JSON.
        #[arg(long, default_value = "{}")]
        parameters: String,
        /// The Provider's `spec.pipelineRootStorage`.
        #[arg(long, default_value = "gs://pipeline-root")]
        pipeline_root_storage: String,
        /// A host the plugin may reach over HTTP (repeatable), as in `allowedHosts`.
        #[arg(long = "allow-host")]
        allowed_hosts: Vec<String>,
        /// Deadline of the call (e.g. `30s`).
        #[arg(long)]
        timeout: Option<String>,
        /// Memory limit of the instance (e.g. `64Mi`).
        #[arg(long)]
        memory: Option<String>,
    },
}

pub async fn run(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Inspect { file } => inspect(file),
        PluginCommand::Call {
            file,
            operation,
            arguments,
            parameters,
            pipeline_root_storage,
            allowed_hosts,
            timeout,
            memory,
        } => {
            let mut limits = Limits::default();
            if let Some(timeout) = timeout {
                limits.timeout =
                    parse_duration(&timeout).with_context(|| format!("--timeout {timeout:?} is not a duration"))?;
            }
            if let Some(memory) = memory {
                limits.memory_bytes =
                    parse_quantity(&memory).with_context(|| format!("--memory {memory:?} is not a quantity"))?;
            }
            let context =
                ProviderContext { name: "local/plugin".into(), pipeline_root_storage, parameters_json: parameters };
            call(file, &operation, &arguments, allowed_hosts, limits, context).await
        }
    }
}

fn read(file: &Path) -> anyhow::Result<(PluginId, Vec<u8>)> {
    let bytes = from_file(file)?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok((PluginId { name, sha256: sha256_hex(&bytes) }, bytes))
}

fn inspect(file: PathBuf) -> anyhow::Result<()> {
    let (id, bytes) = read(&file)?;
    let sandbox = Sandbox::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let component = sandbox.compile(&id, &bytes)?;
    let world = match sandbox.prepare(&id, &component) {
        Ok(prepared) => format!("kfp:operator/{}@0.1.0", prepared.world()),
        Err(error) => format!("none this operator knows ({})", error.kind),
    };
    let component_type = component.component_type();
    let imports: Vec<String> = component_type.imports(sandbox.engine()).map(|(name, _)| name.to_owned()).collect();
    let exports: Vec<String> = component_type.exports(sandbox.engine()).map(|(name, _)| name.to_owned()).collect();
    println!("file:    {}", file.display());
    println!("size:    {} bytes", bytes.len());
    println!("sha256:  {}", id.sha256);
    println!("world:   {world}");
    println!("imports: {}", imports.join("\n         "));
    println!("exports: {}", exports.join("\n         "));
    Ok(())
}

async fn call(
    file: PathBuf,
    operation: &str,
    arguments: &str,
    allowed_hosts: Vec<String>,
    limits: Limits,
    context: ProviderContext,
) -> anyhow::Result<()> {
    let (id, bytes) = read(&file)?;
    let sandbox = Sandbox::new().map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let prepared = sandbox.load(&id, &bytes)?;
    let allowed = allowed_hosts
        .iter()
        .map(|h| HostPattern::parse(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    let policy =
        HttpPolicy::new(&id.name, allowed, vec![], limits.max_request_body_bytes, limits.max_response_body_bytes);
    let handle = PluginHandle::new(prepared, limits, policy, context);

    let mut arguments: Value = serde_json::from_str(arguments).context("ARGUMENTS is not JSON")?;
    let output = if operation == "compile" {
        let definition: PipelineDefinition =
            serde_json::from_value(arguments["definition"].take()).context("compile takes {\"definition\": {...}}")?;
        // The compiler's output is already JSON.
        serde_json::from_str(&handle.compile(&definition).await?).context("the compiler returned invalid JSON")?
    } else {
        let Some(object) = arguments.as_object_mut() else { bail!("ARGUMENTS must be a JSON object") };
        object.insert("operation".into(), Value::String(operation.to_owned()));
        let request: ProviderRequest = serde_json::from_value(arguments)
            .with_context(|| format!("ARGUMENTS do not fit operation {operation:?}"))?;
        serde_json::to_value(handle.call_provider(&request).await?)?
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}
