//! The Wasm-extensible KFP operator: the library behind the `kfp-operator` binary, also used by
//! the integration tests.

pub mod api;
pub mod controllers;
pub mod operator;
pub mod plugins;
pub mod telemetry;
