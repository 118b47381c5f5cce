//! The controllers. Each reconciles one kind; they share one [`Context`].

pub mod event_queue;
pub mod experiment;
pub mod own_writes;
pub mod pipeline;
pub mod provider;
pub mod run;
pub mod run_completion;
pub mod run_configuration;
pub mod run_schedule;
pub mod sync_plan;
pub mod synced;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::NamespaceResourceScope;
use kube::{
    Api, Client, Resource,
    api::{Patch, PatchParams},
    runtime::{
        events::Reporter,
        reflector::{ObjectRef, Store},
    },
};
use serde::{Serialize, de::DeserializeOwned};

use crate::{plugins::PluginRegistry, telemetry::Telemetry};

/// What every reconcile needs: the API client, the loaded plugins, the Event queue, the retry
/// backoff, this process's own writes and the metrics.
pub struct Context {
    pub client: Client,
    pub plugins: Arc<PluginRegistry>,
    pub events: event_queue::EventQueue,
    pub backoff: Backoff,
    pub own_writes: own_writes::OwnWrites,
    pub telemetry: Arc<Telemetry>,
}

impl Context {
    /// A context with metrics of its own (tests, tools). Needs a Tokio runtime (the Event queue
    /// starts its task).
    pub fn new(client: Client, plugins: Arc<PluginRegistry>) -> Self {
        let telemetry = Arc::new(Telemetry::new().expect("metrics register in a fresh registry"));
        Self::with_telemetry(client, plugins, telemetry)
    }

    pub fn with_telemetry(client: Client, plugins: Arc<PluginRegistry>, telemetry: Arc<Telemetry>) -> Self {
        // Events are recorded as `kfp-operator`, as upstream's recorder name.
        let reporter = Reporter { controller: "kfp-operator".into(), instance: std::env::var("HOSTNAME").ok() };
        Self {
            events: event_queue::EventQueue::start(client.clone(), reporter),
            client,
            plugins,
            backoff: Backoff::default(),
            own_writes: own_writes::OwnWrites::default(),
            telemetry,
        }
    }
}

/// An API for `K` in one namespace (tests, namespaced installs) or the whole cluster.
pub(crate) fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
}

/// Runs `controller` (a kube-runtime Controller's stream, run to its end) while keeping the
/// queue-depth gauge of `name` free of objects deleted from `store`.
pub(crate) async fn with_queue_pruning<K>(
    telemetry: Arc<Telemetry>,
    name: &'static str,
    store: Store<K>,
    controller: impl Future<Output = ()>,
) where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    let prune = async {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            telemetry.forget_queued(name, |key| {
                let (namespace, name) = key.split_once('/').unwrap_or_default();
                store.get(&ObjectRef::new(name).within(namespace)).is_some()
            });
        }
    };
    tokio::select! {
        () = controller => {}
        () = prune => {}
    }
}

/// `new` as a JSON merge patch (RFC 7396) over `old`: every value of `new`, plus `null` for each
/// key `old` has and `new` lacks, at any depth. A plain merge patch of `new` would leave those
/// in place (an emptied list that serialisation skips, an entry gone from a map), so a
/// controller that writes its whole status sends this instead.
pub(crate) fn replacing_patch(old: &serde_json::Value, new: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(old), Value::Object(new)) => {
            let mut patch: serde_json::Map<String, Value> = new
                .iter()
                .map(|(key, value)| {
                    let patched = old.get(key).map_or_else(|| value.clone(), |before| replacing_patch(before, value));
                    (key.clone(), patched)
                })
                .collect();
            for removed in old.keys().filter(|key| !new.contains_key(*key)) {
                patch.insert(removed.clone(), Value::Null);
            }
            Value::Object(patch)
        }
        _ => new.clone(),
    }
}

impl Context {
    /// Merge-patches the status of the named object and remembers the write under `key` in
    /// [`Context::own_writes`], so the reconciles after it skip older cached copies.
    pub(crate) async fn write_own_status<K>(
        &self,
        api: &Api<K>,
        key: &str,
        name: &str,
        status: impl Serialize,
    ) -> kube::Result<K>
    where
        K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
    {
        let written = merge_status(api, name, status).await?;
        self.own_writes.record(key, written.meta().resource_version.as_deref());
        Ok(written)
    }
}

/// Merge-patches the status subresource of the named object with `status` (only the fields
/// it holds change).
pub(crate) async fn merge_status<K>(api: &Api<K>, name: &str, status: impl Serialize) -> kube::Result<K>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(serde_json::json!({ "status": status }))).await
}

/// Exponential backoff per object for transient failures: 5 s, 10 s, 20 s... up to 5 min,
/// reset once the object synchronises.
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempts: Mutex<HashMap<String, u32>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(5), Duration::from_secs(300))
    }
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, attempts: Mutex::default() }
    }

    /// The delay before the next attempt for `key`, counting this failure.
    pub fn next(&self, key: &str) -> Duration {
        let mut attempts = self.attempts.lock().unwrap_or_else(|e| e.into_inner());
        let attempt = attempts.entry(key.to_owned()).or_insert(0);
        let delay = self.base.saturating_mul(2u32.saturating_pow(*attempt)).min(self.max);
        *attempt = attempt.saturating_add(1);
        delay
    }

    pub fn reset(&self, key: &str) {
        self.attempts.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replacing_patch_removes_what_the_new_status_lacks() {
        let old = serde_json::json!({
            "frameworks": [{ "name": "tfx" }], "plugin": { "sha256": "a" },
            "triggers": { "runConfigurations": { "ns/a": { "providerId": "1" }, "ns/b": { "providerId": "2" } } },
        });
        let new = serde_json::json!({
            "plugin": { "sha256": "b" },
            "triggers": { "runConfigurations": { "ns/b": { "providerId": "2" } } },
        });
        let patch = replacing_patch(&old, &new);
        assert_eq!(
            patch,
            serde_json::json!({
                "frameworks": null, "plugin": { "sha256": "b" },
                "triggers": { "runConfigurations": { "ns/a": null, "ns/b": { "providerId": "2" } } },
            })
        );
        let mut applied = old.clone();
        json_patch::merge(&mut applied, &patch);
        assert_eq!(applied, new, "applied as a merge patch, it gives the new status");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(30));
        let delays: Vec<u64> = (0..5).map(|_| backoff.next("a").as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 30, 30]);
        assert_eq!(backoff.next("b").as_secs(), 5, "per object");
        backoff.reset("a");
        assert_eq!(backoff.next("a").as_secs(), 5);
    }
}
