//! A provider for a hypothetical ML platform with a small REST API. Every operation not
//! implemented here answers `unsupported`, which the operator reports on the resource.

use kfp_plugin_sdk::{Error, PipelineDefinition, Provider, RunDefinition, export_provider, http, provider_context};

struct MyPlatform;

/// The platform's base URL, from the Provider's `spec.parameters.apiUrl`. The host of that URL
/// must be in the Provider's `spec.plugin.allowedHosts`; credentials for it are added by the
/// operator (`spec.plugin.credentials`), never handled here.
fn api_url() -> Result<String, Error> {
    let parameters: serde_json::Value = serde_json::from_str(&provider_context().parameters_json)
        .map_err(|e| Error::Permanent(format!("spec.parameters is not JSON: {e}")))?;
    parameters["apiUrl"]
        .as_str()
        .map(|url| url.trim_end_matches('/').to_owned())
        .ok_or_else(|| Error::Permanent("set spec.parameters.apiUrl on the Provider".into()))
}

impl Provider for MyPlatform {
    /// Idempotent by name: the platform upserts pipelines under the resource's `namespace/name`,
    /// so a retried create returns the same id.
    fn create_pipeline(definition: PipelineDefinition, compiled_pipeline: String) -> Result<String, Error> {
        let body = serde_json::json!({
            "name": definition.name,
            "version": definition.version,
            "spec": serde_json::from_str::<serde_json::Value>(&compiled_pipeline).unwrap_or_default(),
        });
        let response = http::request(
            "PUT",
            &format!("{}/pipelines/{}", api_url()?, definition.name.replace('/', "--")),
            &[("content-type", "application/json")],
            Some(body.to_string().as_bytes()),
        )?
        .error_for_status()?;
        Ok(response.text())
    }

    fn delete_pipeline(id: String) -> Result<(), Error> {
        match http::delete(&format!("{}/pipelines/{id}", api_url()?))?.error_for_status() {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    fn create_run(definition: RunDefinition) -> Result<String, Error> {
        let body = serde_json::json!({
            "name": definition.name,
            "pipeline": definition.pipeline_name,
            "version": definition.pipeline_version,
            "parameters": definition
                .parameters
                .iter()
                .map(|p| (p.name.clone(), serde_json::Value::String(p.value.clone())))
                .collect::<serde_json::Map<_, _>>(),
        });
        Ok(http::post_json(&format!("{}/runs", api_url()?), &body.to_string())?.error_for_status()?.text())
    }
}

export_provider!(MyPlatform);
