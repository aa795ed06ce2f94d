//! Disk snapshot records (the copies themselves live under the VM's data directory).

use super::{now, Store, StoreError};
pub use den_core::vm::Snapshot;
use rusqlite::params;

impl Store {
    /// Records a snapshot of VM `vm_id`.
    pub fn insert_snapshot(&self, vm_id: &str, name: &str, description: &str) -> Result<(), StoreError> {
        let res = self.lock().execute(
            "INSERT INTO snapshots (vm, name, description, created) VALUES (?1, ?2, ?3, ?4)",
            params![vm_id, name, description, now()],
        );
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Exists { kind: "snapshot", name: name.into() })
            }
            other => other.map(drop).map_err(StoreError::from),
        }
    }

    /// A VM's snapshots, oldest first.
    pub fn snapshots(&self, vm_id: &str) -> Result<Vec<Snapshot>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached("SELECT name, description, created FROM snapshots WHERE vm = ?1 ORDER BY created, name")?;
        let rows =
            stmt.query_map([vm_id], |r| Ok(Snapshot { name: r.get(0)?, description: r.get(1)?, created: r.get(2)? }))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes a snapshot record.
    pub fn delete_snapshot(&self, vm_id: &str, name: &str) -> Result<(), StoreError> {
        if self.lock().execute("DELETE FROM snapshots WHERE vm = ?1 AND name = ?2", params![vm_id, name])? == 0 {
            return Err(StoreError::NotFound { kind: "snapshot", name: name.into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crud_and_cascade() {
        let s = Store::memory().unwrap();
        s.insert_vm(&den_core::testkit::vm_record("web1")).unwrap();
        s.insert_snapshot("id-web1", "before", "pre-upgrade").unwrap();
        assert!(matches!(s.insert_snapshot("id-web1", "before", ""), Err(StoreError::Exists { .. })));
        assert_eq!(s.snapshots("id-web1").unwrap()[0].description, "pre-upgrade");
        s.delete_snapshot("id-web1", "before").unwrap();
        assert!(s.delete_snapshot("id-web1", "before").is_err());
        s.insert_snapshot("id-web1", "x", "").unwrap();
        s.delete_vm("id-web1").unwrap();
        assert!(s.snapshots("id-web1").unwrap().is_empty(), "snapshots go with the VM");
    }
}
