//! This node's trust: whether datagrams are sealed and with which keyring, the keyring's
//! version, the cluster label, and the TLS configs that follow from them. Owned by the driver
//! (one task), so changing the keyring needs no lock: the driver hands the new server config
//! to the QUIC endpoint and the new dial settings to the exchanges it starts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use prost::Message;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

use super::quic::{self, Dial};
use super::tls::TlsConfigs;
use crate::seal::{self, Key, KeyId, Keyring, OpenError, KEY_BYTES, NONCE_BYTES};
use crate::wire;

/// How this node's trust is configured (from `--encrypt-key`, `--keyring-file` and
/// `--cluster-label`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustConfig {
    /// The keyring to start with; `None` runs in the clear.
    pub keyring: Option<Keyring>,
    /// Where the keyring is kept; written whenever it changes (and at start when it did not
    /// exist yet).
    pub keyring_file: Option<PathBuf>,
    /// Bound into every sealed datagram and the TLS identities: clusters with different labels
    /// never talk, even under one key.
    pub label: String,
    /// `--encrypt-key` was given but the existing keyring file, which wins, does not hold it
    /// (as after a rotation removed it): logged at start.
    pub ignored_flag_key: Option<KeyId>,
}

/// A keyring command given to this node by an operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyChange {
    /// Add a key (not primary).
    Install(Key),
    /// Make an installed key primary.
    Use(KeyRef),
    /// Remove an installed key that is not primary.
    Remove(KeyRef),
}

/// A key named by an operator: the key itself, or its public id (enough for `use` and
/// `remove`, so the key need not be typed again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// The base64 key.
    Key(Key),
    /// Its id, 16 hex characters.
    Id(KeyId),
}

impl KeyRef {
    /// Reads a base64 key or a 16-hex-character key id.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut id = [0u8; 8];
            for (i, byte) in id.iter_mut().enumerate() {
                *byte =
                    u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
            }
            return Ok(KeyRef::Id(KeyId::from_bytes(id)));
        }
        Key::from_base64(text)
            .map(KeyRef::Key)
            .map_err(|e| e.to_string())
    }

    fn find<'a>(&self, keyring: &'a Keyring) -> Option<&'a Key> {
        keyring.keys().iter().find(|k| match self {
            KeyRef::Key(key) => *k == key,
            KeyRef::Id(id) => k.id() == *id,
        })
    }
}

/// What became of a keyring offered by a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer {
    /// It was newer and is now ours (at this version).
    Adopted(u64),
    /// Ours is as new or newer; nothing changed.
    Kept,
    /// It was unusable (bad key bytes, or this node runs without keys); the reason.
    Refused(String),
}

/// The driver's trust state; see the module docs.
#[derive(Debug)]
pub struct Trust {
    keyring: Option<Keyring>,
    version: u64,
    label: Vec<u8>,
    file: Option<PathBuf>,
    tls: TlsConfigs,
    nonces: StdRng,
    /// The key each peer (by address) last sealed to us with: what goes back to it is sealed
    /// with the same key, which it certainly holds, so a member a rotation has not reached yet
    /// keeps understanding everyone who still holds its key.
    spoken: HashMap<SocketAddr, KeyId>,
    /// Keys the last command removed, which still open (never seal) until the grace ends.
    removed: Option<RemovedKeys>,
}

/// Keys just removed from the keyring, and until when they still open datagrams.
#[derive(Debug)]
struct RemovedKeys {
    keys: Keyring,
    until: Instant,
}

/// Peers whose key is remembered; past that the memory starts over (it refills from the next
/// datagram of each peer).
const MAX_SPOKEN: usize = 16_384;

/// How long a removed key still opens datagrams: the members adopt a `remove` one after
/// another within milliseconds, and what a member that has not yet sealed under the removed
/// key in that moment (or what sat in a socket buffer) is not lost.
pub const REMOVED_KEY_GRACE: Duration = Duration::from_secs(2);

impl Trust {
    /// Builds the trust state; writes the keyring file if it is configured but missing.
    pub fn new(config: TrustConfig) -> Result<Self, String> {
        let keys = config
            .keyring
            .as_ref()
            .map(|k| k.keys())
            .unwrap_or_default();
        let label = config.label.into_bytes();
        let tls = TlsConfigs::new(keys, &label, quic::transport())?;
        if let (Some(path), Some(keyring)) = (&config.keyring_file, &config.keyring) {
            if !path.exists() {
                seal::file::store(path, keyring)?;
                tracing::info!(file = %path.display(), "keyring file created");
            }
        }
        if let (Some(id), Some(path)) = (config.ignored_flag_key, &config.keyring_file) {
            tracing::warn!(
                key = %id,
                file = %path.display(),
                "--encrypt-key is not in the keyring file, which wins (a rotation removed it?); \
                 the flag is ignored"
            );
        }
        Ok(Trust {
            keyring: config.keyring,
            version: 0,
            label,
            file: config.keyring_file,
            tls,
            // A CSPRNG (ChaCha12) seeded by the OS: nonces must never repeat under a key.
            nonces: StdRng::from_os_rng(),
            spoken: HashMap::new(),
            removed: None,
        })
    }

    /// True when datagrams are sealed (a keyring is configured).
    pub fn is_sealed(&self) -> bool {
        self.keyring.is_some()
    }

    /// The keyring, if any.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.keyring.as_ref()
    }

    /// The keyring's version (0 until a command or a newer peer changed it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The QUIC configs of the current keyring.
    pub fn tls(&self) -> &TlsConfigs {
        &self.tls
    }

    /// How to dial push-pull exchanges now.
    pub fn push_pull_dial(&self) -> Dial {
        self.tls.push_pull_dial()
    }

    /// How to dial keyring commands now.
    pub fn keys_dial(&self) -> Dial {
        self.tls.keys_dial()
    }

    /// How to dial the stores' anti-entropy now.
    pub fn store_dial(&self) -> Dial {
        self.tls.store_dial()
    }

    /// The datagram to put on the wire for `dst`: sealed under the key `dst` last spoke to us
    /// in (the primary for a peer not heard yet), or as it is in the clear.
    pub fn seal(&mut self, dst: SocketAddr, datagram: Vec<u8>) -> Vec<u8> {
        let Some(keyring) = &self.keyring else {
            return datagram;
        };
        let mut nonce = [0u8; NONCE_BYTES];
        self.nonces.fill_bytes(&mut nonce);
        let now = unix_seconds();
        match self.spoken.get(&dst) {
            Some(key) => keyring.seal_under(key, &self.label, now, nonce, &datagram),
            None => keyring.seal(&self.label, now, nonce, &datagram),
        }
    }

    /// The plain datagram received from `from` as `bytes` at `now`; in the clear, `bytes`
    /// itself.
    pub fn open(
        &mut self,
        from: SocketAddr,
        bytes: Vec<u8>,
        now: Instant,
    ) -> Result<Vec<u8>, OpenError> {
        let Some(keyring) = &self.keyring else {
            return Ok(bytes);
        };
        let opened = match keyring.open(&self.label, unix_seconds(), &bytes) {
            Err(OpenError::Unauthenticated) => return self.open_removed(&bytes, now),
            result => result?,
        };
        if opened.in_kind {
            // A reply in kind is our key echoed back, not the sender's choice. Echoed in a key
            // that is no longer our primary, it answers a choice we no longer make: the sender
            // has a newer primary (else it would have sealed under its own), most likely ours,
            // so we speak our primary to it again instead of both keeping the old key.
            if opened.key != keyring.primary_id() {
                self.spoken.remove(&from);
            }
        } else if self.spoken.get(&from) != Some(&opened.key) {
            if self.spoken.len() >= MAX_SPOKEN {
                self.spoken.clear();
            }
            self.spoken.insert(from, opened.key);
        }
        Ok(opened.plain)
    }

    /// Opens `bytes` with the keys removed less than [`REMOVED_KEY_GRACE`] ago.
    fn open_removed(&mut self, bytes: &[u8], now: Instant) -> Result<Vec<u8>, OpenError> {
        let Some(removed) = &self.removed else {
            return Err(OpenError::Unauthenticated);
        };
        if now >= removed.until {
            self.removed = None;
            return Err(OpenError::Unauthenticated);
        }
        let opened = removed.keys.open(&self.label, unix_seconds(), bytes)?;
        Ok(opened.plain)
    }

    /// Our keyring as carried in push-pull messages and keyring commands.
    pub fn state(&self) -> Option<wire::KeyringState> {
        self.keyring.as_ref().map(|k| wire::KeyringState {
            version: self.version,
            keys: k.keys().iter().map(|key| key.as_bytes().to_vec()).collect(),
        })
    }

    /// Appends our keyring to an encoded `PushPull` message (protobuf merges a message's
    /// fields written one after the other, so this is field 4 of the same message).
    pub fn attach(&self, push_pull: &mut Vec<u8>) {
        if let Some(state) = self.state() {
            let extra = wire::PushPull {
                keyring: Some(state),
                ..Default::default()
            };
            extra.encode_raw(push_pull);
        }
    }

    /// Adopts the keyring a peer's push-pull message carries, if newer than ours.
    pub fn offer_from_push_pull(&mut self, push_pull: &[u8]) -> Offer {
        if self.keyring.is_none() {
            return Offer::Kept;
        }
        match wire::PushPullKeyring::decode(push_pull) {
            Ok(wire::PushPullKeyring {
                keyring: Some(state),
            }) => self.offer(&state),
            // No keyring (an older node) or a message the core will drop anyway.
            _ => Offer::Kept,
        }
    }

    /// Adopts `state` if its version is higher than ours.
    pub fn offer(&mut self, state: &wire::KeyringState) -> Offer {
        if self.keyring.is_none() {
            return Offer::Refused("this node runs without a keyring".into());
        }
        if state.version <= self.version {
            return Offer::Kept;
        }
        let keyring = match keyring_of(state) {
            Ok(keyring) => keyring,
            Err(e) => return Offer::Refused(e),
        };
        match self.install(keyring, state.version) {
            Ok(()) => Offer::Adopted(state.version),
            Err(e) => Offer::Refused(e),
        }
    }

    /// Applies an operator's command at this node: the new keyring, one version up.
    pub fn change(&mut self, change: &KeyChange) -> Result<wire::KeyringState, String> {
        let Some(current) = &self.keyring else {
            return Err(
                "this agent runs without a keyring (start it with --encrypt-key or \
                        --keyring-file to use key commands)"
                    .into(),
            );
        };
        let next = match change {
            KeyChange::Install(key) => current.installing(key.clone()),
            KeyChange::Use(key) => {
                let key = key.find(current).ok_or_else(|| not_installed(key))?;
                current.using(&key.clone())
            }
            KeyChange::Remove(key) => {
                let key = key.find(current).ok_or_else(|| not_installed(key))?;
                current.removing(&key.clone())
            }
        }
        .map_err(|e| e.to_string())?;
        self.install(next, self.version + 1)?;
        self.state().ok_or_else(|| "keyring vanished".to_string())
    }

    /// Makes `keyring` ours at `version`: new TLS configs, the file rewritten.
    fn install(&mut self, keyring: Keyring, version: u64) -> Result<(), String> {
        let tls = TlsConfigs::new(keyring.keys(), &self.label, quic::transport())?;
        if let Some(path) = &self.file {
            seal::file::store(path, &keyring)?;
        }
        let removed: Vec<Key> = self
            .keyring
            .iter()
            .flat_map(|current| current.keys())
            .filter(|key| !keyring.contains(key))
            .cloned()
            .collect();
        self.removed = Keyring::new(removed).ok().map(|keys| RemovedKeys {
            keys,
            until: Instant::now() + REMOVED_KEY_GRACE,
        });
        self.tls = tls;
        self.keyring = Some(keyring);
        self.version = version;
        Ok(())
    }

    /// The answer to a peer's keyring command (`meshd-keys/1`): adopt or list; and what
    /// became of an offered keyring.
    pub fn answer(&mut self, request: &[u8]) -> (wire::KeyCommandReply, Offer) {
        let offer = match wire::KeyCommand::decode(request) {
            Ok(wire::KeyCommand {
                command: Some(wire::key_command::Command::Adopt(state)),
            }) => self.offer(&state),
            Ok(wire::KeyCommand {
                command: Some(wire::key_command::Command::List(_)),
            }) => Offer::Kept,
            Ok(wire::KeyCommand { command: None }) | Err(_) => {
                Offer::Refused("malformed key command".into())
            }
        };
        let error = match &offer {
            Offer::Refused(e) => e.clone(),
            Offer::Adopted(_) | Offer::Kept => String::new(),
        };
        let reply = wire::KeyCommandReply {
            version: self.version,
            key_ids: self
                .key_ids()
                .iter()
                .map(|id| id.as_bytes().to_vec())
                .collect(),
            error,
        };
        (reply, offer)
    }

    /// Ids of the installed keys, the primary first.
    pub fn key_ids(&self) -> Vec<KeyId> {
        self.keyring
            .as_ref()
            .map(|k| k.keys().iter().map(Key::id).collect())
            .unwrap_or_default()
    }
}

/// The wall clock in seconds since the Unix epoch (what sealed datagrams are stamped with).
fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

fn not_installed(key: &KeyRef) -> String {
    match key {
        KeyRef::Key(key) => format!("key {} is not installed", key.id()),
        KeyRef::Id(id) => format!("no installed key has id {id}"),
    }
}

/// The keyring a `KeyringState` describes.
fn keyring_of(state: &wire::KeyringState) -> Result<Keyring, String> {
    let keys = state
        .keys
        .iter()
        .map(|bytes| {
            <[u8; KEY_BYTES]>::try_from(bytes.as_slice())
                .map(Key::from_bytes)
                .map_err(|_| format!("a key of {} bytes", bytes.len()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Keyring::new(keys).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> Key {
        Key::from_bytes([byte; KEY_BYTES])
    }

    fn trust(keys: &[u8]) -> Trust {
        let keyring = (!keys.is_empty())
            .then(|| Keyring::new(keys.iter().map(|b| key(*b)).collect()).expect("keyring"));
        Trust::new(TrustConfig {
            keyring,
            keyring_file: None,
            label: "test".into(),
            ignored_flag_key: None,
        })
        .expect("trust")
    }

    /// True when a node holding only key `k` opens `sealed`, received from `addr(from)`.
    fn opens_under(k: u8, from: u8, sealed: Vec<u8>) -> bool {
        trust(&[k]).open(addr(from), sealed, Instant::now()).is_ok()
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 39527))
    }

    #[test]
    fn sealed_datagrams_open_at_a_holder_and_fresh_nonces_differ() {
        let mut a = trust(&[1]);
        let mut b = trust(&[2, 1]);
        let first = a.seal(addr(2), b"\x01ping".to_vec());
        let second = a.seal(addr(2), b"\x01ping".to_vec());
        assert_ne!(first, second, "a fresh nonce per datagram");
        assert_eq!(
            b.open(addr(1), first, Instant::now()).as_deref(),
            Ok(&b"\x01ping"[..])
        );
        assert_eq!(
            trust(&[3]).open(addr(1), second, Instant::now()),
            Err(OpenError::Unauthenticated)
        );
        let mut clear = trust(&[]);
        assert_eq!(clear.seal(addr(2), b"\x01x".to_vec()), b"\x01x");
        assert_eq!(
            clear
                .open(addr(1), b"\x01x".to_vec(), Instant::now())
                .as_deref(),
            Ok(&b"\x01x"[..])
        );
    }

    #[test]
    fn a_member_the_rotation_missed_is_answered_in_its_key() {
        // a has installed and switched to key 2; c missed it and holds key 1 only.
        let mut a = trust(&[2, 1]);
        let mut c = trust(&[1]);
        // To a peer it has not heard from, a speaks its primary, which c cannot open...
        let unknown = a.seal(addr(3), b"\x01ping".to_vec());
        assert_eq!(
            c.open(addr(1), unknown, Instant::now()),
            Err(OpenError::Unauthenticated)
        );
        // ...but once c has spoken (key 1), a answers in key 1, and c understands it.
        let from_c = c.seal(addr(1), b"\x01ping".to_vec());
        assert!(a.open(addr(3), from_c, Instant::now()).is_ok());
        let reply = a.seal(addr(3), b"\x01ack".to_vec());
        assert_eq!(
            c.open(addr(1), reply, Instant::now()).as_deref(),
            Ok(&b"\x01ack"[..])
        );
        // Once c has the new keyring and speaks key 2, a follows.
        let mut c2 = trust(&[2, 1]);
        let from_c2 = c2.seal(addr(1), b"\x01ping".to_vec());
        assert!(a.open(addr(3), from_c2, Instant::now()).is_ok());
        let reply = a.seal(addr(3), b"\x01ack".to_vec());
        assert!(opens_under(2, 1, reply), "sealed with key 2 now");
    }

    #[test]
    fn replies_in_kind_do_not_keep_an_old_key_between_two_holders_of_the_new_one() {
        // a uses key 2; c came back holding key 1 only and spoke it, so a answers in key 1.
        let mut a = trust(&[2, 1]);
        let from_c = trust(&[1]).seal(addr(1), b"\x01ping".to_vec());
        assert!(a.open(addr(3), from_c, Instant::now()).is_ok());
        let in_kind = a.seal(addr(3), b"\x01ack".to_vec());
        assert_eq!(in_kind[0], crate::seal::SEALED_IN_KIND);
        // c then takes the new keyring. a's reply in key 1 is not c's cue to keep key 1...
        let mut c = trust(&[2, 1]);
        assert!(c.open(addr(1), in_kind, Instant::now()).is_ok());
        let from_c = c.seal(addr(1), b"\x01ping".to_vec());
        assert_eq!(
            from_c[0],
            crate::seal::SEALED_VERSION,
            "c speaks its primary"
        );
        // ...so both are on key 2 at once, and removing key 1 later loses nothing.
        assert!(a.open(addr(3), from_c, Instant::now()).is_ok());
        let reply = a.seal(addr(3), b"\x01ack".to_vec());
        assert!(opens_under(2, 1, reply), "a answers in key 2");
    }

    #[test]
    fn two_holders_of_a_new_primary_leave_the_old_key_after_one_reply() {
        // a and b both started on key 1 and spoke it to each other by their own choice.
        let mut a = trust(&[1]);
        let mut b = trust(&[1]);
        let from_b = b.seal(addr(2), b"\x01ping".to_vec());
        assert!(a.open(addr(2), from_b, Instant::now()).is_ok());
        let from_a = a.seal(addr(1), b"\x01ping".to_vec());
        assert!(b.open(addr(1), from_a, Instant::now()).is_ok());
        // An operator installs key 2 and makes it primary; b adopts the result.
        a.change(&KeyChange::Install(key(2))).expect("install");
        let used = a
            .change(&KeyChange::Use(KeyRef::Id(key(2).id())))
            .expect("use");
        assert_eq!(b.offer(&used), Offer::Adopted(2));
        // Each still answers the other in key 1, in kind...
        let in_kind = a.seal(addr(2), b"\x01ping".to_vec());
        assert_eq!(in_kind[0], crate::seal::SEALED_IN_KIND);
        assert!(b.open(addr(1), in_kind, Instant::now()).is_ok());
        // ...but an echo of key 1, no longer b's primary, makes b speak key 2, and a follows.
        let from_b = b.seal(addr(1), b"\x01ack".to_vec());
        assert!(opens_under(2, 2, from_b.clone()), "b speaks key 2");
        assert!(a.open(addr(2), from_b, Instant::now()).is_ok());
        let from_a = a.seal(addr(2), b"\x01ping".to_vec());
        assert!(opens_under(2, 1, from_a), "a speaks key 2");
    }

    #[test]
    fn a_removed_key_still_opens_for_a_moment_and_seals_nothing() {
        let mut a = trust(&[1]);
        a.change(&KeyChange::Install(key(2))).expect("install");
        a.change(&KeyChange::Use(KeyRef::Id(key(2).id())))
            .expect("use");
        // b has not taken the removal yet and still answers a in key 1.
        let mut b = trust(&[1]);
        let from_a = a.seal(addr(2), b"\x01ping".to_vec());
        assert!(
            b.open(addr(1), from_a, Instant::now()).is_err(),
            "a seals with key 2"
        );
        a.change(&KeyChange::Remove(KeyRef::Id(key(1).id())))
            .expect("remove");
        let now = Instant::now();
        let late = b.seal(addr(1), b"\x01ack".to_vec());
        assert_eq!(
            a.open(addr(2), late.clone(), now).as_deref(),
            Ok(&b"\x01ack"[..]),
            "in flight during the removal"
        );
        assert_eq!(
            a.open(addr(2), late, now + REMOVED_KEY_GRACE),
            Err(OpenError::Unauthenticated),
            "after the grace"
        );
        // The removed key is not remembered as b's: a answers b in its primary.
        let reply = a.seal(addr(2), b"\x01ack".to_vec());
        assert!(opens_under(2, 1, reply));
    }

    #[test]
    fn commands_raise_the_version_and_peers_adopt_only_newer() {
        let mut a = trust(&[1]);
        let mut b = trust(&[1]);
        let installed = a.change(&KeyChange::Install(key(2))).expect("install");
        assert_eq!(installed.version, 1);
        assert_eq!(b.offer(&installed), Offer::Adopted(1));
        assert_eq!(b.offer(&installed), Offer::Kept, "same version again");
        let used = a
            .change(&KeyChange::Use(KeyRef::Id(key(2).id())))
            .expect("use");
        let mut push_pull = Vec::new();
        a.attach(&mut push_pull);
        assert_eq!(b.offer_from_push_pull(&push_pull), Offer::Adopted(2));
        assert_eq!(b.keyring().map(|k| k.primary().clone()), Some(key(2)));
        assert_eq!(used.version, 2);
        // An older keyring (a node that was down during the rotation) is never adopted.
        let stale = trust(&[1]).state().expect("state");
        assert_eq!(b.offer(&stale), Offer::Kept);
        let err = a
            .change(&KeyChange::Remove(KeyRef::Key(key(2))))
            .expect_err("primary");
        assert!(err.contains("primary"), "{err}");
        assert_eq!(a.version(), 2, "a refused command changes nothing");
        let removed = a
            .change(&KeyChange::Remove(KeyRef::Key(key(1))))
            .expect("remove");
        assert_eq!(b.offer(&removed), Offer::Adopted(3));
        assert_eq!(b.key_ids(), vec![key(2).id()]);
    }

    #[test]
    fn key_commands_are_answered_with_the_keys_held() {
        let mut a = trust(&[1]);
        let mut b = trust(&[1]);
        let state = a.change(&KeyChange::Install(key(7))).expect("install");
        let adopt = wire::KeyCommand {
            command: Some(wire::key_command::Command::Adopt(state)),
        };
        let (reply, offer) = b.answer(&adopt.encode_to_vec());
        assert_eq!(offer, Offer::Adopted(1));
        assert_eq!(reply.version, 1);
        assert_eq!(reply.key_ids.len(), 2);
        assert!(reply.error.is_empty());
        let (reply, _) = b.answer(b"\xff\xff");
        assert_eq!(reply.error, "malformed key command");
        let bad = wire::KeyCommand {
            command: Some(wire::key_command::Command::Adopt(wire::KeyringState {
                version: 9,
                keys: vec![vec![1, 2, 3]],
            })),
        };
        assert_eq!(b.answer(&bad.encode_to_vec()).0.error, "a key of 3 bytes");
        assert_eq!(b.version(), 1, "unchanged");
    }

    #[test]
    fn key_refs_parse_keys_and_ids() {
        let k = key(5);
        assert_eq!(KeyRef::parse(&k.to_base64()), Ok(KeyRef::Key(k.clone())));
        assert_eq!(KeyRef::parse(&k.id().to_string()), Ok(KeyRef::Id(k.id())));
        assert!(KeyRef::parse("xyz").is_err());
    }
}
