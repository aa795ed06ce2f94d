//! The business OS's record (one JSON row, changed atomically) and its health checks.

use super::{Store, StoreError};
use den_core::system::{HealthSample, SystemState};
use rusqlite::{params, OptionalExtension};

const KEY: &str = "state";

impl Store {
    /// The business OS's state (the default when there is none yet).
    pub fn system_state(&self) -> Result<SystemState, StoreError> {
        let text: Option<String> =
            self.lock().query_row("SELECT value FROM system WHERE key = ?1", [KEY], |r| r.get(0)).optional()?;
        match text {
            None => Ok(SystemState::default()),
            Some(t) => {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { id: "system".into(), why: e.to_string() })
            }
        }
    }

    /// Reads the state, lets `f` change it and writes it back, all in one transaction; `f`'s
    /// error leaves the record as it was.
    pub fn modify_system<R, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&mut SystemState) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let text: Option<String> = tx
            .query_row("SELECT value FROM system WHERE key = ?1", [KEY], |r| r.get(0))
            .optional()
            .map_err(StoreError::from)?;
        let mut st = match text {
            None => SystemState::default(),
            Some(t) => {
                serde_json::from_str(&t).map_err(|e| StoreError::Corrupt { id: "system".into(), why: e.to_string() })?
            }
        };
        let out = f(&mut st)?;
        let text =
            serde_json::to_string(&st).map_err(|e| StoreError::Corrupt { id: "system".into(), why: e.to_string() })?;
        tx.execute("INSERT OR REPLACE INTO system (key, value) VALUES (?1, ?2)", params![KEY, text])
            .map_err(StoreError::from)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(out)
    }

    /// Records a health check, keeping the newest `keep`.
    pub fn add_health(&self, s: &HealthSample, keep: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO system_health (time, ok, slot, detail) VALUES (?1, ?2, ?3, ?4)",
            params![s.time as i64, s.ok, s.slot, s.detail],
        )?;
        tx.execute("DELETE FROM system_health WHERE seq <= (SELECT MAX(seq) FROM system_health) - ?1", [keep])?;
        tx.commit()?;
        Ok(())
    }

    /// The newest `limit` health checks, oldest first.
    pub fn health(&self, limit: u32) -> Result<Vec<HealthSample>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT time, ok, slot, detail FROM (SELECT * FROM system_health ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(HealthSample { time: r.get::<_, i64>(0)? as u64, ok: r.get(1)?, slot: r.get(2)?, detail: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use den_core::system::{Phase, Slot};

    #[test]
    fn state_changes_are_all_or_nothing_and_health_is_bounded() {
        let s = Store::memory().unwrap();
        assert_eq!(s.system_state().unwrap(), SystemState::default());
        s.modify_system(|st| {
            st.active = Slot::B;
            Ok::<_, StoreError>(())
        })
        .unwrap();
        let failed: Result<(), StoreError> = s.modify_system(|st| {
            st.phase = Phase::Writing { update: 1, slot: Slot::A };
            Err(StoreError::NotFound { kind: "x", name: "y".into() })
        });
        assert!(failed.is_err());
        let st = s.system_state().unwrap();
        assert_eq!((st.active, st.phase), (Slot::B, Phase::Steady), "the failed change left nothing behind");
        for i in 0..10u64 {
            let h = HealthSample { time: i, ok: i % 2 == 0, slot: "a".into(), detail: format!("check {i}") };
            s.add_health(&h, 4).unwrap();
        }
        let kept = s.health(3).unwrap();
        assert_eq!(kept.iter().map(|h| h.time).collect::<Vec<_>>(), [7, 8, 9]);
        assert_eq!(s.health(100).unwrap().len(), 4);
    }
}
