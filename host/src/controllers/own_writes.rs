//! The resourceVersion of this process's last write to each object, so that a reconcile which
//! reads an older copy from the watch cache waits for its own write to arrive instead of acting
//! on state it has already moved past.
//!
//! Why: a reconcile writes `Creating`, calls the plugin and writes `Succeeded`; the watch events
//! of the first writes queue another reconcile, which may start before the watch has delivered
//! the last write. Acting on that stale copy would repeat the plugin call and both status writes
//! (harmless, as remote names are deterministic, but it doubles the load on the API server and
//! flickers the status back to `Creating`). The watch delivers every write, so the skipped
//! reconcile runs again, on fresh state, when ours arrives.
//!
//! Resource versions are comparable integers within one resource type on every API server since
//! Kubernetes 1.35 (KEP-5504); one that does not parse as an integer is never called stale.

use std::{collections::HashMap, sync::Mutex};

#[derive(Default)]
pub struct OwnWrites {
    /// `kind/namespace/name` → the resourceVersion our last write returned.
    versions: Mutex<HashMap<String, u64>>,
}

impl OwnWrites {
    /// Records the resourceVersion a write of `key` returned.
    pub fn record(&self, key: &str, resource_version: Option<&str>) {
        let Some(version) = resource_version.and_then(|v| v.parse::<u64>().ok()) else { return };
        let mut versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = versions.entry(key.to_owned()).or_insert(version);
        *entry = (*entry).max(version);
    }

    /// Whether a copy of `key` at `resource_version` predates our last write of it.
    pub fn is_stale(&self, key: &str, resource_version: Option<&str>) -> bool {
        let Some(version) = resource_version.and_then(|v| v.parse::<u64>().ok()) else { return false };
        let versions = self.versions.lock().unwrap_or_else(|e| e.into_inner());
        versions.get(key).is_some_and(|written| version < *written)
    }

    /// Forgets `key` (the object is gone).
    pub fn forget(&self, key: &str) {
        self.versions.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_older_than_our_last_write_are_stale() {
        let writes = OwnWrites::default();
        assert!(!writes.is_stale("pipeline/a/p", Some("5")), "nothing written yet");
        writes.record("pipeline/a/p", Some("10"));
        writes.record("pipeline/a/p", Some("8"));
        assert!(writes.is_stale("pipeline/a/p", Some("9")), "older than the last write");
        assert!(!writes.is_stale("pipeline/a/p", Some("10")), "our own write");
        assert!(!writes.is_stale("pipeline/a/p", Some("11")), "a later change by someone else");
        assert!(!writes.is_stale("pipeline/a/q", Some("1")), "per object");
        assert!(!writes.is_stale("pipeline/a/p", Some("opaque")), "an unparsable version is never stale");
        writes.forget("pipeline/a/p");
        assert!(!writes.is_stale("pipeline/a/p", Some("9")));
    }
}
