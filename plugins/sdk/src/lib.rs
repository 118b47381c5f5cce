//! Write kfp-operator plugins in Rust.
//!
//! A provider is one implementation of [`Provider`] plus [`export_provider!`]; a compiler is
//! one implementation of [`compiler::Compiler`] plus [`export_compiler!`]. Operations you do
//! not implement answer `unsupported`. [`http`] is a blocking HTTP client over the standard
//! `wasi:http` interface, which the operator filters by the Provider's `allowedHosts`.
//!
//! ```ignore
//! use kfp_plugin_sdk::{Error, PipelineDefinition, Provider, export_provider};
//!
//! struct MyPlatform;
//!
//! impl Provider for MyPlatform {
//!     fn create_pipeline(definition: PipelineDefinition, compiled: String) -> Result<String, Error> {
//!         let response = kfp_plugin_sdk::http::post_json("https://ml.example.com/pipelines", &compiled)?;
//!         Ok(response.text())
//!     }
//! }
//!
//! export_provider!(MyPlatform);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm` in
//! `target/wasm32-wasip2/release/` is the component to publish.

pub mod http;

/// Bindings of the `provider` world (generated from `wit/`).
#[allow(clippy::too_many_arguments)] // generated lowering code
pub mod provider {
    wit_bindgen::generate!({
        world: "provider",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "export_provider_world",
        default_bindings_module: "kfp_plugin_sdk::provider",
    });
}

pub use provider::kfp::operator::{
    host::{LogLevel, ProviderContext},
    types::{
        ComponentArtifacts, Error, ExperimentDefinition, Framework, NamedValue, OutputArtifact, PipelineDefinition,
        ProducedArtifact, RunDefinition, RunScheduleDefinition, RunState, RunStatus, Schedule, TriggerIndicator,
    },
};

/// The Provider this plugin serves: its name, pipeline root and parameters.
pub fn provider_context() -> ProviderContext {
    provider::kfp::operator::host::context()
}

/// Writes to the operator's log, tagged with this plugin and the current call.
pub fn log(level: LogLevel, message: &str) {
    provider::kfp::operator::host::log(level, message);
}

fn unsupported(operation: &str) -> Error {
    Error::Unsupported(format!("this provider does not implement {operation}"))
}

/// A provider plugin. Every operation has a default that answers `unsupported`; implement the
/// ones your platform has. Each call runs in a fresh instance, so keep no state between calls,
/// and make creates idempotent: a retried create must return what the first one made.
pub trait Provider {
    fn create_pipeline(_definition: PipelineDefinition, _compiled_pipeline: String) -> Result<String, Error> {
        Err(unsupported("create-pipeline"))
    }
    fn update_pipeline(
        _id: String,
        _definition: PipelineDefinition,
        _compiled_pipeline: String,
    ) -> Result<String, Error> {
        Err(unsupported("update-pipeline"))
    }
    fn delete_pipeline(_id: String) -> Result<(), Error> {
        Err(unsupported("delete-pipeline"))
    }
    fn create_experiment(_definition: ExperimentDefinition) -> Result<String, Error> {
        Err(unsupported("create-experiment"))
    }
    fn update_experiment(_id: String, _definition: ExperimentDefinition) -> Result<String, Error> {
        Err(unsupported("update-experiment"))
    }
    fn delete_experiment(_id: String) -> Result<(), Error> {
        Err(unsupported("delete-experiment"))
    }
    fn create_run(_definition: RunDefinition) -> Result<String, Error> {
        Err(unsupported("create-run"))
    }
    fn delete_run(_id: String) -> Result<(), Error> {
        Err(unsupported("delete-run"))
    }
    fn run_status(_id: String) -> Result<RunStatus, Error> {
        Err(unsupported("run-status"))
    }
    fn create_run_schedule(_definition: RunScheduleDefinition) -> Result<String, Error> {
        Err(unsupported("create-run-schedule"))
    }
    fn update_run_schedule(_id: String, _definition: RunScheduleDefinition) -> Result<String, Error> {
        Err(unsupported("update-run-schedule"))
    }
    fn delete_run_schedule(_id: String) -> Result<(), Error> {
        Err(unsupported("delete-run-schedule"))
    }
}

/// Exports a [`Provider`] implementation as the component's `provider` world.
#[macro_export]
macro_rules! export_provider {
    ($provider:ty) => {
        struct __KfpProviderExports;

        impl $crate::provider::Guest for __KfpProviderExports {
            fn create_pipeline(d: $crate::PipelineDefinition, c: String) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::create_pipeline(d, c)
            }
            fn update_pipeline(id: String, d: $crate::PipelineDefinition, c: String) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::update_pipeline(id, d, c)
            }
            fn delete_pipeline(id: String) -> Result<(), $crate::Error> {
                <$provider as $crate::Provider>::delete_pipeline(id)
            }
            fn create_experiment(d: $crate::ExperimentDefinition) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::create_experiment(d)
            }
            fn update_experiment(id: String, d: $crate::ExperimentDefinition) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::update_experiment(id, d)
            }
            fn delete_experiment(id: String) -> Result<(), $crate::Error> {
                <$provider as $crate::Provider>::delete_experiment(id)
            }
            fn create_run(d: $crate::RunDefinition) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::create_run(d)
            }
            fn delete_run(id: String) -> Result<(), $crate::Error> {
                <$provider as $crate::Provider>::delete_run(id)
            }
            fn run_status(id: String) -> Result<$crate::RunStatus, $crate::Error> {
                <$provider as $crate::Provider>::run_status(id)
            }
            fn create_run_schedule(d: $crate::RunScheduleDefinition) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::create_run_schedule(d)
            }
            fn update_run_schedule(id: String, d: $crate::RunScheduleDefinition) -> Result<String, $crate::Error> {
                <$provider as $crate::Provider>::update_run_schedule(id, d)
            }
            fn delete_run_schedule(id: String) -> Result<(), $crate::Error> {
                <$provider as $crate::Provider>::delete_run_schedule(id)
            }
        }

        $crate::provider::export_provider_world!(__KfpProviderExports);
    };
}

/// The `compiler` world: its own copy of the shared types.
pub mod compiler {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)] // generated lowering code
    pub mod bindings {
        wit_bindgen::generate!({
            world: "compiler",
            path: "../../wit",
            pub_export_macro: true,
            export_macro_name: "export_compiler_world",
            default_bindings_module: "kfp_plugin_sdk::compiler::bindings",
        });
    }

    #[doc(hidden)]
    pub use bindings::Guest;
    pub use bindings::kfp::operator::types::{Error, Framework, NamedValue, PipelineDefinition};

    /// A compiler plugin: turns a pipeline definition into the JSON the provider uploads.
    pub trait Compiler {
        fn compile(definition: PipelineDefinition) -> Result<String, Error>;
    }

    #[doc(hidden)]
    pub use bindings::export_compiler_world as __export_world;
}

/// Exports a [`compiler::Compiler`] implementation as the component's `compiler` world.
#[macro_export]
macro_rules! export_compiler {
    ($compiler:ty) => {
        struct __KfpCompilerExports;

        impl $crate::compiler::Guest for __KfpCompilerExports {
            fn compile(d: $crate::compiler::PipelineDefinition) -> Result<String, $crate::compiler::Error> {
                <$compiler as $crate::compiler::Compiler>::compile(d)
            }
        }

        $crate::compiler::__export_world!(__KfpCompilerExports);
    };
}
