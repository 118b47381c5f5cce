//! The outgoing-HTTP capability: the only network access a plugin has, and only to the hosts
//! its Provider allows.
//!
//! Every request the plugin sends through `wasi:http/outgoing-handler` reaches
//! [`HttpPolicy::send_request`] first, which
//! - refuses hosts not in `allowedHosts` (`host` = that host on the scheme's default port,
//!   `host:port`, `*.domain` = any subdomain on the default port);
//! - resolves the host and refuses link-local, unspecified and multicast addresses (cloud
//!   metadata endpoints live at 169.254.169.254) unless `allowedHosts` names that IP literally,
//!   and refuses loopback and private addresses reached through a wildcard entry (an exact
//!   host name or IP literal is the platform engineer saying "this internal service");
//! - attaches the Provider's credentials for that host (the plugin never sees them);
//! - bounds request and response bodies.
//!
//! Refusals reach the plugin as `HTTP-request-denied` and are logged with the plugin's name and
//! the reason; the reason is also kept for the call's error message. The check resolves the
//! name once and the connection resolves it again, so a DNS answer that changes in between
//! (rebinding) is not caught for exact host names; IP literals and wildcard entries are exact.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::{HeaderName, HeaderValue, Request, Response, uri::Scheme};
use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// How long name resolution for the address check may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection timeout when the plugin sets none (the call's deadline bounds the rest).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One `allowedHosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern {
    /// Lowercase host, without the `*.` of a wildcard.
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    /// Parses `host`, `host:port`, `*.domain` or `[v6]:port`; the CRD pattern has already
    /// refused schemes and paths.
    pub fn parse(entry: &str) -> Result<Self, String> {
        let entry = entry.trim().to_ascii_lowercase();
        let (wildcard, rest) = match entry.strip_prefix("*.") {
            Some(rest) => (true, rest.to_owned()),
            None => (false, entry.clone()),
        };
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
                host.to_owned(),
                Some(port.parse().map_err(|_| format!("invalid port in allowedHosts entry {entry:?}"))?),
            ),
            _ => (rest, None),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        if host.is_empty() {
            return Err(format!("empty host in allowedHosts entry {entry:?}"));
        }
        Ok(Self { host, wildcard, port })
    }

    fn matches(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_matches = if self.wildcard {
            host.strip_suffix(&self.host).is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
        } else {
            host == self.host
        };
        host_matches && port == self.port.unwrap_or(default_port)
    }

    fn literal_ip(&self) -> Option<IpAddr> {
        if self.wildcard { None } else { self.host.parse().ok() }
    }
}

/// A credential the operator attaches to requests for one host.
#[derive(Clone)]
pub struct BoundCredential {
    pub host: HostPattern,
    pub header: HeaderName,
    pub value: HeaderValue,
}

impl std::fmt::Debug for BoundCredential {
    // Never print the secret, even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundCredential").field("host", &self.host).field("header", &self.header).finish()
    }
}

/// What a plugin may reach over HTTP. Cheap to clone: shared by every call of one plugin.
#[derive(Debug, Clone, Default)]
pub struct HttpPolicy {
    inner: Arc<PolicyConfig>,
    /// Why requests of the current call were refused, for its error message.
    refusals: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Default)]
struct PolicyConfig {
    plugin: String,
    allowed: Vec<HostPattern>,
    credentials: Vec<BoundCredential>,
    max_request_body_bytes: u64,
    max_response_body_bytes: u64,
}

impl HttpPolicy {
    pub fn new(
        plugin: impl Into<String>,
        allowed: Vec<HostPattern>,
        credentials: Vec<BoundCredential>,
        max_request_body_bytes: u64,
        max_response_body_bytes: u64,
    ) -> Self {
        let inner = PolicyConfig {
            plugin: plugin.into(),
            allowed,
            credentials,
            max_request_body_bytes,
            max_response_body_bytes,
        };
        Self { inner: Arc::new(inner), refusals: Arc::default() }
    }

    /// A copy for one call, with its own list of refusals.
    pub fn for_call(&self) -> Self {
        Self { inner: self.inner.clone(), refusals: Arc::default() }
    }

    /// Why requests of this call were refused.
    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Why a destination is refused, or `None` when it may be reached.
fn check_address(ip: IpAddr, pattern: &HostPattern) -> Option<String> {
    if pattern.literal_ip() == Some(ip) {
        return None;
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    let (link_local, internal) = match ip {
        IpAddr::V4(v4) => (
            v4.is_link_local() || v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast(),
            v4.is_loopback() || v4.is_private() || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64,
        ),
        IpAddr::V6(v6) => (
            v6.is_unicast_link_local() || v6.is_unspecified() || v6.is_multicast(),
            v6.is_loopback() || v6.is_unique_local(),
        ),
    };
    if link_local {
        Some(format!(
            "{ip} is a link-local, unspecified or multicast address; list it literally in allowedHosts to allow it"
        ))
    } else if internal && pattern.wildcard {
        Some(format!(
            "{ip} is a private or loopback address reached through the wildcard *.{}; list the host exactly to allow it",
            pattern.host
        ))
    } else {
        None
    }
}

impl PolicyConfig {
    /// The pattern that allows `host:port`, the addresses to check, or why it is refused.
    async fn authorise(&self, host: &str, port: u16, default_port: u16) -> Result<&HostPattern, String> {
        let pattern = self
            .allowed
            .iter()
            .find(|p| p.matches(host, port, default_port))
            .ok_or_else(|| format!("{host}:{port} is not in allowedHosts"))?;
        let addresses: Vec<IpAddr> = match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|e| format!("resolving {host}: {e}"))?
                .map(|address| address.ip())
                .collect(),
        };
        for ip in addresses {
            if let Some(reason) = check_address(ip, pattern) {
                return Err(format!("{host}:{port}: {reason}"));
            }
        }
        Ok(pattern)
    }
}

impl WasiHttpHooks for HttpPolicy {
    fn send_request(
        &mut self,
        request: Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<Output = Result<(Response<WasiBody>, Box<dyn Future<Output = Result<(), Error>> + Send>), Error>>
            + Send,
    > {
        drop(fut);
        let config = self.inner.clone();
        let refusals = self.refusals.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            let host = uri.host().unwrap_or_default().to_ascii_lowercase();
            let default_port = if uri.scheme() == Some(&Scheme::HTTP) { 80 } else { 443 };
            let port = uri.port_u16().unwrap_or(default_port);
            if let Err(reason) = config.authorise(&host, port, default_port).await {
                tracing::warn!(plugin = %config.plugin, %uri, %reason, "refused a plugin's outgoing HTTP request");
                if let Ok(mut list) = refusals.lock() {
                    list.push(reason);
                }
                return Err(Error::HttpRequestDenied);
            }

            let (mut parts, body) = request.into_parts();
            for credential in config.credentials.iter().filter(|c| c.host.matches(&host, port, default_port)) {
                parts.headers.insert(credential.header.clone(), credential.value.clone());
            }
            let max_request = config.max_request_body_bytes;
            let body = Limited::new(body, max_request as usize)
                .map_err(move |_| Error::HttpRequestBodySize(Some(max_request)))
                .boxed_unsync();
            let options = Some(RequestOptions {
                connect_timeout: options.and_then(|o| o.connect_timeout).or(Some(DEFAULT_CONNECT_TIMEOUT)),
                ..options.unwrap_or_default()
            });
            let (response, io) =
                wasmtime_wasi_http::default_send_request(Request::from_parts(parts, body), options).await?;
            let max_response = config.max_response_body_bytes;
            let response = response.map(|body| {
                Limited::new(body, max_response as usize)
                    .map_err(move |_| Error::HttpResponseBodySize(Some(max_response)))
                    .boxed_unsync()
            });
            Ok((response, Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(entry: &str) -> HostPattern {
        HostPattern::parse(entry).unwrap()
    }

    #[test]
    fn host_patterns() {
        assert!(pattern("api.example.com").matches("api.example.com", 443, 443));
        assert!(!pattern("api.example.com").matches("api.example.com", 8443, 443));
        assert!(pattern("api.example.com:8443").matches("api.example.com", 8443, 443));
        assert!(pattern("*.googleapis.com").matches("storage.googleapis.com", 443, 443));
        assert!(!pattern("*.googleapis.com").matches("googleapis.com", 443, 443));
        assert!(!pattern("*.googleapis.com").matches("evilgoogleapis.com", 443, 443));
        assert!(pattern("127.0.0.1:8080").matches("127.0.0.1", 8080, 80));
        assert!(pattern("[::1]:8080").matches("::1", 8080, 80));
        assert_eq!(pattern("API.Example.com").host, "api.example.com");
    }

    #[test]
    fn address_classes() {
        let exact = pattern("kfp.kubeflow.svc");
        let wildcard = pattern("*.svc");
        let metadata: IpAddr = "169.254.169.254".parse().unwrap();
        let private: IpAddr = "10.0.0.7".parse().unwrap();
        let public: IpAddr = "34.1.2.3".parse().unwrap();
        assert!(check_address(metadata, &exact).is_some());
        assert!(check_address(metadata, &pattern("169.254.169.254")).is_none());
        assert!(check_address(private, &exact).is_none());
        assert!(check_address(private, &wildcard).is_some());
        assert!(check_address("::ffff:10.0.0.7".parse().unwrap(), &wildcard).is_some());
        assert!(check_address("fe80::1".parse().unwrap(), &exact).is_some());
        assert!(check_address(public, &wildcard).is_none());
        assert!(check_address("0.0.0.0".parse().unwrap(), &exact).is_some());
    }
}
