//! The stub compiler: "compiles" a pipeline into a small JSON document naming it, its image
//! and its framework parameters, deterministically. A pipeline named `compile-fail` fails
//! permanently.

use kfp_plugin_sdk::{
    compiler::{Compiler, Error, PipelineDefinition},
    export_compiler,
};

struct StubCompiler;

impl Compiler for StubCompiler {
    fn compile(definition: PipelineDefinition) -> Result<String, Error> {
        if definition.name.rsplit('/').next() == Some("compile-fail") {
            return Err(Error::Permanent("compile pipeline failed".to_owned()));
        }
        let parameters: serde_json::Value = serde_json::from_str(&definition.framework.parameters_json)
            .map_err(|e| Error::Permanent(format!("framework parameters are not JSON: {e}")))?;
        let compiled = serde_json::json!({
            "pipelineInfo": { "name": definition.name.replace('/', "-") },
            "image": definition.image,
            "framework": definition.framework.name,
            "parameters": parameters,
        });
        Ok(compiled.to_string())
    }
}

export_compiler!(StubCompiler);
