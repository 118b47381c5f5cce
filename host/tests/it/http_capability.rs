//! Outgoing HTTP from a plugin: only to allowed hosts, never to link-local or (through a
//! wildcard) private addresses, with credentials the operator adds and the plugin never sees.
//! All traffic stays on loopback; refused destinations are refused before any connection.

use http::{HeaderValue, header::AUTHORIZATION};
use kfp_operator::plugins::{
    Limits, PluginErrorKind, ProviderResponse,
    http_policy::{BoundCredential, HostPattern, HttpPolicy},
    limits,
};
use kfp_test_support::http_server::{RESPONSE_BODY, RecordingServer};

use crate::sandbox::{create_pipeline, load};

const SECRET: &str = "s3cr3t-token-the-plugin-must-not-see";

fn policy(allowed: &[String], credentials: Vec<BoundCredential>) -> HttpPolicy {
    let allowed = allowed.iter().map(|entry| HostPattern::parse(entry).unwrap()).collect();
    HttpPolicy::new(
        "test/hostile_provider",
        allowed,
        credentials,
        limits::DEFAULT_MAX_REQUEST_BODY_BYTES,
        limits::DEFAULT_MAX_RESPONSE_BODY_BYTES,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_host_is_reached_with_credentials_the_plugin_never_sees() {
    let server = RecordingServer::start();
    let entry = format!("127.0.0.1:{}", server.port());
    let credential = BoundCredential {
        host: HostPattern::parse(&entry).unwrap(),
        header: AUTHORIZATION,
        value: HeaderValue::from_str(&format!("Bearer {SECRET}")).unwrap(),
    };
    let policy = policy(&[entry], vec![credential]);
    assert!(!format!("{policy:?}").contains(SECRET), "the operator's own debug output hides the secret");
    let plugin = load("hostile_provider", Limits::default(), policy, "{}");

    let response = plugin.call_provider(&create_pipeline("http", &server.url("/v1/pipelines"))).await.unwrap();
    assert_eq!(response, ProviderResponse::Id(format!("200 {RESPONSE_BODY}")));

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/pipelines");
    assert_eq!(requests[0].header("authorization"), Some(format!("Bearer {SECRET}").as_str()));
    // The plugin only ever sees what it sent and what came back.
    assert!(!format!("{response:?}").contains(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_host_name_may_resolve_to_loopback() {
    let server = RecordingServer::start();
    let plugin =
        load("hostile_provider", Limits::default(), policy(&[format!("localhost:{}", server.port())], vec![]), "{}");
    let url = format!("http://localhost:{}/ok", server.port());
    let response = plugin.call_provider(&create_pipeline("http", &url)).await.unwrap();
    assert_eq!(response, ProviderResponse::Id(format!("200 {RESPONSE_BODY}")));
    assert_eq!(server.requests().len(), 1);
}

/// Each refused destination comes back to the plugin as a denied request, and the call's
/// error says why; nothing reaches the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_destinations_are_refused_with_the_reason() {
    let server = RecordingServer::start();
    let allowed = vec![format!("127.0.0.1:{}", server.port()), "*.254.169.254".to_owned(), "*.0.0.1:8080".to_owned()];
    let plugin = load("hostile_provider", Limits::default(), policy(&allowed, vec![]), "{}");
    for (url, reason) in [
        ("http://example.com/".to_owned(), "example.com:80 is not in allowedHosts"),
        (format!("http://127.0.0.1:{}/", server.port().wrapping_add(1)), "is not in allowedHosts"),
        ("http://169.254.169.254/latest/meta-data".to_owned(), "169.254.169.254 is a link-local"),
        (
            "http://127.0.0.1:8080/".to_owned(),
            "127.0.0.1 is a private or loopback address reached through the wildcard",
        ),
    ] {
        let error = plugin.call_provider(&create_pipeline("http", &url)).await.expect_err(&url);
        let PluginErrorKind::Permanent(message) = &error.kind else { panic!("{url}: {error}") };
        assert!(message.contains("refused by the operator"), "{url}: the plugin saw a denied request: {message}");
        assert!(message.contains(reason), "{url}: the error says why: {message}");
    }
    assert!(server.requests().is_empty(), "a refused request reached the server");
}

/// A response body over the limit fails the plugin's read instead of filling its memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_bodies_are_bounded() {
    let server = RecordingServer::start();
    let allowed = vec![HostPattern::parse(&format!("127.0.0.1:{}", server.port())).unwrap()];
    let policy = HttpPolicy::new("test/hostile_provider", allowed, vec![], 1024, 10);
    let plugin = load("hostile_provider", Limits::default(), policy, "{}");
    let error = plugin.call_provider(&create_pipeline("http", &server.url("/big"))).await.unwrap_err();
    assert!(
        matches!(&error.kind, PluginErrorKind::Transient(m) if m.contains("HTTP response body size exceeds limit: 10 bytes")),
        "{error}"
    );
    assert_eq!(server.requests().len(), 1, "the request itself went through");
}
