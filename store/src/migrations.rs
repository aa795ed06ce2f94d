//! Schema migrations: each entry moves the schema one version up; they run in one transaction at
//! open, so a crash mid-migration leaves the previous version intact.

use super::StoreError;
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: VMs, tasks, events.
    "CREATE TABLE vms (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        spec TEXT NOT NULL,
        state TEXT NOT NULL,
        running TEXT,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
     );
     CREATE TABLE tasks (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        log TEXT NOT NULL DEFAULT '',
        error TEXT,
        created INTEGER NOT NULL,
        finished INTEGER
     );
     CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        user TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        detail TEXT NOT NULL
     );",
    // 2: networks other than the implicit `default` (and `default` when its subnet was set).
    "CREATE TABLE networks (
        name TEXT PRIMARY KEY,
        spec TEXT NOT NULL,
        created INTEGER NOT NULL
     );",
    // 3: users, their per-VM grants, and API tokens (secrets stored as SHA-256 only).
    "CREATE TABLE users (
        name TEXT PRIMARY KEY,
        password TEXT,
        role TEXT,
        created INTEGER NOT NULL
     );
     CREATE TABLE grants (
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        vm TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        PRIMARY KEY (user, vm)
     );
     CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        hash TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT,
        vms TEXT,
        created INTEGER NOT NULL,
        expires INTEGER
     );",
    // 4: disk snapshots (the files live in the VM's directory).
    "CREATE TABLE snapshots (
        vm TEXT NOT NULL REFERENCES vms(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        created INTEGER NOT NULL,
        PRIMARY KEY (vm, name)
     );",
    // 5: task progress in percent.
    "ALTER TABLE tasks ADD COLUMN progress INTEGER NOT NULL DEFAULT 0;",
    // 6: users' SSH public keys (a key belongs to one user: the SSH gateway finds users by key).
    "CREATE TABLE ssh_keys (
        fingerprint TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
        line TEXT NOT NULL,
        created INTEGER NOT NULL
     );",
    // 7: the SSH gateway: each guest's pinned sshd host key, and recorded sessions (kept after
    // their VM is gone, for the audit trail).
    "CREATE TABLE guest_host_keys (
        vm TEXT PRIMARY KEY REFERENCES vms(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        pinned INTEGER NOT NULL
     );
     CREATE TABLE ssh_sessions (
        id TEXT PRIMARY KEY,
        user TEXT NOT NULL,
        vm TEXT NOT NULL,
        kind TEXT NOT NULL,
        command TEXT NOT NULL,
        peer TEXT NOT NULL,
        started INTEGER NOT NULL,
        ended INTEGER,
        exit INTEGER,
        file TEXT
     );",
    // 8: LPK apps (the record is JSON; package id and subdomain are unique), and their traffic
    // audit: every outbound connection attempt with its verdict.
    "CREATE TABLE apps (
        package TEXT PRIMARY KEY,
        subdomain TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        record TEXT NOT NULL,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL
     );
     CREATE TABLE app_traffic (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        app TEXT NOT NULL,
        time INTEGER NOT NULL,
        proto TEXT NOT NULL,
        source TEXT NOT NULL,
        dest TEXT NOT NULL,
        port INTEGER NOT NULL,
        verdict TEXT NOT NULL
     );
     CREATE INDEX app_traffic_by_app ON app_traffic (app, seq);",
    // 9: the business OS: its state (slots, phase, updates) in one row, and its health checks.
    "CREATE TABLE system (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
     );
     CREATE TABLE system_health (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        ok INTEGER NOT NULL,
        slot TEXT NOT NULL,
        detail TEXT NOT NULL
     );",
    // 10: login sessions apart from API tokens (a token made from an API token is narrowed to
    // it; one made from a session is the user's own).
    "ALTER TABLE tokens ADD COLUMN session INTEGER NOT NULL DEFAULT 0;
     UPDATE tokens SET session = 1 WHERE name = 'session' AND role IS NULL AND vms IS NULL;",
];

/// The current schema version (0 for an empty database).
pub(crate) fn version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

/// Applies every migration the database has not seen.
pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let known = MIGRATIONS.len() as i64;
    let found = version(conn)?;
    if found > known {
        return Err(StoreError::TooNew { found, known });
    }
    let tx = conn.transaction()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let s = crate::Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let s = crate::Store::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(s);
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", 99).unwrap();
        drop(c);
        assert!(matches!(crate::Store::open(&path), Err(StoreError::TooNew { found: 99, .. })));
    }
}
