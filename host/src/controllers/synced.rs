//! The reconcile shared by the kinds that mirror one remote resource (Experiment today;
//! Pipeline, Run and RunSchedule follow the same path): finalizer, version hash, state written
//! before the plugin call, result written after, Events on every status write.

use std::{fmt::Debug, sync::Arc, time::Duration};

use k8s_openapi::{NamespaceResourceScope, apimachinery::pkg::apis::meta::v1::Time};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        events::{Event, EventType},
    },
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::json;

use super::{
    Context, scoped_api,
    sync_plan::{Observed, Plan, plan},
};
use crate::{
    api::{
        FINALIZER, Pipeline, Provider, RunConfiguration,
        common::Status,
        conditions::{SynchronizationState, merge_condition, synchronized_condition},
        names::NamespacedName,
    },
    plugins::{PluginErrorKind, ProviderRequest, ProviderResponse},
};

/// A kind whose objects each mirror one remote resource of their Provider.
pub trait Synced:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// The kind as upstream writes it in messages and labels (`experiment`, `pipeline`...).
    const KIND: &'static str;
    fn spec_provider(&self) -> &NamespacedName;
    fn computed_version(&self) -> String;
    fn common_status(&self) -> Status;
    /// The plugin call that creates (`id` none) or updates the remote resource; `name` is
    /// `namespace/name`. Kinds that need more than their spec (a compiled pipeline) do that
    /// work here.
    fn request(
        &self,
        context: &Context,
        provider: &Provider,
        id: Option<String>,
        name: String,
        version: String,
    ) -> impl Future<Output = Result<ProviderRequest, RequestError>> + Send;
    fn delete_request(id: String) -> ProviderRequest;
    /// Whether objects of this kind wait for Pipelines or take from RunConfigurations
    /// ([`Synced::pipeline_name`], [`Synced::depends_on`]): only then does the controller watch
    /// those kinds.
    const HAS_DEPENDENCIES: bool = false;
    /// The Pipeline (same namespace) this object waits for, if any: a change of it wakes the
    /// object.
    fn pipeline_name(&self) -> Option<&str> {
        None
    }
    /// Whether this object takes something from the RunConfiguration `run_configuration`: a
    /// change of it wakes the object.
    fn depends_on(&self, _run_configuration: &NamespacedName) -> bool {
        false
    }
    /// Runs before planning, for kinds whose version depends on more than their spec (a Run
    /// pins its pipeline version): what to record first, or why to wait.
    fn prepare(&self, _context: &Context) -> impl Future<Output = Prepared> + Send {
        async { Prepared::Ready }
    }
}

/// Why [`Synced::request`] could not build the plugin call.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestError {
    /// Never possible as written (an unsupported framework, a compiler error): the resource
    /// fails with this message until its spec changes.
    Invalid(String),
    /// Not possible yet (a compiler plugin still loading): the resource keeps its state with
    /// this message and is retried with backoff; a change of its Provider wakes it.
    NotReady(String),
}

impl From<String> for RequestError {
    fn from(message: String) -> Self {
        Self::Invalid(message)
    }
}

/// The outcome of [`Synced::prepare`].
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    Ready,
    /// Merge this into the status; the write triggers the next reconcile.
    Record(serde_json::Value),
    /// Not yet possible (a dependency is missing); the message goes on the condition and the
    /// object is retried with backoff.
    Wait(String),
    /// Never possible as written: the resource fails with this message.
    Fail(String),
}

/// Implements [`Synced`] for a kind with `spec.provider`, the common `Status`, a
/// `compute_version` and a `definition(name, version)` method, given the kind's name and its
/// three provider operations.
macro_rules! synced_kind {
    ($kind:ty, $name:literal, $create:ident, $update:ident, $delete:ident) => {
        impl $crate::controllers::synced::Synced for $kind {
            const KIND: &'static str = $name;

            $crate::controllers::synced::synced_accessors!();

            async fn request(
                &self,
                _context: &$crate::controllers::Context,
                _provider: &$crate::api::Provider,
                id: Option<String>,
                name: String,
                version: String,
            ) -> Result<$crate::plugins::ProviderRequest, $crate::controllers::synced::RequestError> {
                let definition = self.definition(name, version);
                Ok(match id {
                    None => $crate::plugins::ProviderRequest::$create { definition },
                    Some(id) => $crate::plugins::ProviderRequest::$update { id, definition },
                })
            }

            fn delete_request(id: String) -> $crate::plugins::ProviderRequest {
                $crate::plugins::ProviderRequest::$delete { id }
            }
        }
    };
}
pub(crate) use synced_kind;

/// The accessors of [`Synced`] for a kind with `spec.provider`, the common `Status` and a
/// `compute_version`; used inside an `impl Synced` block.
macro_rules! synced_accessors {
    () => {
        fn spec_provider(&self) -> &$crate::api::names::NamespacedName {
            &self.spec.provider
        }

        fn computed_version(&self) -> String {
            self.compute_version()
        }

        fn common_status(&self) -> $crate::api::common::Status {
            self.status.clone().unwrap_or_default()
        }
    };
}
pub(crate) use synced_accessors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0} without a namespace")]
    NoNamespace(String),
    #[error("{kind} {name}: {source}")]
    Kube {
        kind: &'static str,
        name: String,
        #[source]
        source: kube::Error,
    },
}

pub async fn reconcile<K: Synced>(object: Arc<K>, context: Arc<Context>) -> Result<Action, Error> {
    let namespace = object.namespace().ok_or_else(|| Error::NoNamespace(object.name_any()))?;
    let name = object.name_any();
    let api: Api<K> = Api::namespaced(context.client.clone(), &namespace);
    let kube_error = |source| Error::Kube { kind: K::KIND, name: format!("{namespace}/{name}"), source };
    let key = format!("{namespace}/{name}");
    let written_key = format!("{}/{key}", K::KIND);
    if context.own_writes.is_stale(&written_key, object.meta().resource_version.as_deref()) {
        // Our last write is still on its way through the watch, which reconciles again.
        tracing::debug!(kind = K::KIND, object = %key, "the cached copy predates our last write; waiting for it");
        return Ok(Action::await_change());
    }
    let writer = StatusWriter { api: &api, object: object.as_ref(), context: &context, key: &written_key };
    let deleting = object.meta().deletion_timestamp.is_some();
    if !deleting {
        match object.prepare(&context).await {
            Prepared::Ready => {}
            Prepared::Record(status) => {
                context.write_own_status(&api, &written_key, &name, status).await.map_err(kube_error)?;
                return Ok(Action::await_change());
            }
            Prepared::Fail(message) => {
                let status = object.common_status();
                writer.write(status, SynchronizationState::Failed, &message).await.map_err(kube_error)?;
                return Ok(Action::await_change());
            }
            Prepared::Wait(message) => {
                let status = object.common_status();
                if current_message(&status) != message {
                    writer.write(status.clone(), status.synchronization_state(), &message).await.map_err(kube_error)?;
                }
                return Ok(Action::requeue(context.backoff.next(&format!("{namespace}/{name}"))));
            }
        }
    }
    let status = object.common_status();
    let computed = object.computed_version();
    let next = plan(Observed {
        state: status.synchronization_state(),
        recorded_provider: &status.provider.name,
        spec_provider: object.spec_provider(),
        deletion_requested: deleting,
        recorded_version: &status.version,
        computed_version: &computed,
        id: &status.provider.id,
    });
    if !deleting && !object.finalizers().iter().any(|f| f == FINALIZER) {
        let finalizers: Vec<String> = object.finalizers().iter().cloned().chain([FINALIZER.to_owned()]).collect();
        let written = api
            .patch(&name, &PatchParams::default(), &Patch::Merge(json!({ "metadata": { "finalizers": finalizers } })))
            .await
            .map_err(kube_error)?;
        context.own_writes.record(&written_key, written.meta().resource_version.as_deref());
    }
    let qualified_name = NamespacedName::new(namespace.clone(), name.clone()).to_string();

    match next {
        Plan::Idle => {
            if status.observed_generation != object.meta().generation {
                let message = current_message(&status);
                writer.write(status.clone(), status.synchronization_state(), &message).await.map_err(kube_error)?;
            }
            context.backoff.reset(&key);
            Ok(Action::await_change())
        }
        Plan::Release => {
            let finalizers: Vec<String> = object.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
            api.patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "metadata": { "finalizers": finalizers } })),
            )
            .await
            .map_err(kube_error)?;
            context.backoff.reset(&key);
            context.own_writes.forget(&written_key);
            Ok(Action::await_change())
        }
        Plan::ProviderChanged => {
            writer.write(status, SynchronizationState::Failed, "the provider has changed").await.map_err(kube_error)?;
            Ok(Action::await_change())
        }
        Plan::Delete { id } => {
            // Delete where the resource was created: the recorded Provider, not a new one.
            let holder = if status.provider.name.is_empty() {
                object.spec_provider().clone()
            } else {
                status.provider.name.clone()
            };
            writer.write(status.clone(), SynchronizationState::Deleting, "").await.map_err(kube_error)?;
            let Some(plugin) = context.plugins.get(&holder.to_string()) else {
                let message =
                    format!("waiting for Provider {holder}'s plugin to delete the remote {}; retrying", K::KIND);
                writer.write(status, SynchronizationState::Deleting, &message).await.map_err(kube_error)?;
                return Ok(Action::requeue(context.backoff.next(&key)));
            };
            match plugin.call_provider(&K::delete_request(id)).await {
                Ok(_) => {}
                Err(error) if matches!(error.kind, PluginErrorKind::NotFound(_)) => {}
                Err(error) => {
                    // Upstream leaves the object stuck in Deleting; retrying is the fix.
                    let message = format!("{error}; retrying");
                    writer.write(status, SynchronizationState::Deleting, &message).await.map_err(kube_error)?;
                    return Ok(Action::requeue(context.backoff.next(&key)));
                }
            }
            writer.write(status, SynchronizationState::Deleted, "").await.map_err(kube_error)?;
            Ok(Action::requeue(Duration::ZERO))
        }
        Plan::Create | Plan::Update { .. } => {
            let provider_key = object.spec_provider().to_string();
            let providers: Api<Provider> = Api::namespaced(context.client.clone(), &object.spec_provider().namespace);
            let Some(provider) = providers.get_opt(&object.spec_provider().name).await.map_err(kube_error)? else {
                tracing::info!(kind = K::KIND, object = %key, provider = %provider_key, "waiting for the Provider to exist");
                return Ok(Action::requeue(context.backoff.next(&key)));
            };
            let allowed = &provider.spec.allowed_namespaces;
            if !allowed.is_empty() && !allowed.contains(&namespace) {
                let message = format!("namespace {namespace} is not in Provider {provider_key}'s allowedNamespaces");
                writer.write(status, SynchronizationState::Failed, &message).await.map_err(kube_error)?;
                return Ok(Action::await_change());
            }
            let Some(plugin) = context.plugins.get(&provider_key) else {
                tracing::info!(kind = K::KIND, object = %key, provider = %provider_key, "waiting for the Provider's plugin to load");
                return Ok(Action::requeue(context.backoff.next(&key)));
            };
            let (state, id) = match &next {
                Plan::Update { id } => (SynchronizationState::Updating, Some(id.clone())),
                _ => (SynchronizationState::Creating, None),
            };
            let mut pending = status.clone();
            pending.version = computed.clone();
            pending.provider.name = object.spec_provider().clone();
            writer.write(pending.clone(), state, "").await.map_err(kube_error)?;
            let request = match object.request(&context, &provider, id, qualified_name, computed).await {
                Ok(request) => request,
                Err(RequestError::Invalid(message)) => {
                    writer.write(pending, SynchronizationState::Failed, &message).await.map_err(kube_error)?;
                    return Ok(Action::await_change());
                }
                Err(RequestError::NotReady(message)) => {
                    let delay = context.backoff.next(&key);
                    let message = format!("{message}; retrying in {}s", delay.as_secs());
                    writer.write(pending, state, &message).await.map_err(kube_error)?;
                    return Ok(Action::requeue(delay));
                }
            };
            match plugin.call_provider(&request).await {
                Ok(ProviderResponse::Id(id)) => {
                    pending.provider.id = id;
                    writer.write(pending, SynchronizationState::Succeeded, "").await.map_err(kube_error)?;
                    context.backoff.reset(&key);
                    Ok(Action::await_change())
                }
                Ok(other) => {
                    let message = format!("the plugin answered {other:?} instead of an id");
                    writer.write(pending, SynchronizationState::Failed, &message).await.map_err(kube_error)?;
                    Ok(Action::await_change())
                }
                Err(error) if error.is_transient() => {
                    let delay = context.backoff.next(&key);
                    let message = format!("{error}; retrying in {}s", delay.as_secs());
                    writer.write(pending, state, &message).await.map_err(kube_error)?;
                    Ok(Action::requeue(delay))
                }
                Err(error) => {
                    writer
                        .write(pending, SynchronizationState::Failed, &error.to_string())
                        .await
                        .map_err(kube_error)?;
                    Ok(Action::await_change())
                }
            }
        }
    }
}

pub fn error_policy<K: Synced>(object: Arc<K>, error: &Error, context: Arc<Context>) -> Action {
    let key = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
    let delay = context.backoff.next(&key);
    tracing::warn!(kind = K::KIND, object = %key, %error, ?delay, "reconcile failed; retrying");
    Action::requeue(delay)
}

fn current_message(status: &Status) -> String {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::api::conditions::SYNCHRONIZED)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Writes one object's status and records the Event upstream records for every status write.
struct StatusWriter<'a, K: Synced> {
    api: &'a Api<K>,
    object: &'a K,
    context: &'a Context,
    /// The object's key in `context.own_writes`.
    key: &'a str,
}

impl<K: Synced> StatusWriter<'_, K> {
    async fn write(&self, mut status: Status, state: SynchronizationState, message: &str) -> Result<(), kube::Error> {
        let generation = self.object.meta().generation;
        status.observed_generation = generation;
        let now = Time(jiff::Timestamp::now());
        merge_condition(&mut status.conditions, synchronized_condition(state, message, generation, now));
        let name = self.object.name_any();
        self.context.write_own_status(self.api, self.key, &name, &status).await?;

        let mut note = format!("{state} [version: \"{}\"]", status.version);
        if !message.is_empty() {
            note = format!("{note}: {message}");
        }
        let (type_, reason) = match state {
            SynchronizationState::Failed => (EventType::Warning, "SyncFailed"),
            SynchronizationState::Succeeded | SynchronizationState::Deleted => (EventType::Normal, "Synced"),
            _ => (EventType::Normal, "Syncing"),
        };
        let event =
            Event { type_, reason: reason.into(), note: Some(note), action: "Synchronize".into(), secondary: None };
        self.context.events.publish(event, self.object.object_ref(&()));
        tracing::info!(kind = K::KIND, object = %name, %state, message, version = %status.version, "status written");
        Ok(())
    }
}

/// Runs the controller for kind `K` until shutdown; `namespace` limits it (tests). A change of
/// a Provider (its plugin loaded, say), a Pipeline or a RunConfiguration wakes the objects that
/// use it, so they do not wait for their next retry.
pub async fn run<K: Synced>(context: Arc<Context>, namespace: Option<&str>) {
    use futures::StreamExt;
    use kube::runtime::{Controller, reflector::ObjectRef, watcher};
    let (objects, providers, pipelines, run_configurations) = (
        scoped_api::<K>(&context.client, namespace),
        scoped_api::<Provider>(&context.client, namespace),
        scoped_api::<Pipeline>(&context.client, namespace),
        scoped_api::<RunConfiguration>(&context.client, namespace),
    );
    let controller = Controller::new(objects, watcher::Config::default());
    let (by_provider, by_pipeline, by_run_configuration, all) =
        (controller.store(), controller.store(), controller.store(), controller.store());
    let telemetry = context.telemetry.clone();
    let mut controller = controller.watches(providers, watcher::Config::default(), move |provider| {
        let provider = NamespacedName::new(provider.namespace().unwrap_or_default(), provider.name_any());
        by_provider
            .state()
            .into_iter()
            .filter(|object| object.spec_provider() == &provider)
            .map(|object| ObjectRef::from_obj(&*object))
            .collect::<Vec<_>>()
    });
    if K::HAS_DEPENDENCIES {
        controller = controller
            .watches(pipelines, watcher::Config::default(), move |pipeline| {
                let (namespace, name) = (pipeline.namespace(), pipeline.name_any());
                by_pipeline
                    .state()
                    .into_iter()
                    .filter(|object| object.namespace() == namespace && object.pipeline_name() == Some(name.as_str()))
                    .map(|object| ObjectRef::from_obj(&*object))
                    .collect::<Vec<_>>()
            })
            .watches(run_configurations, watcher::Config::default(), move |run_configuration| {
                let run_configuration = NamespacedName::new(
                    run_configuration.namespace().unwrap_or_default(),
                    run_configuration.name_any(),
                );
                by_run_configuration
                    .state()
                    .into_iter()
                    .filter(|object| object.depends_on(&run_configuration))
                    .map(|object| ObjectRef::from_obj(&*object))
                    .collect::<Vec<_>>()
            });
    }
    let controller = controller
        .shutdown_on_signal()
        .run(
            |object, context| async move {
                let key = format!("{}/{}", object.namespace().unwrap_or_default(), object.name_any());
                context.telemetry.clone().measure(K::KIND, key, reconcile::<K>(object, context)).await
            },
            error_policy::<K>,
            context,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(kind = K::KIND, %error, "reconcile stream error");
            }
        });
    super::with_queue_pruning(telemetry, K::KIND, all, controller).await;
}
