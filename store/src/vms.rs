//! VM records.

use super::{now, Store, StoreError};
use den_core::vm::{EngineKind, Running};
use den_core::vm::{VmRecord, VmSpec, VmState};
use rusqlite::{params, OptionalExtension, Row};

fn corrupt(id: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { id: id.into(), why: e.to_string() }
}

/// A row as stored: id, owner, spec JSON, state, running JSON, created, updated.
type RawVm = (String, String, String, String, Option<String>, i64, i64);

fn from_row(r: &Row<'_>) -> rusqlite::Result<RawVm> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
}

fn decode(raw: RawVm) -> Result<VmRecord, StoreError> {
    let (id, owner, spec, state, running, created, updated) = raw;
    #[derive(serde::Deserialize)]
    struct Stored {
        spec: VmSpec,
        engine: EngineKind,
        #[serde(default)]
        nics: Vec<den_core::net::Nic>,
        #[serde(default)]
        provisioned: bool,
    }
    let stored: Stored = serde_json::from_str(&spec).map_err(|e| corrupt(&id, e))?;
    let state = VmState::parse(&state).ok_or_else(|| corrupt(&id, format!("unknown state `{state}`")))?;
    let running: Option<Running> = match running {
        Some(r) => Some(serde_json::from_str(&r).map_err(|e| corrupt(&id, e))?),
        None => None,
    };
    Ok(VmRecord {
        id,
        spec: stored.spec,
        owner,
        state,
        running,
        engine: stored.engine,
        nics: stored.nics,
        provisioned: stored.provisioned,
        created,
        updated,
    })
}

/// The `spec` column: the spec with what was resolved at creation (engine, NICs).
fn stored_spec(vm: &VmRecord) -> String {
    serde_json::json!({"spec": vm.spec, "engine": vm.engine, "nics": vm.nics, "provisioned": vm.provisioned})
        .to_string()
}

const COLUMNS: &str = "id, owner, spec, state, running, created, updated";

impl Store {
    /// Adds a new VM record; fails if the name is taken.
    pub fn insert_vm(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let spec = stored_spec(vm);
        let running = vm.running.as_ref().map(|r| serde_json::to_string(r).unwrap_or_default());
        let res = self.lock().execute(
            "INSERT INTO vms (id, name, owner, spec, state, running, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
            params![vm.id, vm.spec.name, vm.owner, spec, vm.state.as_str(), running, vm.created],
        );
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Exists { kind: "VM", name: vm.spec.name.clone() })
            }
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    /// A VM by name or id.
    pub fn vm(&self, name_or_id: &str) -> Result<VmRecord, StoreError> {
        let raw = self
            .lock()
            .query_row(&format!("SELECT {COLUMNS} FROM vms WHERE name = ?1 OR id = ?1"), [name_or_id], from_row)
            .optional()?;
        match raw {
            Some(r) => decode(r),
            None => Err(StoreError::NotFound { kind: "VM", name: name_or_id.into() }),
        }
    }

    /// All VMs, by name.
    pub fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!("SELECT {COLUMNS} FROM vms ORDER BY name"))?;
        let raws: Vec<RawVm> = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
        drop(stmt);
        drop(conn);
        raws.into_iter().map(decode).collect()
    }

    /// Sets a VM's state and process (None: no process).
    pub fn set_vm_state(&self, id: &str, state: VmState, running: Option<&Running>) -> Result<(), StoreError> {
        let running = running.map(|r| serde_json::to_string(r).unwrap_or_default());
        let n = self.lock().execute(
            "UPDATE vms SET state = ?2, running = ?3, updated = ?4 WHERE id = ?1",
            params![id, state.as_str(), running, now()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "VM", name: id.into() });
        }
        Ok(())
    }

    /// Replaces a VM's spec (resize); the name cannot change.
    pub fn set_vm_spec(&self, vm: &VmRecord) -> Result<(), StoreError> {
        let spec = stored_spec(vm);
        let n = self.lock().execute(
            "UPDATE vms SET spec = ?2, updated = ?3 WHERE id = ?1 AND name = ?4",
            params![vm.id, spec, now(), vm.spec.name],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "VM", name: vm.spec.name.clone() });
        }
        Ok(())
    }

    /// Removes a VM record.
    pub fn delete_vm(&self, id: &str) -> Result<(), StoreError> {
        self.lock().execute("DELETE FROM vms WHERE id = ?1", [id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use den_core::testkit::vm_record as record;

    #[test]
    fn crud_and_unique_names() {
        let s = Store::memory().unwrap();
        s.insert_vm(&record("a")).unwrap();
        s.insert_vm(&record("b")).unwrap();
        let mut dup = record("a");
        dup.id = "other".into();
        assert!(matches!(s.insert_vm(&dup), Err(StoreError::Exists { .. })));
        assert_eq!(s.vms().unwrap().iter().map(|v| v.spec.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        let r = Running {
            engine: EngineKind::Qemu,
            pid: 42,
            start_time: 7,
            console: "/c".into(),
            control: "/q".into(),
            agent: "/a".into(),
        };
        s.set_vm_state("id-a", VmState::Running, Some(&r)).unwrap();
        let a = s.vm("a").unwrap();
        assert_eq!((a.state, a.running), (VmState::Running, Some(r)));
        assert_eq!(s.vm("id-a").unwrap().spec.name, "a");
        s.delete_vm("id-a").unwrap();
        assert!(matches!(s.vm("a"), Err(StoreError::NotFound { .. })));
        assert!(s.set_vm_state("id-a", VmState::Stopped, None).is_err());
    }
}
