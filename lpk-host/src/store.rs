//! App records and their traffic audit: the `apps` and `app_traffic` tables (made by den-store's
//! migrations), queried here by their owner.

use crate::{AppRecord, AppState, TrafficRecord};
use den_store::{now, Store, StoreError};
use rusqlite::{params, OptionalExtension};

fn corrupt(id: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt { id: id.to_string(), why: e.to_string() }
}

/// The app tables, implemented for den-store's [`Store`].
pub trait AppTable {
    /// Claims a package id and subdomain for a new app.
    fn insert_app(&self, app: &AppRecord) -> Result<(), StoreError>;

    /// Replaces an app's record (same package id).
    fn put_app(&self, app: &AppRecord) -> Result<(), StoreError>;

    /// An app by package id or subdomain.
    fn app(&self, name: &str) -> Result<AppRecord, StoreError>;

    /// Every app, by package id.
    fn apps(&self) -> Result<Vec<AppRecord>, StoreError>;

    /// Sets an app's state and error.
    fn set_app_state(&self, package: &str, state: AppState, error: Option<String>) -> Result<AppRecord, StoreError>;

    /// Removes an app's record and its traffic log.
    fn delete_app(&self, package: &str) -> Result<(), StoreError>;

    /// Appends traffic records of an app, keeping the newest `keep` of each verdict.
    fn add_traffic(&self, app: &str, recs: &[TrafficRecord], keep: i64) -> Result<(), StoreError>;

    /// An app's traffic after `after`, oldest first, at most `limit`.
    fn traffic(&self, app: &str, after: i64, limit: u32) -> Result<Vec<TrafficRecord>, StoreError>;
}

impl AppTable for Store {
    /// Claims a package id and subdomain for a new app.
    fn insert_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let rec = serde_json::to_string(app).map_err(|e| corrupt(&app.package, e))?;
        let conn = self.lock();
        let taken: Option<String> = conn
            .query_row("SELECT package FROM apps WHERE subdomain = ?1", [&app.subdomain], |r| r.get(0))
            .optional()?;
        if let Some(other) = taken.filter(|o| *o != app.package) {
            return Err(StoreError::Exists {
                kind: "subdomain",
                name: format!("{} (used by app {other})", app.subdomain),
            });
        }
        let res = conn.execute(
            "INSERT INTO apps (package, subdomain, state, record, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![app.package, app.subdomain, app.state.as_str(), rec, now()],
        );
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Exists { kind: "app", name: app.package.clone() })
            }
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    /// Replaces an app's record (same package id).
    fn put_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let rec = serde_json::to_string(app).map_err(|e| corrupt(&app.package, e))?;
        let n = self.lock().execute(
            "UPDATE apps SET subdomain = ?2, state = ?3, record = ?4, updated = ?5 WHERE package = ?1",
            params![app.package, app.subdomain, app.state.as_str(), rec, now()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "app", name: app.package.clone() });
        }
        Ok(())
    }

    /// An app by package id or subdomain.
    fn app(&self, name: &str) -> Result<AppRecord, StoreError> {
        let rec: Option<(String, String)> = self
            .lock()
            .query_row("SELECT package, record FROM apps WHERE package = ?1 OR subdomain = ?1", [name], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let (id, rec) = rec.ok_or_else(|| StoreError::NotFound { kind: "app", name: name.into() })?;
        serde_json::from_str(&rec).map_err(|e| corrupt(&id, e))
    }

    /// Every app, by package id.
    fn apps(&self) -> Result<Vec<AppRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT package, record FROM apps ORDER BY package")?;
        let rows: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        rows.into_iter().map(|(id, rec)| serde_json::from_str(&rec).map_err(|e| corrupt(&id, e))).collect()
    }

    /// Sets an app's state and error.
    fn set_app_state(&self, package: &str, state: AppState, error: Option<String>) -> Result<AppRecord, StoreError> {
        let mut app = self.app(package)?;
        app.state = state;
        app.error = error;
        app.updated = now();
        self.put_app(&app)?;
        Ok(app)
    }

    /// Removes an app's record and its traffic log.
    fn delete_app(&self, package: &str) -> Result<(), StoreError> {
        let conn = self.lock();
        conn.execute("DELETE FROM app_traffic WHERE app = ?1", [package])?;
        let n = conn.execute("DELETE FROM apps WHERE package = ?1", [package])?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "app", name: package.into() });
        }
        Ok(())
    }

    /// Appends traffic records of an app, keeping the newest `keep` of each verdict.
    fn add_traffic(&self, app: &str, recs: &[TrafficRecord], keep: i64) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for r in recs {
            tx.execute(
                "INSERT INTO app_traffic (app, time, proto, source, dest, port, verdict) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![app, r.time, r.proto, r.source, r.dest, r.port, r.verdict],
            )?;
        }
        // Allowed and denied attempts each keep their newest `keep`: a flood of denied ones
        // (which an app's service chooses) cannot push out the record of an allowed one.
        let mut verdicts: Vec<&str> = recs.iter().map(|r| r.verdict.as_str()).collect();
        verdicts.dedup();
        for verdict in verdicts {
            tx.execute(
                "DELETE FROM app_traffic WHERE app = ?1 AND verdict = ?2 AND seq <= \
                 (SELECT seq FROM app_traffic WHERE app = ?1 AND verdict = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3)",
                params![app, verdict, keep],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// An app's traffic after `after`, oldest first, at most `limit`.
    fn traffic(&self, app: &str, after: i64, limit: u32) -> Result<Vec<TrafficRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT seq, time, proto, source, dest, port, verdict FROM app_traffic WHERE app = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![app, after, limit], |r| {
            Ok(TrafficRecord {
                seq: r.get(0)?,
                time: r.get(1)?,
                proto: r.get(2)?,
                source: r.get(3)?,
                dest: r.get(4)?,
                port: r.get(5)?,
                verdict: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(package: &str, subdomain: &str) -> AppRecord {
        let mut a = AppRecord::fixture(package, &format!("application: {{subdomain: {subdomain}}}"));
        a.state = AppState::Installing;
        a
    }

    #[test]
    fn apps_are_unique_by_package_and_subdomain() {
        let s = Store::memory().unwrap();
        s.insert_app(&app("a.one", "one")).unwrap();
        assert!(matches!(s.insert_app(&app("a.one", "other")), Err(StoreError::Exists { kind: "app", .. })));
        assert!(matches!(s.insert_app(&app("a.two", "one")), Err(StoreError::Exists { kind: "subdomain", .. })));
        assert_eq!(s.app("one").unwrap().package, "a.one", "found by subdomain too");
        let a = s.set_app_state("a.one", AppState::Stopped, None).unwrap();
        assert_eq!(s.app("a.one").unwrap(), a);
        assert_eq!(s.apps().unwrap().len(), 1);
        s.delete_app("a.one").unwrap();
        assert!(matches!(s.app("a.one"), Err(StoreError::NotFound { .. })));
    }

    #[test]
    fn traffic_keeps_the_newest() {
        let s = Store::memory().unwrap();
        let rec = |port| TrafficRecord {
            seq: 0,
            time: 5,
            proto: "tcp".into(),
            source: "10.90.0.2".into(),
            dest: "203.0.113.7".into(),
            port,
            verdict: "denied".into(),
        };
        let recs: Vec<_> = (1..=10).map(rec).collect();
        s.add_traffic("a.one", &recs, 4).unwrap();
        let kept = s.traffic("a.one", 0, 100).unwrap();
        assert_eq!(kept.iter().map(|r| r.port).collect::<Vec<_>>(), [7, 8, 9, 10]);
        assert_eq!(s.traffic("a.one", kept[1].seq, 100).unwrap().len(), 2);
        assert!(s.traffic("a.two", 0, 100).unwrap().is_empty());
        // An allowed attempt outlives any number of denied ones.
        s.add_traffic("a.one", &[TrafficRecord { verdict: "allowed".into(), ..rec(443) }], 4).unwrap();
        s.add_traffic("a.one", &(20..40).map(rec).collect::<Vec<_>>(), 4).unwrap();
        let kept = s.traffic("a.one", 0, 100).unwrap();
        assert_eq!(kept.iter().map(|r| r.port).collect::<Vec<_>>(), [443, 36, 37, 38, 39]);
    }
}
