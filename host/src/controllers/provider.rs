//! The Provider controller: loads a Provider's plugin (and its frameworks' compiler plugins)
//! through the plugin registry and reports the outcome on the Provider.
//!
//! No Deployments, Services or workflows: a Provider is `Succeeded` once its plugins are loaded
//! and `Failed` with the loader's message otherwise (digest mismatch, wrong world, ConfigMap or
//! registry unreachable...). A failed reload keeps the last good version serving and the status
//! says which. A change of the Provider or of a ConfigMap it names reloads; failures are retried
//! with a backoff, since a missing ConfigMap or an unreachable registry may come right. The
//! plugins of deleted Providers and removed frameworks are forgotten.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::StreamExt;
use k8s_openapi::{api::core::v1::ConfigMap, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{
        Controller, WatchStreamExt,
        controller::Action,
        events::{Event, EventType},
        reflector::ObjectRef,
        watcher,
    },
};

use super::{Context, merge_status, replacing_patch, scoped_api};
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

/// The Provider (`namespace/name`) a registry key belongs to.
fn owner_of(key: &str) -> &str {
    let mut slashes = key.match_indices('/').map(|(at, _)| at);
    match slashes.nth(1) {
        Some(second) => &key[..second],
        None => key,
    }
}

/// Runs the controller until the stream ends. `namespace` limits it to one namespace (tests);
/// `None` watches the whole cluster.
pub async fn run(context: Arc<Context>, namespace: Option<&str>) {
    tokio::select! {
        () = reconcile_all(context.clone(), namespace) => {}
        () = forget_deleted(context, namespace) => {}
    }
}

async fn reconcile_all(context: Arc<Context>, namespace: Option<&str>) {
    let (providers, config_maps) =
        (scoped_api::<Provider>(&context.client, namespace), scoped_api::<ConfigMap>(&context.client, namespace));
    let controller = Controller::new(providers, watcher::Config::default());
    let (store, all) = (controller.store(), controller.store());
    let telemetry = context.telemetry.clone();
    let controller = controller
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
                let key = format!("{}/{}", provider.namespace().unwrap_or_default(), provider.name_any());
                context.telemetry.clone().measure("provider", key, reconcile(provider, context)).await
            },
            error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "Provider reconcile stream error");
            }
        });
    super::with_queue_pruning(telemetry, "provider", all, controller).await;
}

/// Forgets the plugins of deleted Providers. The Controller does not reconcile deleted objects
/// (Providers carry no finalizer, as upstream), so this follows the Providers' watch itself; the
/// relist after a lost watch forgets whatever was deleted in between.
async fn forget_deleted(context: Arc<Context>, namespace: Option<&str>) {
    // Several namespace-scoped controllers may share one registry (tests): each only forgets
    // keys of its own namespace.
    let in_scope = |owner: &str| namespace.is_none_or(|scope| owner.split('/').next() == Some(scope));
    let forget = |gone: &dyn Fn(&str) -> bool| {
        let forgotten = context.plugins.retain(|key| !(in_scope(owner_of(key)) && gone(owner_of(key))));
        if !forgotten.is_empty() {
            tracing::info!(plugins = ?forgotten, "forgot the plugins of deleted Providers");
        }
    };
    let mut live = HashSet::new();
    let events = watcher::watcher(scoped_api::<Provider>(&context.client, namespace), watcher::Config::default())
        .default_backoff();
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Delete(provider)) => {
                let deleted = plugin_key(&provider.namespace().unwrap_or_default(), &provider.name_any());
                forget(&|owner| owner == deleted);
            }
            Ok(watcher::Event::Init) => live.clear(),
            Ok(watcher::Event::InitApply(provider)) => {
                live.insert(plugin_key(&provider.namespace().unwrap_or_default(), &provider.name_any()));
            }
            Ok(watcher::Event::InitDone) => forget(&|owner| !live.contains(owner)),
            Ok(watcher::Event::Apply(_)) => {}
            Err(error) => tracing::debug!(%error, "Provider watch error (retrying)"),
        }
    }
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
    // Frameworks removed from the spec (or that lost their plugin) stop serving.
    let framework_keys: HashSet<String> = provider
        .spec
        .frameworks
        .iter()
        .filter(|framework| framework.plugin.is_some())
        .map(|framework| framework_plugin_key(&namespace, &name, &framework.name))
        .collect();
    let framework_prefix = framework_plugin_key(&namespace, &name, "");
    let removed = context.plugins.retain(|key| !key.starts_with(&framework_prefix) || framework_keys.contains(key));
    if !removed.is_empty() {
        tracing::info!(provider = %key, plugins = ?removed, "forgot the compiler plugins of removed frameworks");
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
    let to_json = |status: &ProviderStatus| serde_json::to_value(status).expect("a status serialises");
    let patch = replacing_patch(&to_json(&current), &to_json(&status));
    merge_status(&api, &name, patch).await.map_err(|e| Error::Status(name.clone(), e))?;
    if transitioned {
        let event = Event {
            type_: if state == SynchronizationState::Failed { EventType::Warning } else { EventType::Normal },
            reason: if state == SynchronizationState::Failed { "SyncFailed" } else { "Synced" }.into(),
            note: Some(if message.is_empty() { state.to_string() } else { format!("{state}: {message}") }),
            action: "LoadPlugin".into(),
            secondary: None,
        };
        context.events.publish(event, provider.object_ref(&()));
    }
    tracing::info!(provider = %name, %state, message, "Provider status written");
    Ok(())
}

fn error_policy(provider: Arc<Provider>, error: &Error, _context: Arc<Context>) -> Action {
    tracing::warn!(provider = %provider.name_any(), %error, "Provider reconcile failed; retrying");
    Action::requeue(RETRY_FAILED_LOAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_belong_to_their_provider() {
        assert_eq!(owner_of(&plugin_key("team", "vertex")), "team/vertex");
        assert_eq!(owner_of(&framework_plugin_key("team", "vertex", "tfx")), "team/vertex");
    }
}
