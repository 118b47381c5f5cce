//! Calling a plugin: a fresh store and instance per call, within its limits, with every
//! failure turned into a typed [`PluginError`].

use std::{sync::Arc, time::Instant};

use serde::{Deserialize, Serialize};
use tracing::Instrument;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::{
    bindings::{
        ExperimentDefinition, PipelineDefinition, PluginResultError, ProviderContext, RunDefinition,
        RunScheduleDefinition, RunStatus,
    },
    error::{PluginError, PluginErrorKind},
    http_policy::HttpPolicy,
    limits::Limits,
    metrics::PluginMetrics,
    sandbox::{PreparedPlugin, PreparedWorld},
    state::CallState,
};

/// One call to a provider plugin. Field names are the WIT names in snake case; this is also
/// the JSON `kfp-operator plugin call` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "operation")]
pub enum ProviderRequest {
    CreatePipeline { definition: PipelineDefinition, compiled_pipeline: String },
    UpdatePipeline { id: String, definition: PipelineDefinition, compiled_pipeline: String },
    DeletePipeline { id: String },
    CreateExperiment { definition: ExperimentDefinition },
    UpdateExperiment { id: String, definition: ExperimentDefinition },
    DeleteExperiment { id: String },
    CreateRun { definition: RunDefinition },
    DeleteRun { id: String },
    RunStatus { id: String },
    CreateRunSchedule { definition: RunScheduleDefinition },
    UpdateRunSchedule { id: String, definition: RunScheduleDefinition },
    DeleteRunSchedule { id: String },
}

impl ProviderRequest {
    /// The WIT name of the operation.
    pub fn operation(&self) -> &'static str {
        match self {
            Self::CreatePipeline { .. } => "create-pipeline",
            Self::UpdatePipeline { .. } => "update-pipeline",
            Self::DeletePipeline { .. } => "delete-pipeline",
            Self::CreateExperiment { .. } => "create-experiment",
            Self::UpdateExperiment { .. } => "update-experiment",
            Self::DeleteExperiment { .. } => "delete-experiment",
            Self::CreateRun { .. } => "create-run",
            Self::DeleteRun { .. } => "delete-run",
            Self::RunStatus { .. } => "run-status",
            Self::CreateRunSchedule { .. } => "create-run-schedule",
            Self::UpdateRunSchedule { .. } => "update-run-schedule",
            Self::DeleteRunSchedule { .. } => "delete-run-schedule",
        }
    }
}

/// What a provider call returns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProviderResponse {
    /// The remote id (create and update).
    Id(String),
    /// Done (delete).
    Done,
    RunStatus(RunStatus),
}

impl ProviderResponse {
    /// Bytes the plugin handed back, for `limits.maxOutput`.
    fn size(&self) -> u64 {
        match self {
            Self::Id(id) => id.len() as u64,
            Self::Done => 0,
            Self::RunStatus(status) => {
                let strings = status.artifacts.iter().flat_map(|component| {
                    std::iter::once(component.component.len()).chain(
                        component.artifacts.iter().map(|a| a.name.len() + a.location.len() + a.metadata_json.len()),
                    )
                });
                (strings.sum::<usize>() + status.message.as_ref().map_or(0, String::len)) as u64
            }
        }
    }
}

/// A plugin bound to the Provider it serves: limits, HTTP capability and context. Cheap to
/// clone; every call gets a fresh instance.
#[derive(Clone)]
pub struct PluginHandle {
    prepared: PreparedPlugin,
    limits: Limits,
    http_policy: HttpPolicy,
    context: ProviderContext,
    metrics: Option<Arc<PluginMetrics>>,
}

impl PluginHandle {
    pub fn new(prepared: PreparedPlugin, limits: Limits, http_policy: HttpPolicy, context: ProviderContext) -> Self {
        Self { prepared, limits, http_policy, context, metrics: None }
    }

    pub fn with_metrics(mut self, metrics: Arc<PluginMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    pub fn prepared(&self) -> &PreparedPlugin {
        &self.prepared
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Calls a provider operation.
    pub async fn call_provider(&self, request: &ProviderRequest) -> Result<ProviderResponse, PluginError> {
        let PreparedWorld::Provider(pre) = &self.prepared.world else {
            return Err(self.wrong_kind("provider", request.operation()));
        };
        self.run(
            request.operation(),
            async |store: &mut Store<CallState>| {
                let provider = pre.instantiate_async(&mut *store).await?;
                let store = &mut *store;
                Ok(match request {
                    ProviderRequest::CreatePipeline { definition, compiled_pipeline } => provider
                        .call_create_pipeline(store, definition, compiled_pipeline)
                        .await?
                        .map(ProviderResponse::Id),
                    ProviderRequest::UpdatePipeline { id, definition, compiled_pipeline } => provider
                        .call_update_pipeline(store, id, definition, compiled_pipeline)
                        .await?
                        .map(ProviderResponse::Id),
                    ProviderRequest::DeletePipeline { id } => {
                        provider.call_delete_pipeline(store, id).await?.map(|()| ProviderResponse::Done)
                    }
                    ProviderRequest::CreateExperiment { definition } => {
                        provider.call_create_experiment(store, definition).await?.map(ProviderResponse::Id)
                    }
                    ProviderRequest::UpdateExperiment { id, definition } => {
                        provider.call_update_experiment(store, id, definition).await?.map(ProviderResponse::Id)
                    }
                    ProviderRequest::DeleteExperiment { id } => {
                        provider.call_delete_experiment(store, id).await?.map(|()| ProviderResponse::Done)
                    }
                    ProviderRequest::CreateRun { definition } => {
                        provider.call_create_run(store, definition).await?.map(ProviderResponse::Id)
                    }
                    ProviderRequest::DeleteRun { id } => {
                        provider.call_delete_run(store, id).await?.map(|()| ProviderResponse::Done)
                    }
                    ProviderRequest::RunStatus { id } => {
                        provider.call_run_status(store, id).await?.map(ProviderResponse::RunStatus)
                    }
                    ProviderRequest::CreateRunSchedule { definition } => {
                        provider.call_create_run_schedule(store, definition).await?.map(ProviderResponse::Id)
                    }
                    ProviderRequest::UpdateRunSchedule { id, definition } => {
                        provider.call_update_run_schedule(store, id, definition).await?.map(ProviderResponse::Id)
                    }
                    ProviderRequest::DeleteRunSchedule { id } => {
                        provider.call_delete_run_schedule(store, id).await?.map(|()| ProviderResponse::Done)
                    }
                })
            },
            ProviderResponse::size,
        )
        .await
    }

    /// Calls a compiler plugin's `compile`.
    pub async fn compile(&self, definition: &PipelineDefinition) -> Result<String, PluginError> {
        let PreparedWorld::Compiler(pre) = &self.prepared.world else {
            return Err(self.wrong_kind("compiler", "compile"));
        };
        self.run(
            "compile",
            async |store: &mut Store<CallState>| {
                let compiler = pre.instantiate_async(&mut *store).await?;
                compiler.call_compile(&mut *store, definition).await
            },
            |compiled: &String| compiled.len() as u64,
        )
        .await
    }

    fn wrong_kind(&self, expected: &'static str, operation: &str) -> PluginError {
        let kind = PluginErrorKind::WrongKind { expected, actual: self.prepared.world() };
        PluginError::new(&self.prepared.id, Some(operation), kind)
    }

    /// Runs `invoke` in a fresh store under the plugin's limits and classifies the outcome.
    async fn run<R>(
        &self,
        operation: &'static str,
        invoke: impl AsyncFnOnce(&mut Store<CallState>) -> wasmtime::Result<Result<R, PluginResultError>>,
        output_size: impl Fn(&R) -> u64,
    ) -> Result<R, PluginError> {
        let id = &self.prepared.id;
        let span = tracing::info_span!("plugin_call", plugin = %id.name, sha256 = %id.sha256, operation);
        let started = Instant::now();
        let timeout = self.limits.timeout;
        let state = CallState::new(
            &id.name,
            operation,
            self.context.clone(),
            self.http_policy.for_call(),
            self.limits.memory_bytes,
            started + timeout,
        );
        let mut store = Store::new(self.prepared.sandbox.engine(), state);
        store.limiter(|state| &mut state.limiter);
        // Yield to the executor every tick so a computing plugin shares its thread, and stop it
        // at the deadline; the timeout below covers time spent waiting on host I/O.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            if Instant::now() >= context.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let outcome = tokio::time::timeout(timeout, invoke(&mut store)).instrument(span.clone()).await;
        let result = self.classify(operation, outcome, &store, &output_size);
        let state = store.data();
        if state.dropped_log_lines > 0 {
            tracing::warn!(parent: &span, dropped = state.dropped_log_lines, "plugin log lines over the per-call limit were dropped");
        }
        if let Some(metrics) = &self.metrics {
            let outcome = result.as_ref().map(|_| "ok").unwrap_or_else(PluginError::outcome);
            metrics.observe(&id.name, operation, outcome, started.elapsed(), state.limiter.peak);
        }
        match &result {
            Ok(_) => {
                tracing::debug!(parent: &span, elapsed = ?started.elapsed(), "plugin call succeeded")
            }
            Err(error) => {
                tracing::info!(parent: &span, elapsed = ?started.elapsed(), %error, "plugin call failed")
            }
        }
        result
    }

    fn classify<R>(
        &self,
        operation: &'static str,
        outcome: Result<wasmtime::Result<Result<R, PluginResultError>>, tokio::time::error::Elapsed>,
        store: &Store<CallState>,
        output_size: &impl Fn(&R) -> u64,
    ) -> Result<R, PluginError> {
        let state = store.data();
        let fail = |kind| Err(PluginError::new(&self.prepared.id, Some(operation), kind));
        let refusals = || {
            let refusals = state.http_policy.refusals();
            if refusals.is_empty() {
                String::new()
            } else {
                format!(" (the operator refused: {})", refusals.join("; "))
            }
        };
        match outcome {
            Err(_elapsed) => fail(PluginErrorKind::DeadlineExceeded(self.limits.timeout)),
            Ok(Err(error)) => fail(self.trap_kind(&error, state)),
            Ok(Ok(Err(plugin_error))) => fail(match plugin_error {
                PluginResultError::Permanent(message) => PluginErrorKind::Permanent(message + &refusals()),
                PluginResultError::Transient(message) => PluginErrorKind::Transient(message + &refusals()),
                PluginResultError::Unsupported(message) => PluginErrorKind::Unsupported(message),
                PluginResultError::NotFound(message) => PluginErrorKind::NotFound(message),
            }),
            Ok(Ok(Ok(value))) => {
                let size = output_size(&value);
                if size > self.limits.max_output_bytes {
                    return fail(PluginErrorKind::OutputTooLarge { size, limit: self.limits.max_output_bytes });
                }
                Ok(value)
            }
        }
    }

    fn trap_kind(&self, error: &wasmtime::Error, state: &CallState) -> PluginErrorKind {
        if error.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            return PluginErrorKind::DeadlineExceeded(self.limits.timeout);
        }
        if state.limiter.exceeded {
            return PluginErrorKind::OutOfMemory { limit: self.limits.memory_bytes };
        }
        let text = format!("{error:?}");
        if text.contains("maximum concurrent") || text.contains("pooling allocator") && text.contains("limit") {
            return PluginErrorKind::Exhausted(format!("{error:#}"));
        }
        let mut message = shorten_backtrace(&text);
        if let Some(hint) = trap_hint(&text) {
            message = format!("{hint}\n{message}");
        }
        let stderr = state.stderr_text();
        if !stderr.is_empty() {
            message = format!("{message}\nplugin stderr: {stderr}");
        }
        PluginErrorKind::Trap { message }
    }
}

/// Backtrace lines kept at each end of a trap message; deep recursion produces thousands.
const BACKTRACE_LINES_KEPT: usize = 12;

fn shorten_backtrace(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= 2 * BACKTRACE_LINES_KEPT {
        return text.to_owned();
    }
    let omitted = lines.len() - 2 * BACKTRACE_LINES_KEPT;
    let mut kept = lines[..BACKTRACE_LINES_KEPT].to_vec();
    let marker = format!("    … {omitted} lines omitted …");
    kept.push(&marker);
    kept.extend_from_slice(&lines[lines.len() - BACKTRACE_LINES_KEPT..]);
    kept.join("\n")
}

/// A plain-words cause for traps whose wasmtime message does not say it.
fn trap_hint(text: &str) -> Option<&'static str> {
    // Languages compiled to wasm32 keep their stack in linear memory below the data; running
    // off its end wraps the stack pointer to the top of the 32-bit address space.
    let wrapped_stack =
        text.contains("out of bounds memory access") && text.contains("memory fault at wasm address 0xffff");
    if text.contains("call stack exhausted") || wrapped_stack {
        Some("stack overflow: the plugin recursed too deeply (its stack ran out)")
    } else {
        None
    }
}
