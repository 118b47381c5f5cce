//! The stub provider: no platform behind it, deterministic answers.
//!
//! - Ids are `<kind>:<namespace>/<name>` (runs add `@<start in unix ms>`: the stub stores
//!   nothing, so a run's id carries its start time).
//! - A resource named `<action>-<kind>-fail` (e.g. `create-pipeline-fail`, `delete-run-fail`)
//!   fails that action permanently with `<action> <kind> failed`, as upstream's stub does;
//!   `<action>-<kind>-transient` fails it transiently. Names starting with `slow-` answer after
//!   the Provider parameter `slowCallMillis` (default 1000).
//! - `run-status` reports `running` until the Provider parameter `runDurationSeconds`
//!   (default 5) has passed since the run started, then `succeeded` with a `Pusher`
//!   `pushed_model` artifact (metadata `pushed: 1`) and a `Trainer` `model` artifact, under
//!   `pipelineRootStorage`; runs whose name ends in `-fails` end `failed`.
//! - With the Provider parameter `recordTo` (a URL the Provider's `allowedHosts` lets through),
//!   every create, update and delete that succeeds is first reported there as JSON
//!   `{"action", "kind", "id"}`, so tests can count what reached the "platform".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kfp_plugin_sdk::{
    ComponentArtifacts, Error, ExperimentDefinition, PipelineDefinition, ProducedArtifact, Provider, RunDefinition,
    RunScheduleDefinition, RunState, RunStatus, export_provider, provider_context,
};
use serde_json::Value;

struct Stub;

/// The Provider's `spec.parameters`.
fn parameter(name: &str) -> Option<Value> {
    let parameters: Value = serde_json::from_str(&provider_context().parameters_json).ok()?;
    parameters.get(name).cloned()
}

fn number_parameter(name: &str, default: u64) -> u64 {
    parameter(name).and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(default)
}

/// The name part of `namespace/name` (or of an id `<kind>:<namespace>/<name>[@start]`).
fn short_name(name_or_id: &str) -> &str {
    let without_start = name_or_id.split('@').next().unwrap_or_default();
    without_start.rsplit('/').next().unwrap_or_default()
}

/// Applies the magic names for `action` on `kind`.
fn behave(action: &str, kind: &str, name_or_id: &str) -> Result<(), Error> {
    let name = short_name(name_or_id);
    if name == format!("{action}-{kind}-fail") {
        return Err(Error::Permanent(format!("{action} {kind} failed")));
    }
    if name == format!("{action}-{kind}-transient") {
        return Err(Error::Transient(format!("{action} {kind} failed transiently")));
    }
    if name.starts_with("slow-") {
        std::thread::sleep(Duration::from_millis(number_parameter("slowCallMillis", 1000)));
    }
    Ok(())
}

/// Reports a remote operation to `recordTo`, if set. A failed report fails the call
/// transiently: an operation the test cannot see must not count as done.
fn record(action: &str, kind: &str, id: &str) -> Result<(), Error> {
    let Some(url) = parameter("recordTo").and_then(|v| v.as_str().map(str::to_owned)) else { return Ok(()) };
    let report = serde_json::json!({ "action": action, "kind": kind, "id": id }).to_string();
    let response = kfp_plugin_sdk::http::post_json(&url, &report)?;
    response.error_for_status().map_err(|e| Error::Transient(format!("recording {action} {kind} {id}: {e:?}")))?;
    Ok(())
}

/// Behaves as the magic names ask, then records the operation.
fn perform(action: &str, kind: &str, name: &str, id: &str) -> Result<(), Error> {
    behave(action, kind, name)?;
    record(action, kind, id)
}

fn id(kind: &str, name: &str) -> String {
    format!("{kind}:{name}")
}

fn now_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or_default()
}

impl Provider for Stub {
    fn create_pipeline(definition: PipelineDefinition, _compiled: String) -> Result<String, Error> {
        let id = id("pipeline", &definition.name);
        perform("create", "pipeline", &definition.name, &id)?;
        Ok(id)
    }

    fn update_pipeline(id: String, definition: PipelineDefinition, _compiled: String) -> Result<String, Error> {
        perform("update", "pipeline", &definition.name, &id)?;
        Ok(id)
    }

    fn delete_pipeline(id: String) -> Result<(), Error> {
        perform("delete", "pipeline", &id, &id)
    }

    fn create_experiment(definition: ExperimentDefinition) -> Result<String, Error> {
        let id = id("experiment", &definition.name);
        perform("create", "experiment", &definition.name, &id)?;
        Ok(id)
    }

    fn update_experiment(id: String, definition: ExperimentDefinition) -> Result<String, Error> {
        perform("update", "experiment", &definition.name, &id)?;
        Ok(id)
    }

    fn delete_experiment(id: String) -> Result<(), Error> {
        perform("delete", "experiment", &id, &id)
    }

    fn create_run(definition: RunDefinition) -> Result<String, Error> {
        let id = format!("{}@{}", id("run", &definition.name), now_millis());
        perform("create", "run", &definition.name, &id)?;
        Ok(id)
    }

    fn delete_run(id: String) -> Result<(), Error> {
        perform("delete", "run", &id, &id)
    }

    fn run_status(id: String) -> Result<RunStatus, Error> {
        let (name, started) = id
            .strip_prefix("run:")
            .and_then(|rest| rest.split_once('@'))
            .ok_or_else(|| Error::NotFound(format!("no run {id}")))?;
        let started: u128 = started.parse().map_err(|_| Error::NotFound(format!("no run {id}")))?;
        let duration = u128::from(number_parameter("runDurationSeconds", 5)) * 1000;
        let start_time = Some(rfc3339(started));
        if now_millis() < started + duration {
            return Ok(RunStatus {
                state: RunState::Running,
                start_time,
                end_time: None,
                artifacts: vec![],
                message: None,
            });
        }
        let end_time = Some(rfc3339(started + duration));
        if short_name(name).ends_with("-fails") {
            let message = Some("the stub run failed, as its name asks".to_owned());
            return Ok(RunStatus { state: RunState::Failed, start_time, end_time, artifacts: vec![], message });
        }
        let root = provider_context().pipeline_root_storage;
        let artifact = |component: &str, output: &str, metadata: &str| ComponentArtifacts {
            component: component.to_owned(),
            artifacts: vec![ProducedArtifact {
                name: output.to_owned(),
                location: format!("{root}/{name}/{component}/{output}"),
                metadata_json: metadata.to_owned(),
            }],
        };
        let artifacts = vec![artifact("Pusher", "pushed_model", r#"{"pushed":1}"#), artifact("Trainer", "model", "{}")];
        Ok(RunStatus { state: RunState::Succeeded, start_time, end_time, artifacts, message: None })
    }

    fn create_run_schedule(definition: RunScheduleDefinition) -> Result<String, Error> {
        let id = id("runschedule", &definition.name);
        perform("create", "runschedule", &definition.name, &id)?;
        Ok(id)
    }

    fn update_run_schedule(id: String, definition: RunScheduleDefinition) -> Result<String, Error> {
        perform("update", "runschedule", &definition.name, &id)?;
        Ok(id)
    }

    fn delete_run_schedule(id: String) -> Result<(), Error> {
        perform("delete", "runschedule", &id, &id)
    }
}

/// Unix milliseconds as RFC 3339 UTC (civil-from-days, Howard Hinnant's algorithm); written
/// here to keep a date crate out of a plugin that needs this once.
fn rfc3339(unix_millis: u128) -> String {
    let seconds = (unix_millis / 1000) as i64;
    let (days, secs_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

export_provider!(Stub);
