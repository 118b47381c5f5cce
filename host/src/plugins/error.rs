//! Every way a plugin call can fail, as one typed error that names the plugin, its digest, the
//! operation and the cause, so a user can act on it from a resource's condition alone.

use std::{fmt, time::Duration};

/// Which plugin: its name (`namespace/provider` or a file name) and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PluginId {
    pub name: String,
    pub sha256: String,
}

impl fmt::Display for PluginId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {} (sha256:{})", self.name, &self.sha256[..self.sha256.len().min(12)])
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{plugin}{}: {kind}", operation.as_deref().map(|op| format!(" {op}")).unwrap_or_default())]
pub struct PluginError {
    pub plugin: PluginId,
    /// The operation (`create-pipeline`, ...) for call failures; none for load failures.
    pub operation: Option<String>,
    pub kind: PluginErrorKind,
}

#[derive(Debug, thiserror::Error)]
pub enum PluginErrorKind {
    /// Refused before compiling: the bytes are not the ones the Provider pins.
    #[error("sha256 mismatch: the Provider pins sha256:{expected} but the plugin's bytes hash to sha256:{actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("not a valid WebAssembly component: {0}")]
    InvalidComponent(String),
    #[error(
        "does not implement a world this operator knows (kfp:operator/provider@0.1.0 or kfp:operator/compiler@0.1.0): {0}"
    )]
    WorldMismatch(String),
    #[error("is a {actual} plugin, not a {expected} plugin")]
    WrongKind { expected: &'static str, actual: &'static str },
    #[error("the plugin trapped: {message}")]
    Trap { message: String },
    #[error("deadline of {0:?} exceeded (raise limits.timeout if the operation is legitimately slow)")]
    DeadlineExceeded(Duration),
    #[error("out of memory: the instance needed more than {limit} bytes (raise limits.memory if legitimate)")]
    OutOfMemory { limit: u64 },
    #[error("output of {size} bytes exceeds the limit of {limit} bytes (limits.maxOutput)")]
    OutputTooLarge { size: u64, limit: u64 },
    #[error("no free instance slot in the sandbox ({0}); the call will be retried")]
    Exhausted(String),
    /// The plugin answered with an error of its own.
    #[error("permanent error: {0}")]
    Permanent(String),
    #[error("transient error: {0}")]
    Transient(String),
    #[error("unsupported by this provider: {0}")]
    Unsupported(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("could not load: {0}")]
    Load(String),
}

impl PluginError {
    pub fn new(plugin: &PluginId, operation: Option<&str>, kind: PluginErrorKind) -> Self {
        Self { plugin: plugin.clone(), operation: operation.map(str::to_owned), kind }
    }

    /// Whether retrying the same call later may succeed. Traps, timeouts and memory exhaustion
    /// of a deterministic plugin are not retried: the same input fails the same way.
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, PluginErrorKind::Transient(_) | PluginErrorKind::Exhausted(_))
    }

    /// A short, stable label for metrics (`outcome`).
    pub fn outcome(&self) -> &'static str {
        match self.kind {
            PluginErrorKind::DigestMismatch { .. } => "digest_mismatch",
            PluginErrorKind::InvalidComponent(_) => "invalid_component",
            PluginErrorKind::WorldMismatch(_) | PluginErrorKind::WrongKind { .. } => "world_mismatch",
            PluginErrorKind::Trap { .. } => "trap",
            PluginErrorKind::DeadlineExceeded(_) => "deadline_exceeded",
            PluginErrorKind::OutOfMemory { .. } => "out_of_memory",
            PluginErrorKind::OutputTooLarge { .. } => "output_too_large",
            PluginErrorKind::Exhausted(_) => "exhausted",
            PluginErrorKind::Permanent(_) => "permanent_error",
            PluginErrorKind::Transient(_) => "transient_error",
            PluginErrorKind::Unsupported(_) => "unsupported",
            PluginErrorKind::NotFound(_) => "not_found",
            PluginErrorKind::Load(_) => "load_error",
        }
    }
}
