//! Metrics and probes: one Prometheus registry for the process (reconciles and plugin calls),
//! served on `/metrics`, and `/healthz` / `/readyz` on the probe address, as upstream serves
//! them on :8080 and :8081.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

use crate::plugins::metrics::PluginMetrics;

/// Everything the operator measures.
pub struct Telemetry {
    pub registry: Registry,
    pub plugins: Arc<PluginMetrics>,
    reconciliations: IntCounterVec,
    reconcile_duration: HistogramVec,
    /// Set once the controllers run (or, with leader election, once this replica stands by).
    ready: AtomicBool,
}

impl Telemetry {
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let plugins = Arc::new(PluginMetrics::new(&registry)?);
        let reconciliations = IntCounterVec::new(
            Opts::new("kfp_operator_reconciliations_total", "Reconciles by controller and result"),
            &["controller", "result"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("kfp_operator_reconcile_duration_seconds", "Reconcile latency by controller")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["controller"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        Ok(Self { registry, plugins, reconciliations, reconcile_duration, ready: AtomicBool::new(false) })
    }

    /// Counts and times one reconcile.
    pub fn observe_reconcile(&self, controller: &str, succeeded: bool, elapsed: Duration) {
        let result = if succeeded { "success" } else { "error" };
        self.reconciliations.with_label_values(&[controller, result]).inc();
        self.reconcile_duration.with_label_values(&[controller]).observe(elapsed.as_secs_f64());
    }

    /// Runs `reconcile` and records it under `controller`.
    pub async fn measure<T, E>(&self, controller: &str, reconcile: impl Future<Output = Result<T, E>>) -> Result<T, E> {
        let started = Instant::now();
        let result = reconcile.await;
        self.observe_reconcile(controller, result.is_ok(), started.elapsed());
        result
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }

    fn encode(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        Ok(String::from_utf8_lossy(&buffer).into_owned())
    }
}

/// Serves `/metrics` on `metrics` and `/healthz`, `/readyz` on `probes` until the process ends.
pub async fn serve(telemetry: Arc<Telemetry>, metrics: SocketAddr, probes: SocketAddr) -> std::io::Result<()> {
    let metrics_app = Router::new()
        .route(
            "/metrics",
            get(|State(telemetry): State<Arc<Telemetry>>| async move {
                telemetry.encode().map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()))
            }),
        )
        .with_state(telemetry.clone());
    let probe_app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(|State(telemetry): State<Arc<Telemetry>>| async move {
                if telemetry.ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }),
        )
        .with_state(telemetry);
    let (metrics_listener, probe_listener) =
        (tokio::net::TcpListener::bind(metrics).await?, tokio::net::TcpListener::bind(probes).await?);
    tracing::info!(%metrics, %probes, "serving /metrics, /healthz and /readyz");
    let (a, b) = tokio::join!(axum::serve(metrics_listener, metrics_app), axum::serve(probe_listener, probe_app));
    a.and(b)
}
