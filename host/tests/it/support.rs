//! Helpers shared by the integration tests.

use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, PostParams},
};
use serde_json::Value;

/// A client of the shared control plane and a fresh namespace for one test.
pub async fn setup(prefix: &str) -> (Client, String) {
    let client = kfp_test_support::shared_client().await;
    let namespace = kfp_test_support::test_namespace(&client, prefix).await.expect("a test namespace");
    (client, namespace)
}

/// An untyped API for kind `K`, so tests can send objects the Rust types would refuse to
/// build (that is the point of a validation test).
pub fn dynamic_api<K: Resource<DynamicType = ()>>(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &ApiResource::erase::<K>(&()))
}

/// Creates `object` (JSON with apiVersion, kind, metadata, spec) as kind `K`.
pub async fn create<K: Resource<DynamicType = ()>>(
    client: &Client,
    namespace: &str,
    object: Value,
) -> Result<DynamicObject, kube::Error> {
    let object: DynamicObject = serde_json::from_value(object).expect("a well-formed object");
    dynamic_api::<K>(client, namespace).create(&PostParams::default(), &object).await
}

/// Asserts the API server refused the object as invalid (422) with `message` in its reason.
#[track_caller]
pub fn assert_invalid<T: std::fmt::Debug>(result: Result<T, kube::Error>, message: &str) {
    match result {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "expected 422 Invalid, got {status:?}");
            assert!(
                status.message.contains(message),
                "the API server's message does not say {message:?}:\n{}",
                status.message
            );
        }
        other => {
            panic!("expected the API server to refuse the object with {message:?}, got {other:?}")
        }
    }
}
