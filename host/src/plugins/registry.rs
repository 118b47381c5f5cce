//! The loaded plugins, by Provider (and framework), with hot reload.
//!
//! [`PluginRegistry::load`] fetches and compiles a new version off the hot path (compilation
//! runs on a blocking thread), then swaps it in atomically: calls already running keep the
//! handle they cloned and finish on the old version, new calls get the new one. If the new
//! version fails (unreachable source, digest mismatch, wrong world, missing Secret...), the
//! last good version keeps serving and the failure is kept for the Provider's status.
//!
//! The pinned SHA-256 is a plugin's identity: a reload with the same digest as the serving
//! version reuses it without fetching (only limits, capabilities and context are rebuilt).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use http::{HeaderName, HeaderValue, header::AUTHORIZATION};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::{
    CacheOutcome, CompiledCache, Limits, PluginError, PluginErrorKind, PluginHandle, PluginId, Sandbox,
    bindings::ProviderContext,
    http_policy::{BoundCredential, HostPattern, HttpPolicy},
    metrics::PluginMetrics,
    source::{self, OciSettings, SourceError},
};
use crate::api::provider::PluginSpec;

/// What the registry holds for one plugin key.
#[derive(Default)]
struct Slot {
    active: Option<PluginHandle>,
    last_error: Option<Arc<PluginError>>,
}

/// A plugin's state, for the Provider's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginStatus {
    /// SHA-256 of the version serving calls, if any.
    pub sha256: Option<String>,
    /// `provider` or `compiler`.
    pub world: Option<&'static str>,
    /// Why the most recent load failed, if it did (cleared by a successful load).
    pub last_error: Option<String>,
}

/// The outcome of a successful load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub sha256: String,
    pub world: &'static str,
    /// `None` when the bytes were already loaded and only limits or capabilities changed.
    pub cache: Option<CacheOutcome>,
}

/// One plugin to load: `key` names it in the registry (`namespace/provider`, or
/// `namespace/provider/frameworks/<name>` for a compiler), `namespace` is where its ConfigMap
/// and Secrets live.
pub struct LoadRequest<'a> {
    pub key: &'a str,
    pub namespace: &'a str,
    pub spec: &'a PluginSpec,
    pub context: ProviderContext,
}

pub struct PluginRegistry {
    sandbox: Sandbox,
    client: Client,
    oci: OciSettings,
    cache: Option<Arc<CompiledCache>>,
    metrics: Option<Arc<PluginMetrics>>,
    slots: RwLock<HashMap<String, Slot>>,
}

impl PluginRegistry {
    pub fn new(
        sandbox: Sandbox,
        client: Client,
        oci: OciSettings,
        cache: Option<Arc<CompiledCache>>,
        metrics: Option<Arc<PluginMetrics>>,
    ) -> Self {
        Self { sandbox, client, oci, cache, metrics, slots: RwLock::default() }
    }

    /// The version serving calls for `key`. Clone it per call: a reload never disturbs a
    /// call holding the old handle.
    pub fn get(&self, key: &str) -> Option<PluginHandle> {
        self.slots.read().ok()?.get(key)?.active.clone()
    }

    pub fn status(&self, key: &str) -> PluginStatus {
        let slots = self.slots.read().unwrap_or_else(|e| e.into_inner());
        let Some(slot) = slots.get(key) else { return PluginStatus::default() };
        PluginStatus {
            sha256: slot.active.as_ref().map(|h| h.prepared().id.sha256.clone()),
            world: slot.active.as_ref().map(|h| h.prepared().world()),
            last_error: slot.last_error.as_ref().map(|e| e.to_string()),
        }
    }

    /// Forgets every key `keep` refuses (their Provider or framework is gone), returning them.
    /// Calls in flight finish on their handle.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) -> Vec<String> {
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let forgotten: Vec<String> = slots.keys().filter(|key| !keep(key)).cloned().collect();
        for key in &forgotten {
            slots.remove(key);
        }
        forgotten
    }

    /// Loads (or reloads) a plugin and swaps it in; on failure keeps the last good version.
    pub async fn load(&self, request: LoadRequest<'_>) -> Result<Loaded, Arc<PluginError>> {
        let key = request.key;
        let result = self.build(&request).await;
        let mut slots = self.slots.write().unwrap_or_else(|e| e.into_inner());
        let slot = slots.entry(key.to_owned()).or_default();
        match result {
            Ok((handle, cache)) => {
                let loaded =
                    Loaded { sha256: handle.prepared().id.sha256.clone(), world: handle.prepared().world(), cache };
                let previous = slot.active.replace(handle).map(|h| h.prepared().id.sha256.clone());
                slot.last_error = None;
                tracing::info!(plugin = key, sha256 = %loaded.sha256, previous = ?previous, world = loaded.world, "plugin loaded");
                Ok(loaded)
            }
            Err(error) => {
                let error = Arc::new(error);
                let serving = slot.active.as_ref().map(|h| h.prepared().id.sha256.clone());
                tracing::warn!(plugin = key, %error, still_serving = ?serving, "plugin load failed");
                slot.last_error = Some(error.clone());
                Err(error)
            }
        }
    }

    async fn build(&self, request: &LoadRequest<'_>) -> Result<(PluginHandle, Option<CacheOutcome>), PluginError> {
        let id = PluginId { name: request.key.to_owned(), sha256: request.spec.sha256.clone() };
        let load_error = |message: String| PluginError::new(&id, None, PluginErrorKind::Load(message));
        let limits = Limits::from_spec(&request.spec.limits).map_err(|e| load_error(e.to_string()))?;
        let policy = self.http_policy(request, &limits).await.map_err(load_error)?;

        let reusable = self.get(request.key).filter(|active| active.prepared().id == id);
        let (prepared, cache) = match reusable {
            Some(active) => (active.prepared().clone(), None),
            None => {
                let bytes = self.fetch(request).await.map_err(|e| load_error(e.to_string()))?;
                let (sandbox, cache, compile_id) = (self.sandbox.clone(), self.cache.clone(), id.clone());
                let compiled = tokio::task::spawn_blocking(move || match cache {
                    Some(cache) => {
                        sandbox.load_cached(&compile_id, &bytes, &cache).map(|(p, outcome)| (p, Some(outcome)))
                    }
                    None => sandbox.load(&compile_id, &bytes).map(|p| (p, None)),
                })
                .await
                .map_err(|e| load_error(format!("the compile task failed: {e}")))??;
                (compiled.0, compiled.1.or(Some(CacheOutcome::Miss)))
            }
        };
        let mut handle = PluginHandle::new(prepared, limits, policy, request.context.clone());
        if let Some(metrics) = &self.metrics {
            handle = handle.with_metrics(metrics.clone());
        }
        Ok((handle, cache))
    }

    async fn fetch(&self, request: &LoadRequest<'_>) -> Result<Vec<u8>, SourceError> {
        match (&request.spec.config_map, &request.spec.oci) {
            (Some(config_map), None) => source::from_config_map(&self.client, request.namespace, config_map).await,
            (None, Some(oci)) => source::from_oci(&self.client, request.namespace, oci, &self.oci).await,
            // The CRD's CEL rule makes this unreachable for objects the API server accepted.
            _ => Err(SourceError::Reference {
                reference: String::new(),
                cause: "the plugin needs exactly one of configMap or oci".into(),
            }),
        }
    }

    /// The HTTP capability for the plugin: its allowed hosts and its credentials, read from
    /// the Secrets they name.
    async fn http_policy(&self, request: &LoadRequest<'_>, limits: &Limits) -> Result<HttpPolicy, String> {
        let spec = request.spec;
        let allowed = spec.allowed_hosts.iter().map(|h| HostPattern::parse(h)).collect::<Result<Vec<_>, _>>()?;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), request.namespace);
        let mut credentials = Vec::new();
        for credential in &spec.credentials {
            let reference = &credential.secret_key_ref;
            let secret = secrets
                .get_opt(&reference.name)
                .await
                .map_err(|e| format!("reading Secret {}/{}: {e}", request.namespace, reference.name))?
                .ok_or_else(|| format!("credential Secret {}/{} not found", request.namespace, reference.name))?;
            let value = secret.data.unwrap_or_default().remove(&reference.key).ok_or_else(|| {
                format!("credential Secret {}/{} has no key {:?}", request.namespace, reference.name, reference.key)
            })?;
            let mut header_value = credential.prefix.clone().unwrap_or_default().into_bytes();
            header_value.extend_from_slice(&value.0);
            let mut value = HeaderValue::from_bytes(&header_value).map_err(|_| {
                format!("credential from Secret {}/{} is not a valid header value", request.namespace, reference.name)
            })?;
            value.set_sensitive(true);
            let header = match &credential.header {
                Some(name) => {
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("invalid header name {name:?}"))?
                }
                None => AUTHORIZATION,
            };
            credentials.push(BoundCredential { host: HostPattern::parse(&credential.host)?, header, value });
        }
        Ok(HttpPolicy::new(
            request.key,
            allowed,
            credentials,
            limits.max_request_body_bytes,
            limits.max_response_body_bytes,
        ))
    }
}
