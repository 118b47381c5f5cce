//! The `Synchronized` condition (reference 1.1): the one condition every kind reports, whose
//! reason is the resource's synchronisation state.

use std::{fmt, str::FromStr};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The only condition type the operator writes.
pub const SYNCHRONIZED: &str = "Synchronized";

/// Where a resource is in its synchronisation with the remote platform. `Unknown` is the
/// implicit state of a resource whose condition is missing or has an unrecognised reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SynchronizationState {
    #[default]
    Unknown,
    Creating,
    Succeeded,
    Updating,
    Deleting,
    Deleted,
    Failed,
}

impl SynchronizationState {
    const NAMED: [SynchronizationState; 6] =
        [Self::Creating, Self::Succeeded, Self::Updating, Self::Deleting, Self::Deleted, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Creating => "Creating",
            Self::Succeeded => "Succeeded",
            Self::Updating => "Updating",
            Self::Deleting => "Deleting",
            Self::Deleted => "Deleted",
            Self::Failed => "Failed",
        }
    }

    /// The state a condition reason stands for, compared case-insensitively as upstream does;
    /// anything unrecognised (including an empty reason) is `Unknown`.
    pub fn from_reason(reason: &str) -> Self {
        Self::NAMED.into_iter().find(|state| state.as_str().eq_ignore_ascii_case(reason)).unwrap_or(Self::Unknown)
    }

    /// `True` once the remote side matches (Succeeded, Deleted), `False` when it failed,
    /// `Unknown` while an operation is in flight.
    pub fn condition_status(self) -> &'static str {
        match self {
            Self::Succeeded | Self::Deleted => "True",
            Self::Failed => "False",
            _ => "Unknown",
        }
    }
}

impl fmt::Display for SynchronizationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SynchronizationState {
    type Err = std::convert::Infallible;

    fn from_str(reason: &str) -> Result<Self, Self::Err> {
        Ok(Self::from_reason(reason))
    }
}

/// A `Synchronized` condition for `state`, stamped with `now`.
pub fn synchronized_condition(
    state: SynchronizationState,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: SYNCHRONIZED.to_owned(),
        status: state.condition_status().to_owned(),
        reason: state.as_str().to_owned(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// The current synchronisation state recorded in `conditions`.
pub fn synchronization_state(conditions: &[Condition]) -> SynchronizationState {
    conditions
        .iter()
        .find(|condition| condition.type_ == SYNCHRONIZED)
        .map(|condition| SynchronizationState::from_reason(&condition.reason))
        .unwrap_or_default()
}

/// Puts `condition` into `conditions`, replacing the one of the same type only when its
/// reason, status, observedGeneration or message differ, so `lastTransitionTime` moves only on
/// a real change. Returns whether anything changed. Other conditions keep their order.
pub fn merge_condition(conditions: &mut Vec<Condition>, condition: Condition) -> bool {
    match conditions.iter_mut().find(|existing| existing.type_ == condition.type_) {
        Some(existing) => {
            let changed = existing.reason != condition.reason
                || existing.status != condition.status
                || existing.observed_generation != condition.observed_generation
                || existing.message != condition.message;
            if changed {
                *existing = condition;
            }
            changed
        }
        None => {
            conditions.push(condition);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn reasons_map_to_states_case_insensitively() {
        assert_eq!(SynchronizationState::from_reason("succeeded"), SynchronizationState::Succeeded);
        assert_eq!(SynchronizationState::from_reason("FAILED"), SynchronizationState::Failed);
        assert_eq!(SynchronizationState::from_reason(""), SynchronizationState::Unknown);
        assert_eq!(SynchronizationState::from_reason("Bogus"), SynchronizationState::Unknown);
        for state in SynchronizationState::NAMED {
            assert_eq!(SynchronizationState::from_reason(state.as_str()), state);
        }
    }

    #[test]
    fn condition_status_follows_state() {
        use SynchronizationState::*;
        let statuses: Vec<_> = [Unknown, Creating, Succeeded, Updating, Deleting, Deleted, Failed]
            .iter()
            .map(|s| s.condition_status())
            .collect();
        assert_eq!(statuses, ["Unknown", "Unknown", "True", "Unknown", "Unknown", "True", "False"]);
    }

    #[test]
    fn merge_only_moves_transition_time_on_real_change() {
        use SynchronizationState::*;
        let mut conditions = vec![Condition {
            type_: "Other".into(),
            status: "True".into(),
            reason: "X".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(1),
        }];
        assert!(merge_condition(&mut conditions, synchronized_condition(Creating, "", Some(1), at(10))));
        assert_eq!(synchronization_state(&conditions), Creating);

        // Same reason, status, generation and message: the old timestamp stays.
        assert!(!merge_condition(&mut conditions, synchronized_condition(Creating, "", Some(1), at(20))));
        assert_eq!(conditions[1].last_transition_time, at(10));

        for changed in [
            synchronized_condition(Succeeded, "", Some(1), at(30)),
            synchronized_condition(Succeeded, "now with a message", Some(1), at(40)),
            synchronized_condition(Succeeded, "now with a message", Some(2), at(50)),
        ] {
            let stamp = changed.last_transition_time.clone();
            assert!(merge_condition(&mut conditions, changed));
            assert_eq!(conditions[1].last_transition_time, stamp);
        }
        assert_eq!(conditions.len(), 2);
        assert_eq!(conditions[0].type_, "Other");
        assert_eq!(conditions[1].status, "True");
    }
}
