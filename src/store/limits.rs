//! The bounds of the replicated stores, checked for local writes (a write over a bound is
//! refused with a message naming it, and nothing already stored changes) and for everything
//! from the network (dropped and counted).
//!
//! Store names are 1-64 ASCII letters, digits and `-_.`; keys and set members 1-256 characters
//! of any UTF-8 but control characters; values JSON of at most 64 KiB. Every node should run with the same bounds: a node with a
//! smaller `--store-max-bytes` refuses what the others hold, and stays behind (counted).

use std::fmt;

/// Characters allowed in store names besides ASCII letters and digits.
pub const STORE_NAME_PUNCTUATION: &str = "-_.";

/// The bounds, with their defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most stores.
    pub max_stores: usize,
    /// Most keys in one store, deleted ones still remembered included.
    pub max_keys_per_store: usize,
    /// Longest store name, in bytes.
    pub max_store_name_bytes: usize,
    /// Longest key, in characters (so at most four times as many bytes).
    pub max_key_chars: usize,
    /// Longest `lww` value (its JSON text), in bytes.
    pub max_value_bytes: usize,
    /// Longest set member, in characters.
    pub max_member_chars: usize,
    /// Largest state of one key (its encoding: a set with many members, a counter written by
    /// many process lifetimes), in bytes.
    pub max_entry_bytes: usize,
    /// Most bytes of all stores of this node together (`--store-max-bytes`).
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        StoreLimits {
            max_stores: 64,
            max_keys_per_store: 100_000,
            max_store_name_bytes: 64,
            max_key_chars: 256,
            max_value_bytes: 64 * 1024,
            max_member_chars: 256,
            max_entry_bytes: 256 * 1024,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Which bound a write broke.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    /// The number of stores.
    Stores,
    /// The number of keys in a store.
    KeysPerStore,
    /// A store name's length.
    StoreName,
    /// A key's length.
    Key,
    /// An `lww` value's length.
    Value,
    /// A set member's length.
    Member,
    /// A writer's (replica's) name length, from the network.
    Writer,
    /// One key's whole state.
    Entry,
    /// All stores of this node together (`--store-max-bytes`).
    TotalBytes,
}

impl Bound {
    /// The bound's name as the API and the `reason` label of the refusal counter show it.
    pub fn as_str(&self) -> &'static str {
        match self {
            Bound::Stores => "stores",
            Bound::KeysPerStore => "keys_per_store",
            Bound::StoreName => "store_name",
            Bound::Key => "key",
            Bound::Value => "value",
            Bound::Member => "member",
            Bound::Writer => "writer",
            Bound::Entry => "entry",
            Bound::TotalBytes => "store_max_bytes",
        }
    }
}

/// Why a write or an entry from the network is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreLimitError {
    /// Over a bound: `len` against `max`.
    Over {
        /// The bound.
        bound: Bound,
        /// The size (or count) it would reach.
        len: usize,
        /// The bound's value.
        max: usize,
    },
    /// An empty store name, key or member.
    Empty(&'static str),
    /// A character not allowed where it stands.
    BadChar {
        /// Where.
        what: &'static str,
        /// The first offending character.
        found: char,
    },
    /// An `lww` value that is not JSON.
    NotJson(String),
    /// A store the daemon keeps itself (its name), not writable through the API.
    Reserved(&'static str),
}

impl StoreLimitError {
    /// True when the write is refused for what it would hold (a value, a key's state, the
    /// store or node growing past a bound: HTTP 413); false for a malformed name, key, member
    /// or value, too long ones included (HTTP 400).
    pub fn is_size(&self) -> bool {
        match self {
            StoreLimitError::Over { bound, .. } => matches!(
                bound,
                Bound::Stores
                    | Bound::KeysPerStore
                    | Bound::Value
                    | Bound::Entry
                    | Bound::TotalBytes
            ),
            _ => false,
        }
    }

    /// The bound or check that refused it, for the refusal counter.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreLimitError::Over { bound, .. } => bound.as_str(),
            StoreLimitError::Empty(_)
            | StoreLimitError::BadChar { .. }
            | StoreLimitError::Reserved(_) => "invalid",
            StoreLimitError::NotJson(_) => "not_json",
        }
    }
}

impl fmt::Display for StoreLimitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLimitError::Over { bound, len, max } => {
                let what = match bound {
                    Bound::Stores => return write!(f, "{len} stores; the limit is {max}"),
                    Bound::KeysPerStore => {
                        return write!(f, "{len} keys in the store; the limit is {max}")
                    }
                    Bound::Key => return write!(f, "key is {len} characters; the limit is {max}"),
                    Bound::Member => {
                        return write!(f, "set member is {len} characters; the limit is {max}")
                    }
                    Bound::StoreName => "store name",
                    Bound::Value => "value",
                    Bound::Writer => "writer name",
                    Bound::Entry => "the key's whole state",
                    Bound::TotalBytes => {
                        return write!(
                            f,
                            "the stores would hold {len} bytes; the limit is {max} \
                             (--store-max-bytes)"
                        )
                    }
                };
                write!(f, "{what} is {len} bytes; the limit is {max}")
            }
            StoreLimitError::Empty(what) => write!(f, "{what} must not be empty"),
            StoreLimitError::BadChar { what, found } => {
                let allowed = if *what == "store name" {
                    format!("ASCII letters, digits and {STORE_NAME_PUNCTUATION}")
                } else {
                    "any character but control characters".to_string()
                };
                write!(f, "{what} contains {found:?}; allowed: {allowed}")
            }
            StoreLimitError::NotJson(e) => write!(f, "value is not JSON: {e}"),
            StoreLimitError::Reserved(store) => write!(
                f,
                "store {store} is written by meshd itself; write to another store"
            ),
        }
    }
}

impl std::error::Error for StoreLimitError {}

impl StoreLimits {
    /// A store name: 1 to `max_store_name_bytes` ASCII letters, digits and `-_.`.
    pub fn check_store_name(&self, name: &str) -> Result<(), StoreLimitError> {
        if name.is_empty() {
            return Err(StoreLimitError::Empty("store name"));
        }
        over(Bound::StoreName, name.len(), self.max_store_name_bytes)?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || STORE_NAME_PUNCTUATION.contains(c);
        match name.chars().find(|c| !allowed(*c)) {
            Some(found) => Err(StoreLimitError::BadChar {
                what: "store name",
                found,
            }),
            None => Ok(()),
        }
    }

    /// A key: 1 to `max_key_chars` characters, none a control character.
    pub fn check_key(&self, key: &str) -> Result<(), StoreLimitError> {
        text("key", key)?;
        over(Bound::Key, key.chars().count(), self.max_key_chars)
    }

    /// A set member: 1 to `max_member_chars` characters, none a control character.
    pub fn check_member(&self, member: &str) -> Result<(), StoreLimitError> {
        text("set member", member)?;
        over(Bound::Member, member.chars().count(), self.max_member_chars)
    }

    /// An `lww` value: JSON text of at most `max_value_bytes`.
    pub fn check_value(&self, json: &[u8]) -> Result<(), StoreLimitError> {
        over(Bound::Value, json.len(), self.max_value_bytes)?;
        serde_json::from_slice::<serde::de::IgnoredAny>(json)
            .map(drop)
            .map_err(|e| StoreLimitError::NotJson(e.to_string()))
    }

    /// A replica or writer name from the network (in stamps and counter parts): a member name
    /// and a start time, printable, at most 160 bytes.
    pub fn check_writer(&self, writer: &str) -> Result<(), StoreLimitError> {
        text("writer", writer)?;
        over(Bound::Writer, writer.len(), MAX_WRITER_BYTES)
    }
}

/// Longest writer (replica) name: a member name (128 bytes) plus `@` and a start time.
pub const MAX_WRITER_BYTES: usize = 160;

/// `Err` when `len` is over `max` for `bound`.
pub fn over(bound: Bound, len: usize, max: usize) -> Result<(), StoreLimitError> {
    if len > max {
        Err(StoreLimitError::Over { bound, len, max })
    } else {
        Ok(())
    }
}

fn text(what: &'static str, s: &str) -> Result<(), StoreLimitError> {
    if s.is_empty() {
        return Err(StoreLimitError::Empty(what));
    }
    match s.chars().find(|c| c.is_control()) {
        Some(found) => Err(StoreLimitError::BadChar { what, found }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keys_members_and_values_are_checked_with_clear_messages() {
        let limits = StoreLimits::default();
        assert!(limits.check_store_name("rate-limits_v2.eu").is_ok());
        let cases: Vec<(Result<(), StoreLimitError>, &str)> = vec![
            (limits.check_store_name(""), "store name must not be empty"),
            (
                limits.check_store_name("a/b"),
                "store name contains '/'; allowed: ASCII letters, digits and -_.",
            ),
            (
                limits.check_key(&"k".repeat(257)),
                "key is 257 characters; the limit is 256",
            ),
            (
                limits.check_member("a\nb"),
                "set member contains '\\n'; allowed: any character but control characters",
            ),
            (
                limits.check_value(b"{\"a\":"),
                "value is not JSON: EOF while parsing a value at line 1 column 5",
            ),
            (
                limits.check_value(&vec![b' '; 65 * 1024]),
                "value is 66560 bytes; the limit is 65536",
            ),
        ];
        for (result, message) in cases {
            assert_eq!(result.map_err(|e| e.to_string()), Err(message.to_string()));
        }
        assert!(limits.check_key("tenant/42 ü").is_ok());
        assert!(limits.check_value(b"[1, \"two\", {\"3\": null}]").is_ok());
    }

    #[test]
    fn size_errors_are_told_apart_from_malformed_input() {
        let limits = StoreLimits::default();
        let big = limits.check_value(&vec![b'1'; 70_000]).unwrap_err();
        assert!(big.is_size());
        assert_eq!(big.reason(), "value");
        let long = limits.check_key(&"k".repeat(300)).unwrap_err();
        assert!(
            !long.is_size(),
            "a long key is a malformed request, not a large one"
        );
        assert_eq!(long.reason(), "key");
        let bad = limits.check_key("").unwrap_err();
        assert!(!bad.is_size());
        assert_eq!(bad.reason(), "invalid");
    }
}
