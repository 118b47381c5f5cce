//! Per-plugin limits and their defaults. Every limit has a safe default so a Provider that
//! sets none still runs its plugin in a bounded sandbox.

use std::time::Duration;

use crate::api::provider::PluginLimits;

/// Linear memory per instance. Enough for JSON-heavy providers and HTTP clients; small enough
/// that 100 concurrent calls fit in a modest operator pod.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Upper bound a Provider may raise `limits.memory` to; also the pooling allocator's slot size.
pub const MAX_MEMORY_BYTES: u64 = 1 << 30;
/// Per call, CPU and host I/O together. Remote platform APIs answer in seconds; a minute
/// catches hung connections without failing slow uploads.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// A returned id, compiled pipeline or run status larger than this is a bug or an attack.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 4 << 20;
/// Bodies a plugin may send and receive over HTTP.
pub const DEFAULT_MAX_REQUEST_BODY_BYTES: u64 = 16 << 20;
pub const DEFAULT_MAX_RESPONSE_BODY_BYTES: u64 = 32 << 20;

/// The limits one plugin runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub timeout: Duration,
    pub max_output_bytes: u64,
    pub max_request_body_bytes: u64,
    pub max_response_body_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
            max_request_body_bytes: DEFAULT_MAX_REQUEST_BODY_BYTES,
            max_response_body_bytes: DEFAULT_MAX_RESPONSE_BODY_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitsError {
    #[error("limits.{field}: {value:?} is not a valid {what}")]
    Invalid { field: &'static str, value: String, what: &'static str },
    #[error("limits.memory: {value} bytes is above the operator's maximum of {max} bytes")]
    MemoryTooLarge { value: u64, max: u64 },
}

impl Limits {
    /// The defaults, overridden by what the Provider's `spec.plugin.limits` sets.
    pub fn from_spec(spec: &PluginLimits) -> Result<Self, LimitsError> {
        let mut limits = Self::default();
        if let Some(memory) = &spec.memory {
            limits.memory_bytes = parse_quantity(&memory.0).ok_or_else(|| LimitsError::Invalid {
                field: "memory",
                value: memory.0.clone(),
                what: "quantity",
            })?;
            if limits.memory_bytes > MAX_MEMORY_BYTES {
                return Err(LimitsError::MemoryTooLarge { value: limits.memory_bytes, max: MAX_MEMORY_BYTES });
            }
        }
        if let Some(timeout) = &spec.timeout {
            limits.timeout = parse_duration(timeout).ok_or_else(|| LimitsError::Invalid {
                field: "timeout",
                value: timeout.clone(),
                what: "duration",
            })?;
        }
        if let Some(max_output) = &spec.max_output {
            limits.max_output_bytes = parse_quantity(&max_output.0).ok_or_else(|| LimitsError::Invalid {
                field: "maxOutput",
                value: max_output.0.clone(),
                what: "quantity",
            })?;
        }
        Ok(limits)
    }
}

/// A Kubernetes quantity in bytes (`64Mi`, `1G`, `512k`, `1048576`). Hand-written: the
/// quantity crates parse into floats or pull in large dependency trees for this one use.
pub fn parse_quantity(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let multiplier: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| (value * multiplier as f64).round() as u64)
}

/// A Go-style duration (`30s`, `1m30s`, `500ms`, `1.5h`), as the CRD pattern allows.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        let (number, after) = rest.split_at(number_end);
        let unit_end = after.find(|c: char| c.is_ascii_digit()).unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let value: f64 = number.parse().ok()?;
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            _ => return None,
        };
        total += Duration::try_from_secs_f64(seconds).ok()?;
        rest = next;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    #[test]
    fn quantities_and_durations() {
        assert_eq!(parse_quantity("64Mi"), Some(64 << 20));
        assert_eq!(parse_quantity("1G"), Some(1_000_000_000));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("4096"), Some(4096));
        assert_eq!(parse_quantity("12Qi"), None);
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn spec_overrides_defaults() {
        let spec =
            PluginLimits { memory: Some(Quantity("128Mi".into())), timeout: Some("5s".into()), max_output: None };
        let limits = Limits::from_spec(&spec).unwrap();
        assert_eq!(limits.memory_bytes, 128 << 20);
        assert_eq!(limits.timeout, Duration::from_secs(5));
        assert_eq!(limits.max_output_bytes, DEFAULT_MAX_OUTPUT_BYTES);
        let too_big = PluginLimits { memory: Some(Quantity("2Gi".into())), ..Default::default() };
        assert!(matches!(Limits::from_spec(&too_big), Err(LimitsError::MemoryTooLarge { .. })));
    }
}
