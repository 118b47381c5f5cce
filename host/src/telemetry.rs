//! Metrics and probes: one Prometheus registry for the process (reconciles and plugin calls),
//! served on `/metrics`, and `/healthz` / `/readyz` on the probe address, as upstream serves
//! them on :8080 and :8081.

use std::{
    collections::HashSet,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::StatusCode, routing::get};
use kube::runtime::controller::Action;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::plugins::metrics::PluginMetrics;

/// Everything the operator measures.
pub struct Telemetry {
    pub registry: Registry,
    pub plugins: Arc<PluginMetrics>,
    reconciliations: IntCounterVec,
    reconcile_duration: HistogramVec,
    in_flight: IntGaugeVec,
    queue_depth: IntGaugeVec,
    /// `(controller, object)` pairs counted in `queue_depth`.
    queued: Mutex<HashSet<(String, String)>>,
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
        let in_flight = IntGaugeVec::new(
            Opts::new("kfp_operator_reconciles_in_flight", "Reconciles running now, by controller"),
            &["controller"],
        )?;
        // kube-runtime's scheduler does not expose its queue, so this counts what the operator
        // knows: objects whose last reconcile asked to run again (a retry after an error, a
        // transient plugin failure's backoff, a wait for a dependency) and have not yet.
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "kfp_operator_reconcile_queue_depth",
                "Objects waiting for a scheduled reconcile (retry, backoff or wait), by controller",
            ),
            &["controller"],
        )?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        Ok(Self {
            registry,
            plugins,
            reconciliations,
            reconcile_duration,
            in_flight,
            queue_depth,
            queued: Mutex::default(),
            ready: AtomicBool::new(false),
        })
    }

    /// Counts and times one reconcile.
    pub fn observe_reconcile(&self, controller: &str, succeeded: bool, elapsed: Duration) {
        let result = if succeeded { "success" } else { "error" };
        self.reconciliations.with_label_values(&[controller, result]).inc();
        self.reconcile_duration.with_label_values(&[controller]).observe(elapsed.as_secs_f64());
    }

    /// Runs the reconcile of `object` and records it under `controller`: its count, duration,
    /// whether it is running and whether it asked to run again.
    pub async fn measure<E>(
        &self,
        controller: &str,
        object: String,
        reconcile: impl Future<Output = Result<Action, E>>,
    ) -> Result<Action, E> {
        let entry = (controller.to_owned(), object);
        self.set_queued(&entry, false);
        let in_flight = self.in_flight.with_label_values(&[controller]);
        in_flight.inc();
        let started = Instant::now();
        let result = reconcile.await;
        in_flight.dec();
        self.observe_reconcile(controller, result.is_ok(), started.elapsed());
        // An error always leads to a retry (the error policy requeues).
        let again = result.as_ref().map_or(true, |action| *action != Action::await_change());
        self.set_queued(&entry, again);
        result
    }

    /// Stops counting objects of `controller` that `exists` says are gone: kube-runtime never
    /// reconciles a deleted object again, so `measure` cannot.
    pub fn forget_queued(&self, controller: &str, exists: impl Fn(&str) -> bool) {
        let mut set = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let before = set.len();
        set.retain(|(queued_controller, object)| queued_controller != controller || exists(object));
        let forgotten = before - set.len();
        if forgotten > 0 {
            self.queue_depth.with_label_values(&[controller]).sub(forgotten as i64);
        }
    }

    fn set_queued(&self, entry: &(String, String), queued: bool) {
        let mut set = self.queued.lock().unwrap_or_else(|e| e.into_inner());
        let changed = if queued { set.insert(entry.clone()) } else { set.remove(entry) };
        if changed {
            self.queue_depth.with_label_values(&[entry.0.as_str()]).add(if queued { 1 } else { -1 });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn gauge(telemetry: &Telemetry, name: &str) -> i64 {
        let gauge = if name == "queue" { &telemetry.queue_depth } else { &telemetry.in_flight };
        gauge.with_label_values(&["pipeline"]).get()
    }

    #[tokio::test]
    async fn the_queue_depth_counts_objects_waiting_to_run_again() {
        let telemetry = Telemetry::new().unwrap();
        let retry = async { Ok::<_, ()>(Action::requeue(Duration::from_secs(5))) };
        telemetry.measure("pipeline", "team/a".into(), retry).await.unwrap();
        let failed = async { Err::<Action, _>(()) };
        telemetry.measure("pipeline", "team/b".into(), failed).await.unwrap_err();
        assert_eq!(gauge(&telemetry, "queue"), 2, "a requeue and an error both run again");

        // Running again takes an object off the queue; settling keeps it off.
        let in_flight = async {
            assert_eq!(gauge(&telemetry, "in flight"), 1);
            assert_eq!(gauge(&telemetry, "queue"), 1);
            Ok::<_, ()>(Action::await_change())
        };
        telemetry.measure("pipeline", "team/a".into(), in_flight).await.unwrap();
        assert_eq!((gauge(&telemetry, "queue"), gauge(&telemetry, "in flight")), (1, 0));

        // A deleted object is never reconciled again: pruning forgets it.
        telemetry.forget_queued("pipeline", |object| object != "team/b");
        assert_eq!(gauge(&telemetry, "queue"), 0);
    }
}
