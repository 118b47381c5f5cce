//! Host bindings generated from `wit/`. The compiler world reuses the provider world's types
//! and host interface, so the operator implements the host side once.

/// The `provider` world.
pub mod provider {
    wasmtime::component::bindgen!({
        world: "provider",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        additional_derives: [PartialEq, serde::Serialize, serde::Deserialize],
    });
}

/// The `compiler` world.
pub mod compiler {
    wasmtime::component::bindgen!({
        world: "compiler",
        path: "../wit",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "kfp:operator/types": super::provider::kfp::operator::types,
            "kfp:operator/host": super::provider::kfp::operator::host,
        },
    });
}

pub use provider::kfp::operator::host::{LogLevel, ProviderContext};
pub use provider::kfp::operator::types::{
    ComponentArtifacts, Error as PluginResultError, ExperimentDefinition, Framework, NamedValue, OutputArtifact,
    PipelineDefinition, ProducedArtifact, RunDefinition, RunScheduleDefinition, RunState, RunStatus, Schedule,
    TriggerIndicator,
};
