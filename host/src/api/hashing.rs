//! Content hashing for `status.version` (reference 1.8).
//!
//! The byte layout is a compatibility contract: an object the upstream operator synchronised must
//! compute the same version here, or taking over a live cluster would re-create every remote
//! pipeline, run and schedule. So this module reproduces upstream's Go encodings exactly:
//! SHA-1 over NUL-separated fields, sorted lists, canonical JSON as Go's `encoding/json` writes
//! it, Go's `time.Time.String()` and the Docker reference grammar for image tags.

use std::{cmp::Ordering, fmt::Write as _, sync::LazyLock};

use regex::Regex;
use serde_json::Value;
use sha1::{Digest, Sha1};

const FIELD_SEPARATOR: [u8; 1] = [0];

/// Feeds fields into a SHA-1 the way upstream's `ObjectHasher` does.
#[derive(Default)]
pub struct ObjectHasher {
    sha1: Sha1,
}

impl ObjectHasher {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value's UTF-8 bytes followed by a NUL.
    pub fn write_str(&mut self, value: &str) {
        self.sha1.update(value.as_bytes());
        self.sha1.update(FIELD_SEPARATOR);
    }

    pub fn write_separator(&mut self) {
        self.sha1.update(FIELD_SEPARATOR);
    }

    /// Key/value pairs sorted by (key, value), each as two fields, then one extra NUL.
    pub fn write_kv_list<'a>(&mut self, pairs: impl IntoIterator<Item = (&'a str, String)>) {
        let mut pairs: Vec<_> = pairs.into_iter().collect();
        pairs.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.cmp(&b.1)));
        for (key, value) in pairs {
            self.write_str(key);
            self.write_str(&value);
        }
        self.write_separator();
    }

    /// Items sorted by `order`, each written by `write`, then one extra NUL.
    pub fn write_list<T>(&mut self, items: &[T], order: impl Fn(&T, &T) -> Ordering, write: impl Fn(&mut Self, &T)) {
        let mut sorted: Vec<&T> = items.iter().collect();
        sorted.sort_by(|a, b| order(a, b));
        for item in sorted {
            write(self, item);
        }
        self.write_separator();
    }

    /// A map of JSON values: keys sorted; each key as a field, then its value in canonical
    /// JSON as a field unless the value is null (upstream's nil `*apiextensionsv1.JSON`).
    /// No trailing separator, as upstream.
    pub fn write_json_map<'a>(&mut self, map: impl IntoIterator<Item = (&'a String, &'a Value)>) {
        let mut entries: Vec<_> = map.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        for (key, value) in entries {
            self.write_str(key);
            if !value.is_null() {
                self.write_str(&go_canonical_json(value));
            }
        }
    }

    pub fn finish(self) -> [u8; 20] {
        self.sha1.finalize().into()
    }
}

/// The short version string: lowercase hex of the first three bytes of the digest.
pub fn short_version(digest: &[u8; 20]) -> String {
    digest[..3].iter().fold(String::with_capacity(6), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// Serialises JSON compactly as Go's `json.Marshal` does after `json.Unmarshal` into `any`:
/// object keys sorted by bytes, every number a float64 in Go's formatting, and `<`, `>`, `&`,
/// U+2028 and U+2029 escaped. Hand-written because no crate reproduces Go's encoder; serde_json
/// differs in HTML escaping and number formatting.
pub fn go_canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(&mut out, value);
    out
}

fn write_go_json(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_float(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => write_go_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_string(out, key);
                out.push(':');
                write_go_json(out, &map[key]);
            }
            out.push('}');
        }
    }
}

/// Go's `encoding/json` float64 format: shortest round-trip digits, plain notation unless
/// the magnitude is below 1e-6 or at least 1e21, where it uses `e` with a signed exponent of at
/// least one digit (`1e+21`, `1e-7`).
fn go_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let scientific = format!("{f:e}"); // e.g. "1e21", "-1.5e-7"
        match scientific.split_once('e') {
            Some((mantissa, exponent)) if !exponent.starts_with('-') => {
                format!("{mantissa}e+{exponent}")
            }
            _ => scientific,
        }
    } else {
        format!("{f}")
    }
}

fn write_go_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Go's `time.Time.String()` of a UTC instant, as upstream hashes schedule start and end times
/// (`2024-01-01 00:00:00 +0000 UTC`, fractional seconds only when non-zero, trailing zeros
/// trimmed). The upstream controller runs in UTC (its image has no local zone).
pub fn go_time_string(timestamp: &jiff::Timestamp) -> String {
    let utc = timestamp.to_zoned(jiff::tz::TimeZone::UTC);
    let mut text = utc.strftime("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = utc.subsec_nanosecond();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        text.push('.');
        text.push_str(fraction.trim_end_matches('0'));
    }
    text.push_str(" +0000 UTC");
    text
}

/// The tag upstream prefixes a Pipeline's version with: the image reference's tag after Docker
/// normalisation (`latest` when the image names neither tag nor digest), or `None` when the
/// reference does not parse or pins only a digest. Follows `distribution/reference`'s
/// `ParseNormalizedNamed` + `TagNameOnly` grammar; hand-written because the Rust OCI crates
/// normalise differently (they accept uppercase repositories, for one).
pub fn docker_image_tag(image: &str) -> Option<String> {
    static IDENTIFIER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-f0-9]{64}$").expect("static pattern"));
    static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
        let component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
        let host = format!(r"(?:{component}(?:\.{component})*|\[[a-fA-F0-9:]+\])");
        let domain = format!(r"{host}(?::[0-9]+)?");
        let path_component = r"[a-z0-9]+(?:(?:[_.]|__|-+)[a-z0-9]+)*";
        let tag = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}";
        let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
        Regex::new(&format!(r"^((?:{domain}/)?{path_component}(?:/{path_component})*)(?::({tag}))?(?:@({digest}))?$"))
            .expect("static pattern")
    });
    const NAME_TOTAL_LENGTH_MAX: usize = 255;

    if IDENTIFIER.is_match(image) {
        return None;
    }
    let (domain, mut remainder) = split_docker_domain(image);
    let remote_name = remainder.split(':').next().unwrap_or_default();
    if remote_name.to_lowercase() != remote_name {
        return None;
    }
    if domain == "docker.io" && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    let full = format!("{domain}/{remainder}");
    let captures = REFERENCE.captures(&full)?;
    if captures[1].len() > NAME_TOTAL_LENGTH_MAX {
        return None;
    }
    if let Some(digest) = captures.get(3)
        && !is_supported_digest(digest.as_str())
    {
        return None;
    }
    match (captures.get(2), captures.get(3)) {
        (Some(tag), _) => Some(tag.as_str().to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_owned()),
    }
}

/// `splitDockerDomain`: the first path segment is a registry only if it looks like a host.
fn split_docker_domain(name: &str) -> (String, String) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first => {
            (first.to_owned(), rest.to_owned())
        }
        _ => ("docker.io".to_owned(), name.to_owned()),
    }
}

/// go-digest only accepts registered algorithms with their exact lowercase hex length.
fn is_supported_digest(digest: &str) -> bool {
    let Some((algorithm, encoded)) = digest.split_once(':') else {
        return false;
    };
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return false,
    };
    encoded.len() == expected_len && encoded.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_nul_separated() {
        let mut hasher = ObjectHasher::new();
        hasher.write_str("a");
        hasher.write_str("");
        let mut expected = Sha1::new();
        expected.update(b"a\0\0");
        assert_eq!(hasher.finish(), <[u8; 20]>::from(expected.finalize()));
    }

    #[test]
    fn short_version_is_six_hex_chars() {
        let digest = [0xab, 0x01, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(short_version(&digest), "ab01ff");
    }

    #[test]
    fn canonical_json_matches_go() {
        assert_eq!(go_canonical_json(&json!({"b": 1, "a": [true, null]})), r#"{"a":[true,null],"b":1}"#);
        assert_eq!(go_canonical_json(&json!("<a&b>")), r#""\u003ca\u0026b\u003e""#);
        assert_eq!(go_canonical_json(&json!("\u{2028}\u{1}\u{8}\u{c}\u{7f}é")), "\"\\u2028\\u0001\\b\\f\u{7f}é\"");
        assert_eq!(go_canonical_json(&json!(1.0)), "1");
        assert_eq!(go_canonical_json(&json!(1.5)), "1.5");
        assert_eq!(go_canonical_json(&json!(-0.000001)), "-0.000001");
        assert_eq!(go_canonical_json(&json!(0.0000001)), "1e-7");
        assert_eq!(go_canonical_json(&json!(1e20)), "100000000000000000000");
        assert_eq!(go_canonical_json(&json!(1e21)), "1e+21");
        assert_eq!(go_canonical_json(&json!(123456789012345678u64)), "123456789012345680");
        let parsed: Value = serde_json::from_str("1.2345678901234567e300").unwrap();
        assert_eq!(go_canonical_json(&parsed), "1.2345678901234567e+300");
    }

    #[test]
    fn go_time_format() {
        let t: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(go_time_string(&t), "2024-01-01 00:00:00 +0000 UTC");
        let t: jiff::Timestamp = "2024-03-05T10:11:12.5+01:00".parse().unwrap();
        assert_eq!(go_time_string(&t), "2024-03-05 09:11:12.5 +0000 UTC");
    }

    /// Every case was checked against `github.com/distribution/reference` v0.6.0 with sha256
    /// registered (as in the upstream operator binary).
    #[test]
    fn image_tags_follow_docker_normalisation() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let cases: Vec<(String, Option<&str>)> = vec![
            ("image".into(), Some("latest")),
            ("image:v1".into(), Some("v1")),
            ("eu.gcr.io/project/image:2.0.1".into(), Some("2.0.1")),
            ("localhost:5000/image".into(), Some("latest")),
            ("localhost:5000/image:dev".into(), Some("dev")),
            ("[::1]:5000/image:dev".into(), Some("dev")),
            (format!("image@{digest}"), None),
            (format!("image:v2@{digest}"), Some("v2")),
            (format!("image@sha256:{}", "A".repeat(64)), None),
            ("image@sha256:abc".into(), None),
            (format!("image@md5:{}", "a".repeat(32)), None),
            ("Image:v1".into(), None),
            ("UPPER/image:v1".into(), Some("v1")),
            ("image:".into(), None),
            ("image:v1:v2".into(), None),
            ("".into(), None),
            ("a".repeat(64), None),
            (format!("{}:v1", "a".repeat(250)), None),
            ("image:-v1".into(), None),
            (format!("image:{}", "t".repeat(129)), None),
            (":".into(), None),
            ("a__b:x".into(), Some("x")),
            ("a___b:x".into(), None),
            ("a--b/c.d_e:t".into(), Some("t")),
            ("a/B:x".into(), None),
            ("host.com:notaport/x:t".into(), None),
            ("docker.io/baz/bar/image:baz".into(), Some("baz")),
        ];
        for (image, tag) in cases {
            assert_eq!(docker_image_tag(&image).as_deref(), tag, "{image}");
        }
    }
}
