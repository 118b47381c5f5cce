//! Pipelines: the framework named by the Pipeline must be one of its Provider's; the
//! framework's patches are applied to the pipeline definition, its compiler plugin (if it has
//! one) compiles the patched definition, and the provider plugin uploads both.

use serde_json::{Value, json};

use super::{
    Context,
    provider::framework_plugin_key,
    synced::{RequestError, Synced, synced_accessors},
};
use crate::{
    api::{
        Pipeline, Provider,
        provider::{Framework, PatchType},
    },
    plugins::{
        ProviderRequest,
        bindings::{self, PipelineDefinition},
    },
};

impl Synced for Pipeline {
    const KIND: &'static str = "pipeline";

    synced_accessors!();

    async fn request(
        &self,
        context: &Context,
        provider: &Provider,
        id: Option<String>,
        name: String,
        version: String,
    ) -> Result<ProviderRequest, RequestError> {
        // Upstream matches the framework name case-insensitively.
        let wanted = self.spec.framework.name.to_lowercase();
        let framework =
            provider.spec.frameworks.iter().find(|framework| framework.name.to_lowercase() == wanted).ok_or_else(
                || format!("[{}] framework not supported by Provider {}", self.spec.framework.name, self.spec.provider),
            )?;
        let definition = self.patched_definition(framework, name, version)?;
        let compiled_pipeline = match framework.plugin {
            None => String::new(),
            Some(_) => {
                let provider_ref = &self.spec.provider;
                let key = framework_plugin_key(&provider_ref.namespace, &provider_ref.name, &framework.name);
                // Not loaded yet (or its load failed, which the Provider's status says): wait
                // for the Provider, whose change wakes this Pipeline.
                let compiler = context.plugins.get(&key).ok_or_else(|| {
                    RequestError::NotReady(format!(
                        "waiting for the compiler plugin of framework {} to load (see Provider {provider_ref})",
                        framework.name
                    ))
                })?;
                compiler.compile(&definition).await.map_err(|error| match error.is_transient() {
                    true => RequestError::NotReady(error.to_string()),
                    false => RequestError::Invalid(error.to_string()),
                })?
            }
        };
        Ok(match id {
            None => ProviderRequest::CreatePipeline { definition, compiled_pipeline },
            Some(id) => ProviderRequest::UpdatePipeline { id, definition, compiled_pipeline },
        })
    }

    fn delete_request(id: String) -> ProviderRequest {
        ProviderRequest::DeletePipeline { id }
    }
}

impl Pipeline {
    /// The definition upstream's provider API receives, with the framework's patches applied in
    /// order (upstream reference 1.3).
    fn patched_definition(
        &self,
        framework: &Framework,
        name: String,
        version: String,
    ) -> Result<PipelineDefinition, String> {
        let spec = &self.spec;
        let mut document = json!({
            "name": name,
            "version": version,
            "image": spec.image,
            "env": spec.env,
            "framework": { "name": spec.framework.name, "parameters": spec.framework.parameters },
        });
        for (index, patch) in framework.patches.iter().enumerate() {
            apply_patch(&mut document, patch.patch_type, &patch.payload).map_err(|cause| {
                format!("framework {} patch {index} ({:?}): {cause}", framework.name, patch.patch_type)
            })?;
        }
        let env: Vec<bindings::NamedValue> =
            serde_json::from_value(document["env"].take()).map_err(|e| format!("patched env: {e}"))?;
        let text = |field: &str| {
            document[field].as_str().map(str::to_owned).ok_or_else(|| format!("patched {field} is not a string"))
        };
        Ok(PipelineDefinition {
            name: text("name")?,
            version: text("version")?,
            image: text("image")?,
            env,
            framework: bindings::Framework {
                name: document["framework"]["name"].as_str().unwrap_or_default().to_owned(),
                parameters_json: document["framework"]["parameters"].to_string(),
            },
        })
    }
}

/// Applies one Provider patch: RFC 6902 (`json`), where an `add` creates missing parents as
/// upstream does, or RFC 7396 (`merge`).
fn apply_patch(document: &mut Value, patch_type: PatchType, payload: &str) -> Result<(), String> {
    match patch_type {
        PatchType::Merge => {
            let payload: Value = serde_json::from_str(payload).map_err(|e| format!("payload is not JSON: {e}"))?;
            json_patch::merge(document, &payload);
            Ok(())
        }
        PatchType::Json => {
            let patch: json_patch::Patch =
                serde_json::from_str(payload).map_err(|e| format!("not a JSON patch: {e}"))?;
            for operation in &patch.0 {
                if let json_patch::PatchOperation::Add(add) = operation {
                    ensure_parents(document, add.path.as_str());
                }
            }
            json_patch::patch(document, &patch).map_err(|e| e.to_string())
        }
    }
}

/// Creates the missing containers on the way to `path` (an object, or an array where the next
/// step is an index), so `add /framework/parameters/beamArgs/0` works on a pipeline without
/// beam args. Hand-written: json-patch implements the RFC, which fails instead.
fn ensure_parents(document: &mut Value, path: &str) {
    let steps: Vec<String> = path.split('/').skip(1).map(|step| step.replace("~1", "/").replace("~0", "~")).collect();
    let mut current = document;
    for (index, step) in steps.iter().enumerate().take(steps.len().saturating_sub(1)) {
        let next_is_index = steps[index + 1] == "-" || steps[index + 1].parse::<usize>().is_ok();
        current = match current {
            Value::Object(map) => {
                map.entry(step.clone()).or_insert_with(|| if next_is_index { json!([]) } else { json!({}) })
            }
            Value::Array(items) => match step.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(item) => item,
                None => return,
            },
            _ => return,
        };
        if current.is_null() {
            *current = if next_is_index { json!([]) } else { json!({}) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::provider::Patch;

    fn pipeline() -> Pipeline {
        serde_json::from_value(json!({
            "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "Pipeline",
            "metadata": { "name": "penguin", "namespace": "team" },
            "spec": {
                "provider": "team/kfp", "image": "img:v1",
                "env": [{ "name": "A", "value": "1" }],
                "framework": { "name": "tfx", "parameters": { "components": "m.f" } },
            },
        }))
        .unwrap()
    }

    fn framework(patches: Vec<(PatchType, &str)>) -> Framework {
        Framework {
            name: "tfx".into(),
            patches: patches
                .into_iter()
                .map(|(patch_type, payload)| Patch { patch_type, payload: payload.into() })
                .collect(),
            ..Framework::default()
        }
    }

    #[test]
    fn json_patches_create_missing_parents_and_merge_patches_merge() {
        let add_beam_arg = r#"[{"op": "add", "path": "/framework/parameters/beamArgs/0", "value": {"name": "--runner", "value": "DirectRunner"}}]"#;
        let merge = r#"{"image": "img:patched", "framework": {"parameters": {"extra": true}}}"#;
        let definition = pipeline()
            .patched_definition(
                &framework(vec![(PatchType::Json, add_beam_arg), (PatchType::Merge, merge)]),
                "team/penguin".into(),
                "v1".into(),
            )
            .unwrap();
        assert_eq!(definition.image, "img:patched");
        assert_eq!(definition.env[0].name, "A");
        let parameters: Value = serde_json::from_str(&definition.framework.parameters_json).unwrap();
        assert_eq!(
            parameters,
            json!({ "components": "m.f", "extra": true, "beamArgs": [{ "name": "--runner", "value": "DirectRunner" }] })
        );
    }

    #[test]
    fn bad_patches_say_which_one() {
        let error = pipeline()
            .patched_definition(
                &framework(vec![(PatchType::Json, r#"[{"op": "remove", "path": "/nope"}]"#)]),
                "n".into(),
                "v".into(),
            )
            .unwrap_err();
        assert!(error.starts_with("framework tfx patch 0 (Json):"), "{error}");
        let error = pipeline()
            .patched_definition(&framework(vec![(PatchType::Merge, "not json")]), "n".into(), "v".into())
            .unwrap_err();
        assert!(error.contains("payload is not JSON"), "{error}");
    }
}
