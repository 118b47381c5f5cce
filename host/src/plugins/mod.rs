//! The plugin runtime: provider and compiler logic as sandboxed WebAssembly components.
//!
//! - [`sandbox`]: the process's one wasmtime engine (component model, pooling allocator,
//!   epoch interruption) and compiling/preparing a plugin once per digest;
//! - [`call`]: a fresh store and instance per call, under [`limits`], with typed [`error`]s;
//! - [`http_policy`]: the only network access, filtered by the Provider's allowed hosts;
//! - [`state`]: what a call's store holds (deny-by-default WASI, logging, memory limiter);
//! - [`cache`]: compiled plugins on local disk, so a restart does not recompile;
//! - [`source`]: ConfigMap, OCI and file sources; [`registry`]: loaded plugins, hot reload.

pub mod bindings;
pub mod cache;
pub mod call;
pub mod error;
pub mod http_policy;
pub mod limits;
pub mod metrics;
pub mod registry;
pub mod sandbox;
pub mod source;
pub mod state;

pub use cache::CompiledCache;
pub use call::{PluginHandle, ProviderRequest, ProviderResponse};
pub use error::{PluginError, PluginErrorKind, PluginId};
pub use limits::Limits;
pub use registry::{LoadRequest, Loaded, PluginRegistry, PluginStatus};
pub use sandbox::{CacheOutcome, PreparedPlugin, Sandbox, sha256_hex};
