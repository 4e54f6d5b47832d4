//! The keyring file (`--keyring-file`): a JSON list of base64 keys, the first one primary,
//! written back atomically with mode 0600 whenever the keyring changes.
//!
//! ```json
//! ["dGhpcyBpcyBub3QgYSByZWFsIGtleSwganVzdCBzaXplPQ==", "…"]
//! ```

use std::fmt;
use std::io::Write;
use std::path::Path;

use super::{Key, KeyError, Keyring, KeyringError, MAX_KEYS};

/// Largest keyring file read: far above [`MAX_KEYS`] keys of 44 characters each, far below
/// anything that could hurt to read.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// Why a keyring file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileError {
    /// Larger than [`MAX_FILE_BYTES`].
    TooLarge(usize),
    /// Not a JSON list of strings.
    NotAList(String),
    /// Entry `index` (0-based) is not a key.
    BadKey {
        /// Position in the list.
        index: usize,
        /// What is wrong with it.
        error: KeyError,
    },
    /// The keys do not make a keyring (none, or too many).
    Keyring(KeyringError),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::TooLarge(n) => {
                write!(
                    f,
                    "is {n} bytes; a keyring file is at most {MAX_FILE_BYTES}"
                )
            }
            FileError::NotAList(e) => write!(
                f,
                "is not a JSON list of base64 keys (like [\"<key>\", \"<key>\"]): {e}"
            ),
            FileError::BadKey { index, error } => write!(f, "entry {}: {error}", index + 1),
            FileError::Keyring(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FileError {}

/// Reads a keyring file's contents.
pub fn parse(bytes: &[u8]) -> Result<Keyring, FileError> {
    if bytes.len() > MAX_FILE_BYTES {
        return Err(FileError::TooLarge(bytes.len()));
    }
    let entries: Vec<String> =
        serde_json::from_slice(bytes).map_err(|e| FileError::NotAList(e.to_string()))?;
    if entries.len() > MAX_KEYS {
        return Err(FileError::Keyring(KeyringError::TooMany(entries.len())));
    }
    let keys = entries
        .iter()
        .enumerate()
        .map(|(index, text)| {
            Key::from_base64(text).map_err(|error| FileError::BadKey { index, error })
        })
        .collect::<Result<Vec<Key>, FileError>>()?;
    Keyring::new(keys).map_err(FileError::Keyring)
}

/// A keyring file's contents for `keyring`: one key per line, primary first.
pub fn format(keyring: &Keyring) -> String {
    let lines: Vec<String> = keyring
        .keys()
        .iter()
        .map(|k| format!("  \"{}\"", k.to_base64()))
        .collect();
    format!("[\n{}\n]\n", lines.join(",\n"))
}

/// Reads the keyring file at `path`; errors name the file.
pub fn load(path: &Path) -> Result<Keyring, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read keyring file {}: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("keyring file {} {e}", path.display()))
}

/// Writes `keyring` to `path` atomically: a temporary file beside it (mode 0600, synced),
/// renamed over it, so a crash leaves either the old file or the new one, never half of one.
pub fn store(path: &Path, keyring: &Keyring) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| {
        format!("cannot {what} keyring file {}: {e}", path.display())
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options.open(&tmp).and_then(|mut file| {
        file.write_all(format(keyring).as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("replace", e));
    }
    // The rename is durable once the directory is synced; a failure here loses nothing now.
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::KEY_BYTES;

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; KEY_BYTES])
    }

    #[test]
    fn format_then_parse_is_the_identity() {
        let ring = Keyring::new(vec![key(1), key(2), key(3)]).expect("keyring");
        assert_eq!(parse(format(&ring).as_bytes()), Ok(ring));
    }

    #[test]
    fn bad_files_table() {
        let good = key(1).to_base64();
        let too_many: Vec<String> = (0..=MAX_KEYS as u8).map(|b| key(b).to_base64()).collect();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty file", b"".to_vec(), "not a JSON list"),
            ("object", br#"{"keys": []}"#.to_vec(), "not a JSON list"),
            ("numbers", b"[1, 2]".to_vec(), "not a JSON list"),
            ("empty list", b"[]".to_vec(), "at least one key"),
            (
                "second entry bad",
                format!("[\"{good}\", \"no key!\"]").into_bytes(),
                "entry 2: a key must be base64",
            ),
            (
                "short key",
                b"[\"AAAA\"]".to_vec(),
                "entry 1: a key must be 32 bytes, this one decodes to 3",
            ),
            (
                "too many",
                serde_json::to_vec(&too_many).expect("json"),
                "at most 8",
            ),
            ("huge", vec![b' '; MAX_FILE_BYTES + 1], "at most 65536"),
            ("not utf-8", vec![b'[', 0xff, b']'], "not a JSON list"),
        ];
        for (what, bytes, needle) in cases {
            let err = parse(&bytes).expect_err(what).to_string();
            assert!(err.contains(needle), "{what}: {err}");
        }
    }

    #[test]
    fn store_writes_atomically_with_mode_0600_and_load_reads_it_back() {
        let dir = std::env::temp_dir().join(format!("meshd-keyring-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("keyring.json");
        let ring = Keyring::new(vec![key(4), key(5)]).expect("keyring");
        store(&path, &ring).expect("stored");
        assert_eq!(load(&path), Ok(ring.clone()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let next = ring.using(&key(5)).expect("use");
        store(&path, &next).expect("replaced");
        assert_eq!(load(&path), Ok(next));
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != "keyring.json")
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
        let missing = load(&dir.join("absent.json")).expect_err("missing file");
        assert!(missing.contains("absent.json"), "{missing}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
