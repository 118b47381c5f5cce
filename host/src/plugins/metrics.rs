//! Per-plugin metrics, named by Prometheus conventions.

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

pub struct PluginMetrics {
    calls: IntCounterVec,
    duration: HistogramVec,
    memory_peak: IntGaugeVec,
}

impl PluginMetrics {
    /// Creates the metrics and registers them with `registry`.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let calls = IntCounterVec::new(
            Opts::new("kfp_operator_plugin_calls_total", "Plugin calls by plugin, operation and outcome"),
            &["plugin", "operation", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "kfp_operator_plugin_call_duration_seconds",
                "Plugin call latency, instantiation included",
            )
            .buckets(vec![0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["plugin", "operation"],
        )?;
        let memory_peak = IntGaugeVec::new(
            Opts::new(
                "kfp_operator_plugin_instance_memory_peak_bytes",
                "Largest linear memory one instance of the plugin has used",
            ),
            &["plugin"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(memory_peak.clone()))?;
        Ok(Self { calls, duration, memory_peak })
    }

    pub fn observe(&self, plugin: &str, operation: &str, outcome: &str, elapsed: Duration, memory_peak_bytes: u64) {
        self.calls.with_label_values(&[plugin, operation, outcome]).inc();
        self.duration.with_label_values(&[plugin, operation]).observe(elapsed.as_secs_f64());
        let gauge = self.memory_peak.with_label_values(&[plugin]);
        let peak = i64::try_from(memory_peak_bytes).unwrap_or(i64::MAX);
        if peak > gauge.get() {
            gauge.set(peak);
        }
    }
}
