//! RunSchedules: one remote recurring run each, through the shared synchronisation path. The
//! pipeline reference is passed as written (upstream reference 1.6: a RunSchedule does not
//! resolve the latest version; RunConfigurations pin it when they create schedules).

use super::synced::synced_kind;
use crate::{
    api::{RUN_CONFIGURATION_LABEL, RunSchedule},
    plugins::bindings::{NamedValue, OutputArtifact, RunScheduleDefinition, Schedule, TriggerIndicator},
};

synced_kind!(RunSchedule, "runschedule", CreateRunSchedule, UpdateRunSchedule, DeleteRunSchedule);

impl RunSchedule {
    fn definition(&self, name: String, version: String) -> RunScheduleDefinition {
        let namespace = self.metadata.namespace.clone().unwrap_or_default();
        let in_namespace =
            |object: &str| if object.is_empty() { String::new() } else { format!("{namespace}/{object}") };
        let run_configuration = self.metadata.labels.as_ref().and_then(|labels| labels.get(RUN_CONFIGURATION_LABEL));
        let spec = &self.spec;
        RunScheduleDefinition {
            name,
            version,
            pipeline_name: in_namespace(spec.pipeline.as_ref().map(|p| p.name.as_str()).unwrap_or_default()),
            pipeline_version: spec.pipeline.as_ref().and_then(|p| p.version.clone()).unwrap_or_default(),
            run_configuration_name: run_configuration.map(|rc| in_namespace(rc)).unwrap_or_default(),
            experiment_name: in_namespace(&spec.experiment_name),
            schedule: Schedule {
                cron_expression: spec.schedule.cron_expression.clone(),
                start_time: spec.schedule.start_time.as_ref().map(|t| t.0.to_string()),
                end_time: spec.schedule.end_time.as_ref().map(|t| t.0.to_string()),
            },
            parameters: spec
                .parameters
                .iter()
                .map(|p| NamedValue { name: p.name.clone(), value: p.value.clone() })
                .collect(),
            artifacts: spec
                .artifacts
                .iter()
                .map(|a| OutputArtifact { name: a.name.clone(), path: a.path.to_string() })
                .collect(),
            trigger_indicator: TriggerIndicator {
                type_: "schedule".into(),
                source: run_configuration.cloned().unwrap_or_default(),
                source_namespace: run_configuration.map(|_| namespace.clone()).unwrap_or_default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_qualify_names_and_keep_the_pipeline_as_written() {
        let schedule: RunSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "pipelines.kubeflow.org/v1beta1", "kind": "RunSchedule",
            "metadata": { "name": "nightly", "namespace": "team", "labels": { RUN_CONFIGURATION_LABEL: "training" } },
            "spec": {
                "provider": "team/kfp",
                "pipeline": "penguin:v1-abc123",
                "experimentName": "exp",
                "parameters": [{ "name": "a", "value": "1" }],
                "artifacts": [{ "name": "model", "path": "Pusher:pushed_model" }],
                "schedule": { "cronExpression": "0 0 * * *", "startTime": "2026-01-01T00:00:00Z" },
            },
        }))
        .unwrap();
        let definition = schedule.definition("team/nightly".into(), "abc123".into());
        assert_eq!(
            (definition.pipeline_name.as_str(), definition.pipeline_version.as_str()),
            ("team/penguin", "v1-abc123")
        );
        assert_eq!(definition.experiment_name, "team/exp");
        assert_eq!(definition.run_configuration_name, "team/training");
        assert_eq!(definition.schedule.start_time.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(definition.schedule.end_time, None);
        assert_eq!(definition.artifacts[0].path, "Pusher:pushed_model:0");
        assert_eq!(
            (definition.trigger_indicator.type_.as_str(), definition.trigger_indicator.source.as_str()),
            ("schedule", "training")
        );
    }
}
