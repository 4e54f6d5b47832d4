//! Durable stores (`--data-dir`): every key's state in one redb file (`stores.redb`), written by
//! a thread of its own in group commits: whatever arrived while the previous commit ran goes in
//! the next one. A local write is acknowledged only once its commit is on disk, so a node
//! killed mid-burst loses nothing it acknowledged, and the file always opens (redb commits are
//! atomic and fsync'd).
//!
//! redb (pure Rust, crash-safe, one file, no C library to build) was chosen over SQLite through
//! rusqlite, which would compile SQLite's C sources into every build.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use redb::{Database, ReadableTable, TableDefinition};

use crate::store::Persist;

/// One table: `store NUL key` → the encoded `StoreEntry`.
const ENTRIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// The file name inside `--data-dir`.
pub const FILE_NAME: &str = "stores.redb";

/// Told once the batch it came with is on disk (`Err`: why it is not).
pub type Ack = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Keys to write, and whom to tell once they are durable.
#[derive(Default)]
pub struct Batch {
    /// New states (or removals) of keys.
    pub entries: Vec<Persist>,
    /// Called after the commit that holds `entries`.
    pub acks: Vec<Ack>,
}

impl Batch {
    /// True when there is nothing to write and nobody to tell.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.acks.is_empty()
    }
}

/// The writer thread and the way to it.
pub struct Persister {
    batches: Option<mpsc::Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
}

impl std::fmt::Debug for Persister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Persister")
            .field("path", &self.path)
            .finish()
    }
}

/// Opens (or creates) the database in `dir` and reads every entry; returns the writer and the
/// entries (encoded `StoreEntry`s) to load into the stores.
pub fn open(dir: &Path) -> Result<(Persister, Vec<Vec<u8>>), String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create --data-dir {}: {e}", dir.display()))?;
    restrict(dir);
    let path = dir.join(FILE_NAME);
    let db = Database::create(&path)
        .map_err(|e| format!("cannot open the store database {}: {e}", path.display()))?;
    let entries = read_all(&db).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let (tx, rx) = mpsc::channel();
    let thread_path = path.clone();
    let thread = std::thread::Builder::new()
        .name("meshd-persist".into())
        .spawn(move || write_loop(db, rx, &thread_path))
        .map_err(|e| format!("cannot start the persistence thread: {e}"))?;
    Ok((
        Persister {
            batches: Some(tx),
            thread: Some(thread),
            path,
        },
        entries,
    ))
}

impl Persister {
    /// Queues a batch for the next commit. If the writer is gone, the acks hear why.
    pub fn submit(&self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let Some(tx) = &self.batches else {
            return fail(batch.acks, "the persistence thread has stopped");
        };
        if let Err(mpsc::SendError(batch)) = tx.send(batch) {
            fail(batch.acks, "the persistence thread has stopped");
        }
    }

    /// Commits what is queued and stops the writer (blocking until it has).
    pub fn close(mut self) {
        self.batches = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn fail(acks: Vec<Ack>, why: &str) {
    for ack in acks {
        ack(Err(why.to_owned()));
    }
}

/// Owner-only: the stores may hold whatever the gateways put in them.
fn restrict(dir: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
}

fn read_all(db: &Database) -> Result<Vec<Vec<u8>>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = match txn.open_table(ENTRIES) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let mut out = Vec::new();
    for item in table.iter().map_err(|e| e.to_string())? {
        let (_, value) = item.map_err(|e| e.to_string())?;
        out.push(value.value().to_vec());
    }
    Ok(out)
}

/// The database key of a store's key.
fn db_key(store: &str, key: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(store.len() + 1 + key.len());
    out.extend_from_slice(store.as_bytes());
    out.push(0);
    out.extend_from_slice(key.as_bytes());
    out
}

fn write_loop(db: Database, batches: mpsc::Receiver<Batch>, path: &Path) {
    while let Ok(first) = batches.recv() {
        let mut batch = first;
        // Group commit: everything that queued up meanwhile goes in this transaction.
        while let Ok(more) = batches.try_recv() {
            batch.entries.extend(more.entries);
            batch.acks.extend(more.acks);
        }
        let result = commit(&db, &batch.entries);
        if let Err(e) = &result {
            tracing::error!(path = %path.display(), error = %e, "store commit failed");
        }
        for ack in batch.acks {
            ack(result.clone());
        }
    }
}

fn commit(db: &Database, entries: &[Persist]) -> Result<(), String> {
    let txn = db.begin_write().map_err(|e| e.to_string())?;
    {
        let mut table = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
        for p in entries {
            let key = db_key(&p.store, &p.key);
            match &p.entry {
                Some(bytes) => table.insert(key.as_slice(), bytes.as_slice()).map(drop),
                None => table.remove(key.as_slice()).map(drop),
            }
            .map_err(|e| e.to_string())?;
        }
    }
    txn.commit().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn persist(store: &str, key: &str, entry: Option<&[u8]>) -> Persist {
        Persist {
            store: store.into(),
            key: key.into(),
            entry: entry.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn entries_survive_a_reopen_and_acks_follow_the_commit() {
        let dir = std::env::temp_dir().join(format!("meshd-persist-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (persister, loaded) = open(&dir).expect("open");
        assert!(loaded.is_empty());
        let acked = Arc::new(Mutex::new(Vec::new()));
        let log = acked.clone();
        persister.submit(Batch {
            entries: vec![
                persist("s", "a", Some(b"one")),
                persist("s", "b", Some(b"two")),
            ],
            acks: vec![Box::new(move |r| log.lock().expect("lock").push(r))],
        });
        persister.submit(Batch {
            entries: vec![persist("s", "a", None)],
            acks: Vec::new(),
        });
        persister.close();
        assert_eq!(*acked.lock().expect("lock"), vec![Ok(())]);
        let (persister, loaded) = open(&dir).expect("reopen");
        assert_eq!(loaded, vec![b"two".to_vec()]);
        persister.close();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unusable_data_dir_is_a_clear_error() {
        let file = std::env::temp_dir().join(format!("meshd-persist-file-{}", std::process::id()));
        std::fs::write(&file, b"not a directory").expect("write");
        let err = open(&file).map(|_| ()).unwrap_err();
        assert!(err.starts_with("cannot create --data-dir"), "{err}");
        let _ = std::fs::remove_file(&file);
    }
}
