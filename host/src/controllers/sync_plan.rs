//! The synchronisation state machine shared by Pipeline, Experiment, Run and RunSchedule
//! (upstream reference 1.10), as a pure decision: what one reconcile does next, given what the
//! resource's status records. Plugin calls replace upstream's workflows, so a reconcile performs
//! the operation itself instead of waiting for a workflow; the deliberate fixes (README) are:
//! a failed delete is retried instead of sticking in `Deleting`, and a resource found in
//! `Creating`/`Updating` (a crash between the status write and the call) repeats the call,
//! which is safe because remote names are deterministic and plugins idempotent.

use crate::api::{conditions::SynchronizationState, names::NamespacedName};

/// What the status records and the spec asks for.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub state: SynchronizationState,
    /// `status.provider.name`: the Provider that holds the remote resource, if any yet.
    pub recorded_provider: &'a NamespacedName,
    pub spec_provider: &'a NamespacedName,
    pub deletion_requested: bool,
    pub recorded_version: &'a str,
    pub computed_version: &'a str,
    /// `status.provider.id`: the remote id, empty when nothing exists remotely.
    pub id: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Nothing exists remotely any more: drop the finalizer and let the object go.
    Release,
    /// Delete the remote resource `id`.
    Delete { id: String },
    /// The spec names another Provider than the one holding the remote resource.
    ProviderChanged,
    /// Create the remote resource at the computed version.
    Create,
    /// Update the remote resource `id` to the computed version.
    Update { id: String },
    /// In sync (or failed at this version): nothing to do until the spec changes.
    Idle,
}

pub fn plan(observed: Observed<'_>) -> Plan {
    use SynchronizationState::*;
    if observed.deletion_requested {
        return if observed.id.is_empty() || observed.state == Deleted {
            Plan::Release
        } else {
            Plan::Delete { id: observed.id.to_owned() }
        };
    }
    if !observed.recorded_provider.is_empty() && observed.recorded_provider != observed.spec_provider {
        return Plan::ProviderChanged;
    }
    let settled = matches!(observed.state, Succeeded | Failed);
    if settled && observed.recorded_version == observed.computed_version {
        return Plan::Idle;
    }
    if observed.id.is_empty() { Plan::Create } else { Plan::Update { id: observed.id.to_owned() } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SynchronizationState::*;

    fn observe(state: SynchronizationState, version: &str, id: &str, deleting: bool) -> Plan {
        let provider: NamespacedName = "team/kfp".parse().unwrap();
        let recorded = if id.is_empty() { NamespacedName::default() } else { provider.clone() };
        plan(Observed {
            state,
            recorded_provider: &recorded,
            spec_provider: &provider,
            deletion_requested: deleting,
            recorded_version: version,
            computed_version: "v2",
            id,
        })
    }

    /// The rows of upstream's table (reference 1.10) that survive without workflows, plus the
    /// deliberate fixes.
    #[test]
    fn transitions() {
        let update = Plan::Update { id: "remote".into() };
        let cases = [
            // New resources are created; a restored one (id, no state) is updated.
            (Unknown, "", "", false, Plan::Create),
            (Unknown, "", "remote", false, update.clone()),
            // In sync, or failed at this version: wait for a spec change.
            (Succeeded, "v2", "remote", false, Plan::Idle),
            (Failed, "v2", "", false, Plan::Idle),
            (Failed, "v2", "remote", false, Plan::Idle),
            // The spec changed.
            (Succeeded, "v1", "", false, Plan::Create),
            (Succeeded, "v1", "remote", false, update.clone()),
            (Failed, "v1", "remote", false, update.clone()),
            // A crash between the status write and the call: repeat the call.
            (Creating, "v2", "", false, Plan::Create),
            (Updating, "v2", "remote", false, update.clone()),
            // Deletion.
            (Succeeded, "v2", "", true, Plan::Release),
            (Failed, "v2", "remote", true, Plan::Delete { id: "remote".into() }),
            (Deleting, "v2", "remote", true, Plan::Delete { id: "remote".into() }),
            (Deleted, "v2", "remote", true, Plan::Release),
            (Creating, "v2", "remote", true, Plan::Delete { id: "remote".into() }),
        ];
        for (state, version, id, deleting, expected) in cases {
            assert_eq!(
                observe(state, version, id, deleting),
                expected,
                "{state} version={version} id={id} deleting={deleting}"
            );
        }
    }

    #[test]
    fn a_changed_provider_fails_until_deleted() {
        let (old, new): (NamespacedName, NamespacedName) = ("team/old".parse().unwrap(), "team/new".parse().unwrap());
        let observed = |deleting| Observed {
            state: Succeeded,
            recorded_provider: &old,
            spec_provider: &new,
            deletion_requested: deleting,
            recorded_version: "v1",
            computed_version: "v1",
            id: "remote",
        };
        assert_eq!(plan(observed(false)), Plan::ProviderChanged);
        assert_eq!(plan(observed(true)), Plan::Delete { id: "remote".into() });
    }
}
