//! The SSH gateway's records: each guest's pinned sshd host key, and the sessions it served
//! (with the recording file of interactive ones).

use super::{now, Store, StoreError};
pub use den_core::ssh::SshSession;
use rusqlite::{params, OptionalExtension};

impl Store {
    /// The sshd host key pinned for VM `vm_id` (an OpenSSH public key line).
    pub fn guest_host_key(&self, vm_id: &str) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT key FROM guest_host_keys WHERE vm = ?1")?;
        Ok(stmt.query_row([vm_id], |r| r.get(0)).optional()?)
    }

    /// Pins (or re-pins) VM `vm_id`'s sshd host key.
    pub fn pin_guest_host_key(&self, vm_id: &str, key: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO guest_host_keys (vm, key, pinned) VALUES (?1, ?2, ?3)
             ON CONFLICT(vm) DO UPDATE SET key = excluded.key, pinned = excluded.pinned",
            params![vm_id, key, now()],
        )?;
        Ok(())
    }

    /// Records the start of a session; `file` names its recording.
    pub fn insert_ssh_session(&self, s: &SshSession, file: Option<&str>) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO ssh_sessions (id, user, vm, kind, command, peer, started, file)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![s.id, s.user, s.vm, s.kind, s.command, s.peer, s.started, file],
        )?;
        Ok(())
    }

    /// Records the end of a session (the first end counts).
    pub fn end_ssh_session(&self, id: &str, exit: Option<i64>) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE ssh_sessions SET ended = ?2, exit = ?3 WHERE id = ?1 AND ended IS NULL",
            params![id, now(), exit],
        )?;
        Ok(())
    }

    /// Sessions, newest first, at most `limit`; only `user`'s when given.
    pub fn ssh_sessions(&self, user: Option<&str>, limit: usize) -> Result<Vec<SshSession>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!(
            "{SELECT_SESSIONS} WHERE ?1 IS NULL OR user = ?1 ORDER BY started DESC, rowid DESC LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![user, limit as i64], row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One session and the file of its recording.
    pub fn ssh_session(&self, id: &str) -> Result<(SshSession, Option<String>), StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!("{SELECT_SESSIONS} WHERE id = ?1"))?;
        let found = stmt.query_row([id], |r| Ok((row(r)?, r.get::<_, Option<String>>(9)?))).optional()?;
        found.ok_or_else(|| StoreError::NotFound { kind: "SSH session", name: id.into() })
    }

    /// Sessions a crashed dend left open are ended now.
    pub fn end_open_ssh_sessions(&self) -> Result<usize, StoreError> {
        Ok(self.lock().execute("UPDATE ssh_sessions SET ended = ?1 WHERE ended IS NULL", [now()])?)
    }
}

/// The columns [`row`] reads (the recording's file last, at index 9).
const SELECT_SESSIONS: &str = "SELECT id, user, vm, kind, command, peer, started, ended, exit, file FROM ssh_sessions";

fn row(r: &rusqlite::Row) -> rusqlite::Result<SshSession> {
    Ok(SshSession {
        id: r.get(0)?,
        user: r.get(1)?,
        vm: r.get(2)?,
        kind: r.get(3)?,
        command: r.get(4)?,
        peer: r.get(5)?,
        started: r.get(6)?,
        ended: r.get(7)?,
        exit: r.get(8)?,
        recorded: r.get::<_, Option<String>>(9)?.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_and_sessions() {
        let s = Store::memory().unwrap();
        s.insert_vm(&den_core::testkit::vm_record("web1")).unwrap();
        assert_eq!(s.guest_host_key("id-web1").unwrap(), None);
        s.pin_guest_host_key("id-web1", "ssh-ed25519 AAAA1").unwrap();
        s.pin_guest_host_key("id-web1", "ssh-ed25519 AAAA2").unwrap();
        assert_eq!(s.guest_host_key("id-web1").unwrap().as_deref(), Some("ssh-ed25519 AAAA2"));
        s.delete_vm("id-web1").unwrap();
        assert_eq!(s.guest_host_key("id-web1").unwrap(), None, "goes with its VM");

        let mk = |id: &str, user: &str| SshSession {
            id: id.into(),
            user: user.into(),
            vm: "web1".into(),
            kind: "shell".into(),
            command: String::new(),
            peer: "127.0.0.1".into(),
            started: 1,
            ended: None,
            exit: None,
            recorded: false,
        };
        s.insert_ssh_session(&mk("a", "alice"), Some("/x/a.cast")).unwrap();
        s.insert_ssh_session(&mk("b", "gus"), None).unwrap();
        s.end_ssh_session("a", Some(0)).unwrap();
        s.end_ssh_session("a", None).unwrap();
        let all = s.ssh_sessions(None, 10).unwrap();
        assert_eq!(all.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(s.ssh_sessions(Some("gus"), 10).unwrap().len(), 1);
        let (a, file) = s.ssh_session("a").unwrap();
        assert!(a.recorded && a.exit == Some(0) && a.ended.is_some() && file.as_deref() == Some("/x/a.cast"));
        assert_eq!(s.end_open_ssh_sessions().unwrap(), 1);
        assert!(matches!(s.ssh_session("zz"), Err(StoreError::NotFound { .. })));
    }
}
