//! The Provider controller: loads a Provider's plugin (and its frameworks' compiler plugins)
//! through the plugin registry and reports the outcome on the Provider.
//!
//! No Deployments, Services or workflows: a Provider is `Succeeded` once its plugins are loaded
//! and `Failed` with the loader's message otherwise (digest mismatch, wrong world, ConfigMap or
//! registry unreachable...). A failed reload keeps the last good version serving and the status
//! says which. A change of the Provider or of a ConfigMap it names reloads; failures are retried
//! with a backoff, since a missing ConfigMap or an unreachable registry may come right.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
        watcher,
    },
};

use super::{Context, merge_status, scoped_api};
use crate::{
    api::{
        Provider,
        conditions::{SynchronizationState, merge_condition, synchronized_condition},
        provider::{LoadedFramework, LoadedPlugin, ProviderStatus},
    },
    plugins::{LoadRequest, PluginStatus, bindings::ProviderContext},
};

/// How soon a Provider whose plugins failed to load is retried.
const RETRY_FAILED_LOAD: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Provider without a namespace")]
    NoNamespace,
    #[error("writing the status of Provider {0}: {1}")]
    Status(String, #[source] kube::Error),
}

/// The registry key of a Provider's plugin, and of one of its frameworks' compiler plugins.
pub fn plugin_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

pub fn framework_plugin_key(namespace: &str, name: &str, framework: &str) -> String {
    format!("{namespace}/{name}/frameworks/{framework}")
}

/// Runs the controller until the stream ends. `namespace` limits it to one namespace (tests);
/// `None` watches the whole cluster.
pub async fn run(context: Arc<Context>, namespace: Option<&str>) {
    let (providers, config_maps) =
        (scoped_api::<Provider>(&context.client, namespace), scoped_api::<ConfigMap>(&context.client, namespace));
    let controller = Controller::new(providers, watcher::Config::default());
    let store = controller.store();
    controller
        .watches(config_maps, watcher::Config::default(), move |config_map| {
            // The Providers in the ConfigMap's namespace that take a plugin from it.
            let (namespace, name) = (config_map.namespace(), config_map.name_any());
            store
                .state()
                .into_iter()
                .filter(|provider| provider.namespace() == namespace && references_config_map(provider, &name))
                .map(|provider| ObjectRef::from_obj(&*provider))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(
            |provider, context| async move {
                context.telemetry.clone().measure("provider", reconcile(provider, context)).await
            },
            error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "Provider reconcile stream error");
            }
        })
        .await;
}

fn references_config_map(provider: &Provider, name: &str) -> bool {
    let plugins = provider.spec.plugin.iter().chain(provider.spec.frameworks.iter().filter_map(|f| f.plugin.as_ref()));
    plugins.filter_map(|plugin| plugin.config_map.as_ref()).any(|source| source.name == name)
}

async fn reconcile(provider: Arc<Provider>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = provider.namespace().ok_or(Error::NoNamespace)?;
    let name = provider.name_any();
    let key = plugin_key(&namespace, &name);
    let plugin_context = ProviderContext {
        name: key.clone(),
        pipeline_root_storage: provider.spec.pipeline_root_storage.clone(),
        parameters_json: serde_json::to_string(&provider.spec.parameters).unwrap_or_else(|_| "{}".into()),
    };

    let mut failures = Vec::new();
    // Compilers load before the provider plugin: the Pipeline controller waits for the provider
    // plugin, so once it is there the compilers are too (a Pipeline reconciled in between
    // would otherwise fail for a compiler that was about to load).
    let mut frameworks = Vec::new();
    for framework in &provider.spec.frameworks {
        let Some(spec) = &framework.plugin else { continue };
        let framework_key = framework_plugin_key(&namespace, &name, &framework.name);
        let request = LoadRequest { key: &framework_key, namespace: &namespace, spec, context: plugin_context.clone() };
        if let Err(error) = context.plugins.load(request).await {
            let message = format!("framework {}: {error}", framework.name);
            failures.push(still_serving(message, &context.plugins.status(&framework_key)));
        }
        if let Some(LoadedPlugin { sha256, world }) = loaded(&context.plugins.status(&framework_key)) {
            frameworks.push(LoadedFramework { name: framework.name.clone(), sha256, world });
        }
    }

    let plugin = match &provider.spec.plugin {
        None => {
            failures.push(
                "spec.plugin is not set: this operator runs providers as WebAssembly plugins (serviceImage is not used); \
                 see examples/provider-configmap.yaml"
                    .to_owned(),
            );
            None
        }
        Some(spec) => {
            let request = LoadRequest { key: &key, namespace: &namespace, spec, context: plugin_context.clone() };
            if let Err(error) = context.plugins.load(request).await {
                failures.push(still_serving(error.to_string(), &context.plugins.status(&key)));
            }
            loaded(&context.plugins.status(&key))
        }
    };
    let (state, message) = match failures.is_empty() {
        true => (SynchronizationState::Succeeded, String::new()),
        false => (SynchronizationState::Failed, failures.join("; ")),
    };
    write_status(&provider, &context, state, &message, plugin, frameworks).await?;
    Ok(match state {
        SynchronizationState::Succeeded => Action::await_change(),
        _ => Action::requeue(RETRY_FAILED_LOAD),
    })
}

fn loaded(status: &PluginStatus) -> Option<LoadedPlugin> {
    let sha256 = status.sha256.clone()?;
    let world = status.world.map(|world| format!("kfp:operator/{world}@0.1.0")).unwrap_or_default();
    Some(LoadedPlugin { sha256, world })
}

fn still_serving(message: String, status: &PluginStatus) -> String {
    match &status.sha256 {
        Some(sha256) => format!("{message} (the last good version, sha256:{sha256}, keeps serving)"),
        None => message,
    }
}

/// Writes the status when it changed, and an Event when the state or message did (reasons as
/// upstream: `Synced`, `SyncFailed`).
async fn write_status(
    provider: &Provider,
    context: &Context,
    state: SynchronizationState,
    message: &str,
    plugin: Option<LoadedPlugin>,
    frameworks: Vec<LoadedFramework>,
) -> Result<(), Error> {
    let current = provider.status.clone().unwrap_or_default();
    let generation = provider.metadata.generation;
    let mut status = ProviderStatus { plugin, frameworks, ..current.clone() };
    status.status.observed_generation = generation;
    let now = Time(jiff::Timestamp::now());
    let transitioned =
        merge_condition(&mut status.status.conditions, synchronized_condition(state, message, generation, now));
    if status == current {
        return Ok(());
    }
    let name = provider.name_any();
    let api: Api<Provider> = Api::namespaced(context.client.clone(), &provider.namespace().unwrap_or_default());
    merge_status(&api, &name, &status).await.map_err(|e| Error::Status(name.clone(), e))?;
    if transitioned {
        let event = Event {
            type_: if state == SynchronizationState::Failed { EventType::Warning } else { EventType::Normal },
            reason: if state == SynchronizationState::Failed { "SyncFailed" } else { "Synced" }.into(),
            note: Some(if message.is_empty() { state.to_string() } else { format!("{state}: {message}") }),
            action: "LoadPlugin".into(),
            secondary: None,
        };
        if let Err(error) = context.recorder.publish(&event, &provider.object_ref(&())).await {
            tracing::warn!(provider = %name, %error, "could not record an Event");
        }
    }
    tracing::info!(provider = %name, %state, message, "Provider status written");
    Ok(())
}

fn error_policy(provider: Arc<Provider>, error: &Error, _context: Arc<Context>) -> Action {
    tracing::warn!(provider = %provider.name_any(), %error, "Provider reconcile failed; retrying");
    Action::requeue(RETRY_FAILED_LOAD)
}
