//! Limits on what a member may say about itself, and the one validation every path uses: the
//! codec for everything from the network, the core for this node's own identity (at start and
//! on every metadata change), and through the core the CLI and the API.
//!
//! The limits keep every member's ALIVE fact small enough to ride in one datagram with room to
//! spare (a name, an address, region, zone and tags: at most ~1,100 bytes encoded, in a 1,400
//! byte datagram), so no valid member can ever be unannounceable, and they keep names safe to
//! print: a name, region, zone or tag key is plain ASCII without spaces or control bytes, a
//! tag value any UTF-8 without control characters.

use std::collections::BTreeMap;
use std::fmt;

use super::NodeMeta;

/// Longest member name, in bytes (also the longest accuser and ping target).
pub const MAX_NAME_BYTES: usize = 128;
/// Longest region or zone label, in bytes.
pub const MAX_LABEL_BYTES: usize = 64;
/// Most tags on one member.
pub const MAX_TAGS: usize = 32;
/// Longest tag key, in bytes.
pub const MAX_TAG_KEY_BYTES: usize = 64;
/// Longest tag value, in bytes.
pub const MAX_TAG_VALUE_BYTES: usize = 256;
/// Most bytes of all tag keys and values of one member together.
pub const MAX_TAG_TOTAL_BYTES: usize = 512;
/// Highest incarnation anyone may claim. Far below `u64::MAX`, so a member can always refute
/// (outbid) whatever is said about it; at a thousand refutations a second it lasts 9,000 years.
pub const MAX_INCARNATION: u64 = 1 << 48;

/// Largest rise of a member's incarnation believed in one fact. Honest members raise it by one
/// per refutation or metadata change; a fact claiming a rise of more is a forgery (or a bug) and
/// is refused, so the ceiling above cannot be reached in a few datagrams.
pub const MAX_INCARNATION_JUMP: u64 = 1 << 20;

/// Characters allowed in names, regions, zones and tag keys besides ASCII letters and digits.
pub const NAME_PUNCTUATION: &str = "-_.:@";
/// Tag keys may also hold `/` (as in Kubernetes label keys: `app.kubernetes.io/name`).
const TAG_KEY_PUNCTUATION: &str = "-_.:@/";

/// Which value broke a limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    /// A member name.
    Name,
    /// The region label.
    Region,
    /// The zone label.
    Zone,
    /// The key of a tag.
    TagKey,
    /// The value of the tag with this key.
    TagValue(String),
    /// The number of tags.
    TagCount,
    /// All tag keys and values together.
    TagTotal,
    /// The cluster label (`--cluster-label`).
    ClusterLabel,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Field::Name => write!(f, "member name"),
            Field::Region => write!(f, "region"),
            Field::Zone => write!(f, "zone"),
            Field::TagKey => write!(f, "tag key"),
            Field::TagValue(key) => write!(f, "value of tag {}", Escaped(key)),
            Field::TagCount => write!(f, "number of tags"),
            Field::TagTotal => write!(f, "tags (keys and values together)"),
            Field::ClusterLabel => write!(f, "cluster label"),
        }
    }
}

/// A value that breaks a limit; its message names the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitError {
    /// Longer (or more) than allowed: `len` against `max`.
    TooLong {
        /// What was too long.
        field: Field,
        /// Its length in bytes (or its count).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Empty where a value is required.
    Empty(Field),
    /// Holds a character outside the allowed set.
    BadChar {
        /// Where.
        field: Field,
        /// The first offending character.
        found: char,
    },
}

impl fmt::Display for LimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitError::TooLong { field, len, max } => match field {
                Field::TagCount => write!(f, "{len} tags given; the limit is {max}"),
                _ => write!(f, "{field} is {len} bytes; the limit is {max}"),
            },
            LimitError::Empty(field) => write!(f, "{field} must not be empty"),
            LimitError::BadChar { field, found } => {
                let allowed = match field {
                    Field::TagValue(_) => "any character but control characters".to_string(),
                    Field::TagKey => format!("ASCII letters, digits and {TAG_KEY_PUNCTUATION}"),
                    _ => format!("ASCII letters, digits and {NAME_PUNCTUATION}"),
                };
                write!(f, "{field} contains {found:?}; allowed: {allowed}")
            }
        }
    }
}

impl std::error::Error for LimitError {}

/// Checks a member name: 1 to [`MAX_NAME_BYTES`] of ASCII letters, digits and
/// [`NAME_PUNCTUATION`].
pub fn check_name(name: &str) -> Result<(), LimitError> {
    if name.is_empty() {
        return Err(LimitError::Empty(Field::Name));
    }
    check_len(Field::Name, name.len(), MAX_NAME_BYTES)?;
    check_chars(Field::Name, name, NAME_PUNCTUATION)
}

/// Checks region, zone and tags against every limit above.
pub fn check_meta(meta: &NodeMeta) -> Result<(), LimitError> {
    check_label(Field::Region, &meta.region)?;
    check_label(Field::Zone, &meta.zone)?;
    check_tags(&meta.tags)
}

/// Checks a tag set: at most [`MAX_TAGS`], each key 1 to [`MAX_TAG_KEY_BYTES`] of ASCII
/// letters, digits and `-_.:@/`, each value at most [`MAX_TAG_VALUE_BYTES`] without control
/// characters, at most [`MAX_TAG_TOTAL_BYTES`] in all.
pub fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), LimitError> {
    check_len(Field::TagCount, tags.len(), MAX_TAGS)?;
    let mut total = 0usize;
    for (key, value) in tags {
        if key.is_empty() {
            return Err(LimitError::Empty(Field::TagKey));
        }
        check_len(Field::TagKey, key.len(), MAX_TAG_KEY_BYTES)?;
        check_chars(Field::TagKey, key, TAG_KEY_PUNCTUATION)?;
        let value_field = || Field::TagValue(key.clone());
        check_len(value_field(), value.len(), MAX_TAG_VALUE_BYTES)?;
        if let Some(found) = value.chars().find(|c| c.is_control()) {
            return Err(LimitError::BadChar {
                field: value_field(),
                found,
            });
        }
        total += key.len() + value.len();
    }
    check_len(Field::TagTotal, total, MAX_TAG_TOTAL_BYTES)
}

/// Checks a cluster label: empty, or up to [`MAX_NAME_BYTES`] of the name characters.
pub fn check_cluster_label(label: &str) -> Result<(), LimitError> {
    check_len(Field::ClusterLabel, label.len(), MAX_NAME_BYTES)?;
    check_chars(Field::ClusterLabel, label, NAME_PUNCTUATION)
}

/// A region or zone: empty, or up to [`MAX_LABEL_BYTES`] of the name characters.
fn check_label(field: Field, label: &str) -> Result<(), LimitError> {
    check_len(field.clone(), label.len(), MAX_LABEL_BYTES)?;
    check_chars(field, label, NAME_PUNCTUATION)
}

fn check_len(field: Field, len: usize, max: usize) -> Result<(), LimitError> {
    if len > max {
        Err(LimitError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_chars(field: Field, s: &str, punctuation: &str) -> Result<(), LimitError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || punctuation.contains(c);
    match s.chars().find(|c| !allowed(*c)) {
        Some(found) => Err(LimitError::BadChar { field, found }),
        None => Ok(()),
    }
}

/// Displays a string from the network with control and non-ASCII characters escaped (Rust's
/// `escape_debug`), so nothing a peer sends can forge a log line or drive a terminal.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_ascii_graphic() || c == ' ' {
                write!(f, "{c}")?;
            } else {
                write!(f, "{}", c.escape_default())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_table() {
        let long = "n".repeat(MAX_NAME_BYTES);
        let too_long = "n".repeat(MAX_NAME_BYTES + 1);
        let cases: &[(&str, bool)] = &[
            ("node1", true),
            ("Mesh_aB3x", true),
            ("meshd-0.meshd.mesh.svc:7000", true),
            ("gw@eu", true),
            (&long, true),
            ("", false),
            (&too_long, false),
            ("a b", false),
            ("evil\nINFO forged line", false),
            ("\u{1b}[31mred", false),
            ("naïve", false),
            ("a/b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(check_name(name).is_ok(), *ok, "{name:?}");
        }
    }

    #[test]
    fn meta_table() {
        let meta = |region: &str, zone: &str, t: BTreeMap<String, String>| NodeMeta {
            region: region.into(),
            zone: zone.into(),
            tags: t,
        };
        let many: BTreeMap<String, String> = (0..=MAX_TAGS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        let big: BTreeMap<String, String> =
            (0..3).map(|i| (format!("k{i}"), "v".repeat(200))).collect();
        let cases = [
            (meta("", "", BTreeMap::new()), Ok(())),
            (
                meta(
                    "eu-west",
                    "eu-west-1a",
                    tags(&[("app.kubernetes.io/name", "gw")]),
                ),
                Ok(()),
            ),
            (
                meta("", "", tags(&[("url", "http://10.0.0.1:8080/v1?a=b c")])),
                Ok(()),
            ),
            (
                meta(&"r".repeat(MAX_LABEL_BYTES + 1), "", BTreeMap::new()),
                Err(LimitError::TooLong {
                    field: Field::Region,
                    len: MAX_LABEL_BYTES + 1,
                    max: MAX_LABEL_BYTES,
                }),
            ),
            (
                meta("", "z one", BTreeMap::new()),
                Err(LimitError::BadChar {
                    field: Field::Zone,
                    found: ' ',
                }),
            ),
            (
                meta("", "", tags(&[("", "v")])),
                Err(LimitError::Empty(Field::TagKey)),
            ),
            (
                meta("", "", tags(&[("k", "line\nbreak")])),
                Err(LimitError::BadChar {
                    field: Field::TagValue("k".into()),
                    found: '\n',
                }),
            ),
            (
                meta("", "", many),
                Err(LimitError::TooLong {
                    field: Field::TagCount,
                    len: MAX_TAGS + 1,
                    max: MAX_TAGS,
                }),
            ),
            (
                meta("", "", big),
                Err(LimitError::TooLong {
                    field: Field::TagTotal,
                    len: 606,
                    max: MAX_TAG_TOTAL_BYTES,
                }),
            ),
        ];
        for (meta, want) in cases {
            assert_eq!(check_meta(&meta), want, "{meta:?}");
        }
    }

    #[test]
    fn messages_name_the_limit_and_escape_the_value() {
        let err = check_name(&"n".repeat(200)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "member name is 200 bytes; the limit is 128"
        );
        let err = check_tags(&tags(&[("k\u{1b}", "v")])).unwrap_err();
        assert!(err.to_string().contains("'\\u{1b}'"), "{err}");
        let err = check_tags(&tags(&[("ok", "\u{7}")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "value of tag ok contains '\\u{7}'; allowed: any character but control characters"
        );
    }

    #[test]
    fn escaped_keeps_printable_ascii_and_escapes_the_rest() {
        assert_eq!(Escaped("node-1 ok").to_string(), "node-1 ok");
        assert_eq!(
            Escaped("a\nINFO x\u{1b}[2J").to_string(),
            "a\\nINFO x\\u{1b}[2J"
        );
        assert_eq!(Escaped("é").to_string(), "\\u{e9}");
    }
}
