//! Sealing: every SWIM datagram encrypted and authenticated with the cluster keyring.
//!
//! A sealed datagram is `[SEALED_VERSION] sent_at(4) random(8) ciphertext tag(16)`: the plain
//! datagram (header byte and envelope, as the core builds it) encrypted with ChaCha20-Poly1305
//! (RFC 8439, RustCrypto's `chacha20poly1305`) under the primary key. Its 96-bit nonce is the
//! send time (seconds) followed by 64 fresh random bits, so it never repeats under a key (a
//! repeat would need two of 2^64 draws to meet within one second) and the time costs no extra
//! byte; the header byte and the cluster label are associated data, so a datagram of another
//! cluster (another label) does not open even under the same key. Opening
//! tries every installed key, so members that share at least one key always understand each
//! other while a new key is being rolled out. A datagram sealed under another key than the
//! sender's primary starts with [`SEALED_IN_KIND`] instead (authenticated like the rest).
//!
//! Replays: a datagram older than [`REPLAY_WINDOW_SECS`] (by the receiver's clock, which must
//! be within that of the sender's) does not open. Within the window a replayed fact is stale
//! by incarnation: its subject refuted it, left, or was declared DOWN since, and is still
//! listed (DOWN and LEAVING members stay listed for `--retention`, 10 minutes, longer than the
//! window), so the precedence rule ignores it. Together they mean a captured datagram cannot
//! make anyone SUSPECTED, DOWN or LEAVING later, nor bring back a member that was forgotten.
//!
//! Pure functions over bytes: the caller supplies the nonce (from an OS-seeded CSPRNG in the
//! runtime, from the seeded RNG in the simulator) and the time, so the same code serves both.

pub mod file;

use std::fmt;

use base64::Engine;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};

/// Header byte of a sealed datagram. Its 0x40 bit is clear (it is not QUIC) and it differs from
/// [`crate::swim::codec::WIRE_VERSION`], so a node without a key drops sealed datagrams as an
/// unknown version and a node with one can tell plain datagrams apart.
pub const SEALED_VERSION: u8 = 0x02;

/// Header byte of a datagram sealed, not under the sender's primary key, but in the key the
/// receiver last spoke (a peer a rotation has not reached yet). The receiver does not take it
/// as the sender's choice: two members that both answered in the key the other spoke would
/// otherwise keep an old key between them forever, and lose datagrams when it is removed.
pub const SEALED_IN_KIND: u8 = 0x03;
/// Bytes of the send time (seconds since the Unix epoch, big-endian): the nonce's first part.
pub const STAMP_BYTES: usize = 4;
/// Random bytes of the nonce, drawn fresh for each sealed datagram: the nonce's second part.
pub const NONCE_BYTES: usize = 8;
/// Bytes of the Poly1305 authentication tag.
pub const TAG_BYTES: usize = 16;
/// Bytes sealing adds to a datagram: header, send time, random nonce bytes and tag.
pub const OVERHEAD: usize = 1 + STAMP_BYTES + NONCE_BYTES + TAG_BYTES;
/// A sealed datagram whose send time is further than this from the receiver's clock does not
/// open (see the module docs). Shorter than the default `--retention` (600 s).
pub const REPLAY_WINDOW_SECS: u32 = 300;
/// Bytes of a key.
pub const KEY_BYTES: usize = 32;
/// Most keys a keyring holds: rotation needs two or three; more is a mistake, and every extra
/// key is one more decryption attempt per datagram that opens under none. (All of them must
/// also fit the server name of a TLS handshake, see `runtime::tls`.)
pub const MAX_KEYS: usize = 8;

/// A 32-byte cluster key. Its `Debug` shows only its [`KeyId`], never the key.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key([u8; KEY_BYTES]);

/// A short public name for a key (8 bytes of HMAC-SHA256 under the key): tells keys apart in
/// lists and the TLS handshake without revealing anything about them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

/// Why a key could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// Not valid base64.
    NotBase64,
    /// Decodes to this many bytes instead of 32.
    WrongLength(usize),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NotBase64 => write!(f, "a key must be base64 (as `meshd keygen` prints)"),
            KeyError::WrongLength(n) => {
                write!(
                    f,
                    "a key must be {KEY_BYTES} bytes, this one decodes to {n}"
                )
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl Key {
    /// The key made of these bytes.
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> Self {
        Key(bytes)
    }

    /// Reads a base64 key (standard alphabet, padded; surrounding whitespace ignored).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| KeyError::NotBase64)?;
        let bytes: [u8; KEY_BYTES] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongLength(bytes.len()))?;
        Ok(Key(bytes))
    }

    /// The key in base64, as `meshd keygen` prints it and the keyring file stores it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    /// The raw bytes, for deriving other secrets from the key.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }

    /// This key's public name.
    pub fn id(&self) -> KeyId {
        let tag = self.derive(b"meshd key id v1");
        let mut id = [0u8; 8];
        id.copy_from_slice(&tag[..8]);
        KeyId(id)
    }

    /// A secret derived from the key for one purpose (HMAC-SHA256 keyed with it over
    /// `context`): the same key and context always give the same 32 bytes.
    pub fn derive(&self, context: &[u8]) -> [u8; 32] {
        let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0);
        let tag = ring::hmac::sign(&mac, context);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.id())
    }
}

impl KeyId {
    /// The id made of these bytes (as carried on the wire).
    pub fn from_bytes(bytes: [u8; 8]) -> Self {
        KeyId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a keyring change is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyringError {
    /// A keyring needs at least one key.
    Empty,
    /// More than [`MAX_KEYS`] keys.
    TooMany(usize),
    /// The key is not installed (for `use` and `remove`).
    NotInstalled(KeyId),
    /// The primary key cannot be removed; make another key primary first.
    RemovePrimary(KeyId),
}

impl fmt::Display for KeyringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyringError::Empty => write!(f, "a keyring needs at least one key"),
            KeyringError::TooMany(n) => {
                write!(f, "{n} keys; a keyring holds at most {MAX_KEYS}")
            }
            KeyringError::NotInstalled(id) => {
                write!(f, "key {id} is not installed; install it first")
            }
            KeyringError::RemovePrimary(id) => write!(
                f,
                "key {id} is the primary key and cannot be removed; make another key primary \
                 first (`meshd keys use`)"
            ),
        }
    }
}

impl std::error::Error for KeyringError {}

/// Why a datagram did not open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// A plain (unsealed) datagram, or one of an unknown format: this node requires sealing.
    NotSealed,
    /// Too short to hold a nonce and a tag.
    Truncated,
    /// No installed key opens it (another key or label, or tampered with).
    Unauthenticated,
    /// It opens, but was sealed more than [`REPLAY_WINDOW_SECS`] from now: replayed, or the
    /// clocks are that far apart. The signed difference, receiver minus sender, in seconds.
    Stale(i64),
}

/// The installed keys, the first one primary, each with its id and cipher ready.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<Key>,
    ids: Vec<KeyId>,
    ciphers: Vec<ChaCha20Poly1305>,
}

/// A datagram that opened: the plain bytes, and the key that opened them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// The plain datagram (header byte and envelope).
    pub plain: Vec<u8>,
    /// The key it was sealed with.
    pub key: KeyId,
    /// Sealed in the key we last spoke rather than the sender's primary ([`SEALED_IN_KIND`]).
    pub in_kind: bool,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.keys.iter()).finish()
    }
}

impl PartialEq for Keyring {
    fn eq(&self, other: &Self) -> bool {
        self.keys == other.keys
    }
}

impl Eq for Keyring {}

impl Keyring {
    /// A keyring of `keys`, the first primary; repeated keys are kept once.
    pub fn new(keys: Vec<Key>) -> Result<Self, KeyringError> {
        let mut unique: Vec<Key> = Vec::with_capacity(keys.len());
        for key in keys {
            if !unique.contains(&key) {
                unique.push(key);
            }
        }
        if unique.is_empty() {
            return Err(KeyringError::Empty);
        }
        if unique.len() > MAX_KEYS {
            return Err(KeyringError::TooMany(unique.len()));
        }
        let ciphers = unique
            .iter()
            .map(|k| ChaCha20Poly1305::new(&k.0.into()))
            .collect();
        Ok(Keyring {
            ids: unique.iter().map(Key::id).collect(),
            keys: unique,
            ciphers,
        })
    }

    /// The key datagrams are sealed with.
    pub fn primary(&self) -> &Key {
        // `new` refuses an empty keyring.
        &self.keys[0]
    }

    /// The primary's id, kept from construction (an id costs an HMAC to derive).
    pub fn primary_id(&self) -> KeyId {
        // `new` refuses an empty keyring.
        self.ids[0]
    }

    /// Every installed key, the primary first.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// True when `key` is installed.
    pub fn contains(&self, key: &Key) -> bool {
        self.keys.contains(key)
    }

    /// This keyring with `key` installed as a secondary key (unchanged if it already is).
    pub fn installing(&self, key: Key) -> Result<Self, KeyringError> {
        let mut keys = self.keys.clone();
        keys.push(key);
        Keyring::new(keys)
    }

    /// This keyring with the installed `key` made primary.
    pub fn using(&self, key: &Key) -> Result<Self, KeyringError> {
        if !self.contains(key) {
            return Err(KeyringError::NotInstalled(key.id()));
        }
        let mut keys = vec![key.clone()];
        keys.extend(self.keys.iter().filter(|k| *k != key).cloned());
        Keyring::new(keys)
    }

    /// This keyring without `key`, which must be installed and not primary.
    pub fn removing(&self, key: &Key) -> Result<Self, KeyringError> {
        if !self.contains(key) {
            return Err(KeyringError::NotInstalled(key.id()));
        }
        if self.primary() == key {
            return Err(KeyringError::RemovePrimary(key.id()));
        }
        Keyring::new(self.keys.iter().filter(|k| *k != key).cloned().collect())
    }

    /// Seals a plain datagram under the primary key, stamped `now` (seconds since the Unix
    /// epoch), with `nonce` (fresh from a CSPRNG for every datagram: with the stamp it makes the
    /// AEAD nonce, which must never repeat under one key) and `label` as associated data.
    pub fn seal(
        &self,
        label: &[u8],
        now: u32,
        nonce: [u8; NONCE_BYTES],
        datagram: &[u8],
    ) -> Vec<u8> {
        self.seal_with(0, label, now, nonce, datagram)
    }

    /// Like [`Keyring::seal`], under the installed key `key` instead of the primary (the
    /// primary if `key` is not installed): a node answers a peer in the key the peer spoke,
    /// which the peer certainly holds, while a rotation has not reached it yet.
    pub fn seal_under(
        &self,
        key: &KeyId,
        label: &[u8],
        now: u32,
        nonce: [u8; NONCE_BYTES],
        datagram: &[u8],
    ) -> Vec<u8> {
        let index = self.ids.iter().position(|id| id == key).unwrap_or(0);
        self.seal_with(index, label, now, nonce, datagram)
    }

    /// Seals under the key at `index` (0 is the primary), headed by the byte saying which.
    fn seal_with(
        &self,
        index: usize,
        label: &[u8],
        now: u32,
        nonce: [u8; NONCE_BYTES],
        datagram: &[u8],
    ) -> Vec<u8> {
        let Some(cipher) = self.ciphers.get(index) else {
            return Vec::new();
        };
        let header = if index == 0 {
            SEALED_VERSION
        } else {
            SEALED_IN_KIND
        };
        let mut out = Vec::with_capacity(datagram.len() + OVERHEAD);
        out.push(header);
        out.extend_from_slice(&now.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(datagram);
        let aad = associated_data(header, label);
        let nonce = aead_nonce(now, &nonce);
        let body = &mut out[1 + STAMP_BYTES + NONCE_BYTES..];
        // ChaCha20-Poly1305 refuses only messages of more than 256 GiB.
        match cipher.encrypt_inout_detached(&nonce, &aad, body.into()) {
            Ok(tag) => out.extend_from_slice(&tag),
            Err(_) => out.clear(),
        }
        out
    }

    /// Opens a sealed datagram with whichever installed key seals it, at `now` (seconds since
    /// the Unix epoch); returns the plain datagram and the key that opened it.
    pub fn open(&self, label: &[u8], now: u32, sealed: &[u8]) -> Result<Opened, OpenError> {
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(OpenError::NotSealed);
        };
        if version != SEALED_VERSION && version != SEALED_IN_KIND {
            return Err(OpenError::NotSealed);
        }
        if rest.len() < STAMP_BYTES + NONCE_BYTES + TAG_BYTES {
            return Err(OpenError::Truncated);
        }
        let (stamp, rest) = rest.split_at(STAMP_BYTES);
        let sent = u32::from_be_bytes([stamp[0], stamp[1], stamp[2], stamp[3]]);
        let (random, rest) = rest.split_at(NONCE_BYTES);
        let (body, tag) = rest.split_at(rest.len() - TAG_BYTES);
        let random: [u8; NONCE_BYTES] = random.try_into().map_err(|_| OpenError::Truncated)?;
        let nonce = aead_nonce(sent, &random);
        let tag = Tag::try_from(tag).map_err(|_| OpenError::Truncated)?;
        let aad = associated_data(version, label);
        let mut plain = vec![0u8; body.len()];
        for (cipher, id) in self.ciphers.iter().zip(&self.ids) {
            plain.copy_from_slice(body);
            let opened = cipher.decrypt_inout_detached(&nonce, &aad, (&mut plain[..]).into(), &tag);
            if opened.is_ok() {
                // Judged only once authentic: a forged stamp must not pass for a clock problem.
                let skew = i64::from(now) - i64::from(sent);
                if skew.unsigned_abs() > u64::from(REPLAY_WINDOW_SECS) {
                    return Err(OpenError::Stale(skew));
                }
                return Ok(Opened {
                    plain,
                    key: *id,
                    in_kind: version == SEALED_IN_KIND,
                });
            }
        }
        Err(OpenError::Unauthenticated)
    }
}

/// The header byte and the label: what a sealed datagram authenticates besides its body (and
/// its send time, which is part of the nonce).
fn associated_data(header: u8, label: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + label.len());
    aad.push(header);
    aad.extend_from_slice(label);
    aad
}

/// The 96-bit AEAD nonce: the send time, then the random bytes.
fn aead_nonce(sent: u32, random: &[u8; NONCE_BYTES]) -> Nonce {
    let mut nonce = [0u8; STAMP_BYTES + NONCE_BYTES];
    nonce[..STAMP_BYTES].copy_from_slice(&sent.to_be_bytes());
    nonce[STAMP_BYTES..].copy_from_slice(random);
    Nonce::from(nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed "now": 2026-12-02, in seconds since the epoch.
    const T: u32 = 1_796_169_600;

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; KEY_BYTES])
    }

    fn ring(bytes: &[u8]) -> Keyring {
        Keyring::new(bytes.iter().map(|b| key(*b)).collect()).expect("valid keyring")
    }

    #[test]
    fn seal_then_open_round_trips_and_costs_the_overhead() {
        let ring = ring(&[1, 2]);
        let plain = b"\x01hello swim";
        let sealed = ring.seal(b"prod", T, [7; NONCE_BYTES], plain);
        assert_eq!(sealed.len(), plain.len() + OVERHEAD);
        assert_eq!(sealed[0], SEALED_VERSION);
        assert!(!sealed.windows(5).any(|w| w == b"hello"), "encrypted");
        assert_eq!(
            ring.open(b"prod", T, &sealed).map(|o| o.plain).as_deref(),
            Ok(&plain[..])
        );
    }

    #[test]
    fn opening_tries_every_installed_key() {
        let old = ring(&[1]);
        let sealed = old.seal(b"", T, [0; NONCE_BYTES], b"\x01x");
        // Rolling out key 2: installed everywhere, primary at some nodes only.
        let rolled = ring(&[2, 1]);
        assert_eq!(
            rolled.open(b"", T, &sealed).map(|o| o.plain).as_deref(),
            Ok(&b"\x01x"[..])
        );
        let back = rolled.seal(b"", T, [1; NONCE_BYTES], b"\x01y");
        assert_eq!(
            ring(&[1, 2])
                .open(b"", T, &back)
                .map(|o| o.plain)
                .as_deref(),
            Ok(&b"\x01y"[..])
        );
        assert_eq!(old.open(b"", T, &back), Err(OpenError::Unauthenticated));
    }

    #[test]
    fn a_reply_can_be_sealed_under_the_key_the_peer_spoke() {
        // b is still on key 1 alone; a has rolled out key 2 and made it primary.
        let a = ring(&[2, 1]);
        let b = ring(&[1]);
        let from_b = b.seal(b"", T, [4; NONCE_BYTES], b"\x01ping");
        let opened = a.open(b"", T, &from_b).expect("a holds key 1");
        assert_eq!(opened.key, key(1).id());
        let reply = a.seal_under(&opened.key, b"", T, [5; NONCE_BYTES], b"\x01ack");
        assert_eq!(
            b.open(b"", T, &reply).map(|o| o.plain).as_deref(),
            Ok(&b"\x01ack"[..])
        );
        // A key no longer installed falls back to the primary.
        let primary = a.seal_under(&key(9).id(), b"", T, [6; NONCE_BYTES], b"\x01x");
        assert_eq!(a.open(b"", T, &primary).map(|o| o.key), Ok(key(2).id()));
    }

    #[test]
    fn what_does_not_open_table() {
        let ring = ring(&[1]);
        let sealed = ring.seal(b"prod", T, [9; NONCE_BYTES], b"\x01payload");
        let mut flipped = sealed.clone();
        flipped[24] ^= 1;
        let mut restamped = sealed.clone();
        restamped[4] ^= 1; // the send time is authenticated too
        let mut bad_tag = sealed.clone();
        let last = bad_tag.len() - 1;
        bad_tag[last] ^= 0x80;
        // (what, keyring, label, datagram, error)
        type Case<'a> = (&'a str, Keyring, &'a [u8], Vec<u8>, OpenError);
        let cases: Vec<Case> = vec![
            (
                "other key",
                self::ring(&[3]),
                b"prod",
                sealed.clone(),
                OpenError::Unauthenticated,
            ),
            (
                "other label",
                ring.clone(),
                b"test",
                sealed.clone(),
                OpenError::Unauthenticated,
            ),
            (
                "no label",
                ring.clone(),
                b"",
                sealed.clone(),
                OpenError::Unauthenticated,
            ),
            (
                "flipped bit",
                ring.clone(),
                b"prod",
                flipped,
                OpenError::Unauthenticated,
            ),
            (
                "bad tag",
                ring.clone(),
                b"prod",
                bad_tag,
                OpenError::Unauthenticated,
            ),
            (
                "plain",
                ring.clone(),
                b"prod",
                b"\x01plain".to_vec(),
                OpenError::NotSealed,
            ),
            ("empty", ring.clone(), b"prod", vec![], OpenError::NotSealed),
            (
                "short",
                ring.clone(),
                b"prod",
                sealed[..20].to_vec(),
                OpenError::Truncated,
            ),
            (
                "header only",
                ring.clone(),
                b"prod",
                vec![SEALED_VERSION],
                OpenError::Truncated,
            ),
        ];
        for (what, ring, label, bytes, want) in cases {
            assert_eq!(ring.open(label, T, &bytes), Err(want), "{what}");
        }
    }

    #[test]
    fn datagrams_older_or_newer_than_the_window_do_not_open() {
        let ring = ring(&[1]);
        let sealed = ring.seal(b"", T, [3; NONCE_BYTES], b"\x01x");
        let w = REPLAY_WINDOW_SECS;
        assert!(ring.open(b"", T + w, &sealed).is_ok(), "just inside");
        assert!(
            ring.open(b"", T - w, &sealed).is_ok(),
            "sender's clock a little ahead"
        );
        assert_eq!(
            ring.open(b"", T + w + 1, &sealed),
            Err(OpenError::Stale(i64::from(w) + 1))
        );
        assert_eq!(
            ring.open(b"", T - w - 1, &sealed),
            Err(OpenError::Stale(-i64::from(w) - 1))
        );
    }

    #[test]
    fn keys_read_from_base64_and_never_show_in_debug() {
        let k = key(0xab);
        let text = k.to_base64();
        assert_eq!(Key::from_base64(&format!("  {text}\n")), Ok(k.clone()));
        assert_eq!(Key::from_base64("not base64!"), Err(KeyError::NotBase64));
        assert_eq!(Key::from_base64("AAAA"), Err(KeyError::WrongLength(3)));
        let shown = format!("{k:?} {:?}", ring(&[0xab]));
        assert!(!shown.contains(&text), "{shown}");
        assert!(shown.contains(&k.id().to_string()), "{shown}");
        assert_eq!(k.id().to_string().len(), 16);
        assert_ne!(key(1).id(), key(2).id());
    }

    #[test]
    fn keyring_changes_table() {
        let base = ring(&[1, 2]);
        assert_eq!(base.installing(key(3)).map(|r| r.keys().len()), Ok(3));
        assert_eq!(
            base.installing(key(2)),
            Ok(base.clone()),
            "already installed"
        );
        assert_eq!(base.using(&key(2)).map(|r| r.primary().clone()), Ok(key(2)));
        assert_eq!(
            base.using(&key(9)),
            Err(KeyringError::NotInstalled(key(9).id()))
        );
        assert_eq!(base.removing(&key(2)), Ok(ring(&[1])));
        assert_eq!(
            base.removing(&key(1)),
            Err(KeyringError::RemovePrimary(key(1).id()))
        );
        assert_eq!(Keyring::new(vec![]), Err(KeyringError::Empty));
        let many: Vec<Key> = (0..=MAX_KEYS as u8).map(key).collect();
        assert_eq!(Keyring::new(many), Err(KeyringError::TooMany(MAX_KEYS + 1)));
        assert_eq!(ring(&[1, 1, 2]), ring(&[1, 2]), "repeats kept once");
    }
}
