//! `Provider` (reference 1.3): one ML platform the operator synchronises resources with.
//!
//! Upstream runs a provider-service Deployment per Provider; here the provider logic is a
//! WebAssembly component named by `spec.plugin`, and framework compilers by
//! `spec.frameworks[].plugin`. The upstream fields stay accepted so existing manifests apply:
//! `serviceImage`, `serviceAccount` and `frameworks[].image` are optional here because the plugin
//! reference replaces them, and the `podTemplate*` fields are kept but not validated or used.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::common::{JsonMap, Status, json_map_schema};

/// A Provider's status: the common status (its `Synchronized` condition says whether the
/// plugins loaded) plus what is serving calls.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    #[serde(flatten)]
    pub status: Status,
    /// The provider plugin serving calls; after a failed reload, the last good version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<LoadedPlugin>,
    /// The framework compiler plugins serving calls, by framework name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frameworks: Vec<LoadedFramework>,
}

/// A loaded plugin: the SHA-256 of its bytes and the WIT world it implements.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LoadedPlugin {
    pub sha256: String,
    /// `kfp:operator/provider@0.1.0` or `kfp:operator/compiler@0.1.0`.
    pub world: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct LoadedFramework {
    pub name: String,
    pub sha256: String,
    pub world: String,
}

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pipelines.kubeflow.org",
    version = "v1beta1",
    kind = "Provider",
    doc = "An ML platform the operator keeps resources in sync with, through a WebAssembly provider plugin.",
    namespaced,
    status = "ProviderStatus",
    shortname = "mlprv",
    printcolumn = r#"{"name":"SynchronizationState","type":"string","jsonPath":".status.conditions[?(@.type == 'Synchronized')].reason"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The provider plugin: a WebAssembly component implementing the `provider` world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSpec>,
    /// Root for pipeline outputs (e.g. `gs://bucket`), given to the plugin.
    pub pipeline_root_storage: String,
    /// Provider-specific parameters, given to the plugin as JSON.
    #[serde(default, skip_serializing_if = "JsonMap::is_empty")]
    #[schemars(schema_with = "json_map_schema")]
    pub parameters: JsonMap,
    /// The pipeline frameworks this Provider supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub frameworks: Vec<Framework>,
    /// Namespaces whose resources may use this Provider; empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_namespaces: Vec<String>,

    /// Upstream: the provider-service image. Accepted and ignored: `plugin` replaces it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_image: String,
    /// Upstream: deprecated and ignored there too.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(extend("default" = ""))]
    pub execution_mode: String,
    /// Upstream: the provider-service pods' ServiceAccount. Accepted and ignored.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub service_account: String,
    /// Upstream: env overrides for the provider-service pods. Accepted and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects_schema")]
    pub pod_template_env: Vec<Value>,
    /// Upstream: volumes for the provider-service pods. Accepted and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects_schema")]
    pub pod_template_volumes: Vec<Value>,
    /// Upstream: volume mounts for the provider-service pods. Accepted and ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "preserved_objects_schema")]
    pub pod_template_volume_mounts: Vec<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Framework {
    /// The name Pipelines give as `spec.framework.name` (e.g. `tfx`, `kfpsdk`).
    pub name: String,
    /// The compiler plugin: a WebAssembly component implementing the `compiler` world. Without
    /// one, the framework's pipelines go to the provider plugin uncompiled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginSpec>,
    /// Patches applied to the pipeline definition before it is submitted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    /// Upstream: the compiler image. Accepted and ignored: `plugin` replaces it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Patch {
    /// `json` (RFC 6902, paths created as needed on add) or `merge` (RFC 7396).
    #[serde(rename = "type")]
    pub patch_type: PatchType,
    pub payload: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    Json,
    Merge,
}

/// Where a plugin comes from, the digest that pins it, and what it may do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.configMap) != has(self.oci)")
    .message("a plugin needs exactly one source: set either configMap (name and key of a .wasm in binaryData) or oci (registry/repository@sha256:<digest>)")
    .reason(Reason::FieldValueInvalid))]
pub struct PluginSpec {
    /// The component in a ConfigMap of the Provider's namespace (`binaryData`, gzip accepted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapPluginSource>,
    /// The component as an OCI artifact (CNCF Wasm layout), pinned by manifest digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciPluginSource>,
    /// SHA-256 of the component's bytes (`sha256sum plugin.wasm`); the operator refuses to
    /// load anything else.
    #[x_kube(validation = Rule::new("self.matches('^[a-f0-9]{64}$')")
        .message("sha256 must be the 64 lowercase hex digits of the plugin's SHA-256 digest, as printed by `sha256sum plugin.wasm`")
        .reason(Reason::FieldValueInvalid))]
    #[schemars(length(max = 64))]
    pub sha256: String,
    #[serde(default, skip_serializing_if = "PluginLimits::is_empty")]
    pub limits: PluginLimits,
    /// Hosts the plugin may send HTTP requests to (`host`, `host:port` or `*.domain`);
    /// nothing else is reachable. Private and link-local addresses must be listed explicitly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 64),
        inner(regex(pattern = r"^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?(:[0-9]{1,5})?$"))
    )]
    pub allowed_hosts: Vec<String>,
    /// Secrets the operator attaches to the plugin's requests for a host; the plugin never
    /// sees them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<PluginCredential>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ConfigMapPluginSource {
    pub name: String,
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct OciPluginSource {
    /// `registry/repository@sha256:<digest>`; a tag alone is not accepted.
    #[x_kube(validation = Rule::new("self.matches('^[^@\\\\s]+@sha256:[a-f0-9]{64}$')")
        .message("oci.reference must pin the manifest digest, as registry/repository@sha256:<64 hex digits>; tags can move and are not accepted")
        .reason(Reason::FieldValueInvalid))]
    #[schemars(length(max = 512))]
    pub reference: String,
    /// A `kubernetes.io/dockerconfigjson` Secret in the Provider's namespace with registry
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
}

/// Per-call limits; every one has a safe default in the operator's configuration.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginLimits {
    /// Linear memory per instance (e.g. `64Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Deadline per call, CPU and host I/O together (e.g. `30s`, `1m30s`, `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// Largest output a call may return (e.g. `4Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<Quantity>,
}

impl PluginLimits {
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

/// A Secret value the operator sends as a header on requests to `host`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginCredential {
    /// The host (as in allowedHosts) whose requests get the header.
    pub host: String,
    pub secret_key_ref: SecretKeyReference,
    /// The header to set; `Authorization` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// Written before the secret value, e.g. `Bearer `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyReference {
    /// A Secret in the Provider's namespace.
    pub name: String,
    pub key: String,
}

fn preserved_objects_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "array",
        "items": { "type": "object", "x-kubernetes-preserve-unknown-fields": true }
    })
}
