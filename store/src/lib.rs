//! dend's state: an embedded SQLite database in WAL mode (one file, transactional, survives
//! `kill -9`), with numbered schema migrations applied at open. Tables: `vms` (records with their
//! spec and, while a process exists, how to find it again), `tasks` (long operations with their
//! log and outcome) and `events` (the lifecycle and audit log, kept), `networks`, `snapshots`, `users`
//! with their `grants` and `tokens`, for the SSH gateway `guest_host_keys` and `ssh_sessions`, for
//! apps `apps` and `app_traffic` (whose queries live with the apps, `AppTable`), and for the
//! business OS `system` and `system_health`.

mod events;
mod migrations;
mod networks;
mod snapshots;
mod ssh;
mod system;
mod tasks;
mod users;
mod vms;

pub use snapshots::Snapshot;
pub use ssh::SshSession;
pub use users::{KeyRecord, TokenRecord, UserAuth, UserRecord};

use rusqlite::Connection;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error.
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored JSON column did not parse (a newer dend wrote it, or the file was edited).
    #[error("state database: record {id}: {why}")]
    Corrupt {
        /// Record id.
        id: String,
        /// What was wrong.
        why: String,
    },
    /// The database was written by a newer dend.
    #[error("state database schema version {found} is newer than this dend knows ({known}); upgrade dend")]
    TooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        known: i64,
    },
    /// A unique name is taken.
    #[error("{kind} `{name}` already exists")]
    Exists {
        /// What kind of record.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// No such record.
    #[error("{kind} `{name}` not found")]
    NotFound {
        /// What kind of record.
        kind: &'static str,
        /// The name or id asked for.
        name: String,
    },
}

/// The state database.
pub struct Store {
    conn: Mutex<Connection>,
}

impl Store {
    /// Opens (creating and migrating) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let store = Store { conn: Mutex::new(conn) };
        migrations::migrate(&mut store.lock())?;
        Ok(store)
    }

    /// An in-memory database (tests).
    pub fn memory() -> Result<Store, StoreError> {
        let conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let store = Store { conn: Mutex::new(conn) };
        migrations::migrate(&mut store.lock())?;
        Ok(store)
    }

    /// The connection, for the tables whose owners keep their own queries (an app's records
    /// live with the LPK host). One statement or transaction at a time; keep it short.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version in use.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        migrations::version(&self.lock())
    }
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
