//! The string-encoded scalars shared by every kind (reference 1.1): `NamespacedName`,
//! `PipelineIdentifier` and `ArtifactPath`. Each has a strict parser, a canonical serialiser and
//! a JSON Schema of `type: string` (with the upstream pattern where upstream has one).
//!
//! The parsers are stricter than upstream's where upstream silently accepted garbage (for
//! example `a:b:c` as a pipeline identifier); everything the API server accepts through the
//! CRD patterns parses here, so objects written by the upstream operator read back unchanged.

use std::{borrow::Cow, fmt, str::FromStr, sync::LazyLock};

use regex::Regex;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// Why a scalar string could not be parsed or serialised; the message names the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("invalid namespaced name {input:?}: {reason}")]
    NamespacedName { input: String, reason: &'static str },
    #[error("namespaced name with namespace {namespace:?} has no name: write `namespace/name` or just `name`")]
    MissingName { namespace: String },
    #[error("invalid pipeline identifier {input:?}: expected `name` or `name:version` ({PIPELINE_IDENTIFIER_PATTERN})")]
    PipelineIdentifier { input: String },
    #[error("invalid artifact path {input:?}: expected `COMPONENT:OUTPUT[:INDEX][[FILTER]]` ({ARTIFACT_PATH_PATTERN})")]
    ArtifactPath { input: String },
    #[error("invalid artifact path {input:?}: index {index:?} is too large")]
    ArtifactIndex { input: String, index: String },
}

/// `namespace/name`, or `name` alone when the namespace is empty (reference 1.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NamespacedName {
    pub namespace: String,
    pub name: String,
}

impl NamespacedName {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// The canonical string form. Fails only for a namespace without a name, which has no
    /// string form that would parse back to the same value.
    pub fn to_canonical(&self) -> Result<String, NameError> {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (true, _) => Ok(self.name.clone()),
            (false, true) => Err(NameError::MissingName { namespace: self.namespace.clone() }),
            (false, false) => Ok(format!("{}/{}", self.namespace, self.name)),
        }
    }

    /// The same name with `namespace` filled in when it was left out (`name` → `namespace/name`),
    /// as RunConfiguration references resolve relative to their own namespace.
    pub fn with_default_namespace(&self, namespace: &str) -> Self {
        if self.namespace.is_empty() { Self::new(namespace, self.name.clone()) } else { self.clone() }
    }
}

impl FromStr for NamespacedName {
    type Err = NameError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let invalid = |reason| NameError::NamespacedName { input: input.to_owned(), reason };
        let mut parts = input.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) => Ok(Self::new("", name)),
            (Some(""), Some(_), None) => Err(invalid("the namespace before `/` is empty")),
            (Some(_), Some(""), None) => Err(invalid("the name after `/` is empty")),
            (Some(namespace), Some(name), None) => Ok(Self::new(namespace, name)),
            _ => Err(invalid("more than one `/`; expected `namespace/name` or `name`")),
        }
    }
}

impl fmt::Display for NamespacedName {
    /// Display never fails: a namespace without a name shows as `namespace/`, which is what a
    /// user needs to see in an error message even though it does not parse.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() { f.write_str(&self.name) } else { write!(f, "{}/{}", self.namespace, self.name) }
    }
}

pub const PIPELINE_IDENTIFIER_PATTERN: &str = r"^[\w\-]+(?::[\w\-_.]+)?$";

/// A pipeline reference: `name` (the latest Succeeded version) or `name:version` (pinned).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipelineIdentifier {
    pub name: String,
    pub version: Option<String>,
}

impl PipelineIdentifier {
    pub fn new(name: impl Into<String>, version: Option<String>) -> Self {
        Self { name: name.into(), version }
    }
}

impl FromStr for PipelineIdentifier {
    type Err = NameError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // Go's RE2 `\w` is ASCII-only; Rust's is Unicode unless told otherwise.
        static PATTERN: LazyLock<Regex> =
            LazyLock::new(|| Regex::new(r"^(?-u:[\w\-]+)(?::(?-u:[\w\-_.]+))?$").expect("static pattern"));
        if !PATTERN.is_match(input) {
            return Err(NameError::PipelineIdentifier { input: input.to_owned() });
        }
        Ok(match input.split_once(':') {
            Some((name, version)) => Self::new(name, Some(version.to_owned())),
            None => Self::new(input, None),
        })
    }
}

impl fmt::Display for PipelineIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}:{}", self.name, version),
            None => f.write_str(&self.name),
        }
    }
}

pub const ARTIFACT_PATH_PATTERN: &str = r"^([^\[\]:]+):([^\[\]:]+)(?::(\d*))?(?:\[([^\[\]:]+)\])?$";

/// `COMPONENT:OUTPUT[:INDEX][[FILTER]]`: which output artifact of a pipeline component to
/// expose, with an optional boolean filter over the artifact's metadata (e.g. `pushed == 1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArtifactPath {
    pub component: String,
    pub artifact: String,
    /// Which of the component's artifacts of that name; 0 when the path leaves it out.
    pub index: u64,
    pub filter: Option<String>,
}

impl FromStr for ArtifactPath {
    type Err = NameError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        static PATTERN: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(r"^([^\[\]:]+):([^\[\]:]+)(?::([0-9]*))?(?:\[([^\[\]:]+)\])?$").expect("static pattern")
        });
        let captures = PATTERN.captures(input).ok_or_else(|| NameError::ArtifactPath { input: input.to_owned() })?;
        let index = match captures.get(3).map(|m| m.as_str()).unwrap_or("") {
            "" => 0,
            digits => digits
                .parse()
                .map_err(|_| NameError::ArtifactIndex { input: input.to_owned(), index: digits.to_owned() })?,
        };
        Ok(Self {
            component: captures[1].to_owned(),
            artifact: captures[2].to_owned(),
            index,
            filter: captures.get(4).map(|m| m.as_str().to_owned()),
        })
    }
}

impl fmt::Display for ArtifactPath {
    /// Canonical form `C:O:I` or `C:O:I[FILTER]`: the index is always written, so
    /// `CsvExampleGen:examples` becomes `CsvExampleGen:examples:0` (as upstream).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.component, self.artifact, self.index)?;
        if let Some(filter) = &self.filter {
            write!(f, "[{filter}]")?;
        }
        Ok(())
    }
}

/// JSON as a string, in canonical form; parse with `FromStr` on the way in.
macro_rules! string_encoded {
    ($ty:ty, $schema_name:literal, $serialise:expr, $pattern:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let to_string: fn(&$ty) -> Result<String, NameError> = $serialise;
                let text = to_string(self).map_err(serde::ser::Error::custom)?;
                serializer.serialize_str(&text)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = Cow::<str>::deserialize(deserializer)?;
                text.parse().map_err(de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $schema_name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let pattern: Option<&str> = $pattern;
                match pattern {
                    Some(pattern) => json_schema!({ "type": "string", "pattern": pattern }),
                    None => json_schema!({ "type": "string" }),
                }
            }

            fn inline_schema() -> bool {
                true
            }
        }
    };
}

// A NamespacedName's pattern depends on where it is used (provider references require the
// namespace); the fields that need one say so with `#[schemars(regex(...))]`.
string_encoded!(NamespacedName, "NamespacedName", NamespacedName::to_canonical, None);
string_encoded!(PipelineIdentifier, "PipelineIdentifier", |id| Ok(id.to_string()), Some(PIPELINE_IDENTIFIER_PATTERN));
string_encoded!(ArtifactPath, "ArtifactPath", |path| Ok(path.to_string()), Some(ARTIFACT_PATH_PATTERN));

/// The pattern upstream puts on every `spec.provider`: a namespace is mandatory in v1beta1.
pub const PROVIDER_REFERENCE_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn namespaced_name_forms() {
        assert_eq!("n".parse::<NamespacedName>().unwrap(), NamespacedName::new("", "n"));
        assert_eq!("ns/n".parse::<NamespacedName>().unwrap(), NamespacedName::new("ns", "n"));
        for bad in ["/n", "ns/", "/", "a/b/c", "a//b", "//"] {
            let err = bad.parse::<NamespacedName>().unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        assert_eq!(NamespacedName::new("", "n").to_canonical().unwrap(), "n");
        assert_eq!(NamespacedName::new("ns", "n").to_canonical().unwrap(), "ns/n");
        assert!(matches!(NamespacedName::new("ns", "").to_canonical(), Err(NameError::MissingName { .. })));
        assert!(serde_json::to_string(&NamespacedName::new("ns", "")).is_err());
        assert_eq!(NamespacedName::new("", "rc").with_default_namespace("team"), NamespacedName::new("team", "rc"));
    }

    #[test]
    fn pipeline_identifier_forms() {
        assert_eq!("p".parse::<PipelineIdentifier>().unwrap(), PipelineIdentifier::new("p", None));
        assert_eq!(
            "p-1:v1-abc.2_x".parse::<PipelineIdentifier>().unwrap(),
            PipelineIdentifier::new("p-1", Some("v1-abc.2_x".into()))
        );
        for bad in ["", ":v", "p:", "p:v:w", "p/q", "p v", "pé", "p:v/1", "p.q"] {
            assert!(bad.parse::<PipelineIdentifier>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn artifact_path_forms() {
        let path: ArtifactPath = "CsvExampleGen:examples".parse().unwrap();
        assert_eq!(path.to_string(), "CsvExampleGen:examples:0");
        let path: ArtifactPath = "Pusher:pushed_model:2[pushed == 1]".parse().unwrap();
        assert_eq!(path.index, 2);
        assert_eq!(path.filter.as_deref(), Some("pushed == 1"));
        assert_eq!(path.to_string(), "Pusher:pushed_model:2[pushed == 1]");
        assert_eq!("a:b:".parse::<ArtifactPath>().unwrap().to_string(), "a:b:0");
        assert_eq!("a:b[x]".parse::<ArtifactPath>().unwrap().to_string(), "a:b:0[x]");
        for bad in [
            "",
            "a",
            ":b",
            "a:",
            "a:b:c",
            "a:b:1:2",
            "a:b[]",
            "a:b[x",
            "a:b[x]y",
            "a[x]:b",
            "a:b:1[x:y]",
            "a:b:١",
            "a:b:99999999999999999999999",
        ] {
            assert!(bad.parse::<ArtifactPath>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn json_round_trip_is_a_plain_string() {
        let json = serde_json::to_string(&"ns/name".parse::<NamespacedName>().unwrap()).unwrap();
        assert_eq!(json, r#""ns/name""#);
        let err = serde_json::from_str::<NamespacedName>(r#""a/b/c""#).unwrap_err();
        assert!(err.to_string().contains("more than one"), "{err}");
        let path: ArtifactPath = serde_json::from_str(r#""c:o""#).unwrap();
        assert_eq!(serde_json::to_string(&path).unwrap(), r#""c:o:0""#);
    }

    /// Segments that never contain the separators of any of the three encodings.
    fn segment() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_.-]{1,12}"
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{1,12}"
    }

    proptest! {
        #[test]
        fn namespaced_name_round_trips(namespace in proptest::option::of(segment()), name in segment()) {
            let value = NamespacedName::new(namespace.unwrap_or_default(), name);
            let text = value.to_canonical().unwrap();
            prop_assert_eq!(text.parse::<NamespacedName>().unwrap(), value);
        }

        #[test]
        fn namespaced_name_rejects_extra_separators(a in segment(), b in segment(), c in segment()) {
            for bad in [format!("{a}/{b}/{c}"), format!("/{a}"), format!("{a}/")] {
                prop_assert!(bad.parse::<NamespacedName>().is_err(), "{} accepted", bad);
            }
        }

        #[test]
        fn pipeline_identifier_round_trips(name in word(), version in proptest::option::of("[a-zA-Z0-9_.-]{1,12}")) {
            let value = PipelineIdentifier::new(name, version);
            prop_assert_eq!(value.to_string().parse::<PipelineIdentifier>().unwrap(), value);
        }

        #[test]
        fn pipeline_identifier_rejects_foreign_characters(name in word(), bad in "[^a-zA-Z0-9_:.-]") {
            let with_bad_char = format!("{name}{bad}");
            prop_assert!(with_bad_char.parse::<PipelineIdentifier>().is_err());
        }

        #[test]
        fn artifact_path_round_trips(
            component in segment(),
            artifact in segment(),
            index in 0u64..10_000,
            filter in proptest::option::of("[a-z0-9 =<>!&|\"]{1,20}"),
        ) {
            let value = ArtifactPath { component, artifact, index, filter };
            let text = value.to_string();
            prop_assert_eq!(text.parse::<ArtifactPath>().unwrap(), value.clone());
            // The canonical form is a fixed point.
            prop_assert_eq!(text.parse::<ArtifactPath>().unwrap().to_string(), text);
        }

        #[test]
        fn artifact_path_rejects_brackets_and_colons_in_parts(
            component in segment(),
            artifact in segment(),
            bracket in "[\\[\\]]",
        ) {
            for input in [
                format!("{component}{bracket}x:{artifact}"),
                format!("{component}:{artifact}[{bracket}]"),
                format!("{component}:{artifact}[{component}:{artifact}]"),
                format!("{component}:{artifact}:x{artifact}"),
            ] {
                prop_assert!(input.parse::<ArtifactPath>().is_err(), "{} accepted", input);
            }
        }

        #[test]
        fn parsers_agree_with_the_crd_patterns(input in "[a-z0-9:/\\[\\]._ -]{0,16}") {
            // What the API server lets through the CRD pattern must parse, and vice versa.
            let artifact = Regex::new(ARTIFACT_PATH_PATTERN).unwrap();
            prop_assert_eq!(artifact.is_match(&input), input.parse::<ArtifactPath>().is_ok());
            let pipeline = Regex::new(PIPELINE_IDENTIFIER_PATTERN).unwrap();
            prop_assert_eq!(pipeline.is_match(&input), input.parse::<PipelineIdentifier>().is_ok());
        }
    }
}
