//! Where a plugin's bytes come from: a ConfigMap key in the Provider's namespace (gzip
//! accepted), an OCI artifact pinned by manifest digest, or (development only, never reachable
//! from a resource) a local file. Every source returns the exact bytes the sandbox will hash
//! and compile; the digest check itself is the sandbox's.

use std::{collections::BTreeMap, io::Read, path::Path};

use base64::Engine as _;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};
use oci_client::{
    Reference,
    client::{ClientConfig, ClientProtocol},
    secrets::RegistryAuth,
};

use crate::api::provider::{ConfigMapPluginSource, OciPluginSource};

/// The largest component accepted, after decompression: far beyond any real plugin, small
/// enough that a gzip bomb cannot exhaust the operator.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("ConfigMap {namespace}/{name} not found: create it with the plugin under binaryData key {key:?}")]
    ConfigMapMissing { namespace: String, name: String, key: String },
    #[error(
        "ConfigMap {namespace}/{name} has no binaryData key {key:?} (it has: {available}); `kubectl create configmap --from-file={key}=plugin.wasm` puts a file there"
    )]
    KeyMissing { namespace: String, name: String, key: String, available: String },
    #[error("the plugin is larger than {MAX_PLUGIN_BYTES} bytes{}", if *.0 { " once decompressed" } else { "" })]
    TooLarge(bool),
    #[error("the plugin is gzip-compressed but does not decompress: {0}")]
    Gzip(std::io::Error),
    #[error("invalid OCI reference {reference:?}: {cause}")]
    Reference { reference: String, cause: String },
    #[error("pull secret {namespace}/{name}: {cause}")]
    PullSecret { namespace: String, name: String, cause: String },
    #[error("pulling {reference}: {cause}")]
    Pull { reference: String, cause: String },
    #[error("{reference} has {count} layers; a Wasm artifact has exactly one (application/wasm)")]
    Layers { reference: String, count: usize },
    #[error("reading {path}: {cause}")]
    File { path: String, cause: String },
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// How the operator talks to registries.
#[derive(Debug, Clone, Default)]
pub struct OciSettings {
    /// Registries (`host:port`) reached over plain HTTP, e.g. a loopback test registry. Set by
    /// the operator's configuration only, never by a Provider.
    pub insecure_registries: Vec<String>,
}

/// Reads a plugin from a ConfigMap of `namespace`.
pub async fn from_config_map(
    client: &Client,
    namespace: &str,
    source: &ConfigMapPluginSource,
) -> Result<Vec<u8>, SourceError> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let config_map = config_maps.get_opt(&source.name).await?.ok_or_else(|| SourceError::ConfigMapMissing {
        namespace: namespace.to_owned(),
        name: source.name.clone(),
        key: source.key.clone(),
    })?;
    let binary = config_map.binary_data.unwrap_or_default();
    let bytes = binary.get(&source.key).ok_or_else(|| {
        let mut available: Vec<String> = binary.keys().cloned().collect();
        available.extend(config_map.data.unwrap_or_default().keys().map(|key| format!("{key} (in data)")));
        SourceError::KeyMissing {
            namespace: namespace.to_owned(),
            name: source.name.clone(),
            key: source.key.clone(),
            available: if available.is_empty() { "no keys".into() } else { available.join(", ") },
        }
    })?;
    decompress_if_gzip(&bytes.0)
}

/// Pulls a plugin from a registry; `oci-client` checks the manifest against the digest in the
/// reference and each blob against its digest while downloading.
pub async fn from_oci(
    client: &Client,
    namespace: &str,
    source: &OciPluginSource,
    settings: &OciSettings,
) -> Result<Vec<u8>, SourceError> {
    let reference: Reference = source.reference.parse().map_err(|e: oci_client::ParseError| {
        SourceError::Reference { reference: source.reference.clone(), cause: e.to_string() }
    })?;
    let auth = match &source.pull_secret {
        Some(name) => registry_auth(client, namespace, name, reference.resolve_registry()).await?,
        None => RegistryAuth::Anonymous,
    };
    let config = ClientConfig {
        protocol: ClientProtocol::HttpsExcept(settings.insecure_registries.clone()),
        ..ClientConfig::default()
    };
    let wasm_client = oci_wasm::WasmClient::new(oci_client::Client::new(config));
    let image = wasm_client.pull(&reference, &auth).await.map_err(|e| {
        let mut cause = format!("{e:#}");
        if cause.contains("Not authorized") {
            cause.push_str(match source.pull_secret {
                None => "; the registry wants credentials: set spec.plugin.oci.pullSecret to a kubernetes.io/dockerconfigjson Secret",
                Some(_) => "; check the credentials in the pull secret",
            });
        }
        SourceError::Pull { reference: source.reference.clone(), cause }
    })?;
    let count = image.layers.len();
    let layer = image
        .layers
        .into_iter()
        .next()
        .filter(|_| count == 1)
        .ok_or_else(|| SourceError::Layers { reference: source.reference.clone(), count })?;
    if layer.data.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(SourceError::TooLarge(false));
    }
    Ok(layer.data.to_vec())
}

/// Reads a plugin from a local file (the `--plugin-file` development flag and the CLI).
pub fn from_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    let file_error = |cause: String| SourceError::File { path: path.display().to_string(), cause };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| file_error("not a file".into()))?;
    let dir = cap_std::fs::Dir::open_ambient_dir(parent, cap_std::ambient_authority())
        .map_err(|e| file_error(e.to_string()))?;
    let bytes = dir.read(name).map_err(|e| file_error(e.to_string()))?;
    decompress_if_gzip(&bytes)
}

/// Decompresses gzip (detected by its magic bytes), bounded by [`MAX_PLUGIN_BYTES`].
pub fn decompress_if_gzip(bytes: &[u8]) -> Result<Vec<u8>, SourceError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        if bytes.len() as u64 > MAX_PLUGIN_BYTES {
            return Err(SourceError::TooLarge(false));
        }
        return Ok(bytes.to_vec());
    }
    let mut decompressed = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut decompressed)
        .map_err(SourceError::Gzip)?;
    if decompressed.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(SourceError::TooLarge(true));
    }
    Ok(decompressed)
}

/// Registry credentials from a `kubernetes.io/dockerconfigjson` Secret.
async fn registry_auth(
    client: &Client,
    namespace: &str,
    name: &str,
    registry: &str,
) -> Result<RegistryAuth, SourceError> {
    let error =
        |cause: String| SourceError::PullSecret { namespace: namespace.to_owned(), name: name.to_owned(), cause };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await?
        .ok_or_else(|| error("not found".into()))?;
    let data = secret.data.unwrap_or_default();
    let config = data.get(".dockerconfigjson").ok_or_else(|| error("no .dockerconfigjson key".into()))?;
    let config: serde_json::Value =
        serde_json::from_slice(&config.0).map_err(|e| error(format!(".dockerconfigjson is not JSON: {e}")))?;
    let auths: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(config["auths"].clone()).unwrap_or_default();
    let entry = auths
        .iter()
        .find(|(host, _)| {
            host.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches('/') == registry
        })
        .map(|(_, entry)| entry)
        .ok_or_else(|| error(format!("no credentials for registry {registry}")))?;
    if let (Some(user), Some(password)) = (entry["username"].as_str(), entry["password"].as_str()) {
        return Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
    }
    let encoded =
        entry["auth"].as_str().ok_or_else(|| error(format!("no username/password or auth for {registry}")))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| error(format!("auth for {registry} is not base64: {e}")))?;
    let decoded = String::from_utf8(decoded).map_err(|_| error(format!("auth for {registry} is not UTF-8")))?;
    let (user, password) =
        decoded.split_once(':').ok_or_else(|| error(format!("auth for {registry} is not user:password")))?;
    Ok(RegistryAuth::Basic(user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_is_detected_and_bounded() {
        let plain = b"\0asm\x0d\0\x01\0 component bytes".to_vec();
        assert_eq!(decompress_if_gzip(&plain).unwrap(), plain);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&plain).unwrap();
        assert_eq!(decompress_if_gzip(&encoder.finish().unwrap()).unwrap(), plain);

        // A bomb: 65 MiB of zeros compress to a few KiB.
        let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        bomb.write_all(&vec![0u8; (MAX_PLUGIN_BYTES + (1 << 20)) as usize]).unwrap();
        assert!(matches!(decompress_if_gzip(&bomb.finish().unwrap()), Err(SourceError::TooLarge(true))));
        assert!(matches!(decompress_if_gzip(&[0x1f, 0x8b, 1, 2, 3]), Err(SourceError::Gzip(_))));
    }
}
