//! Network records.

use super::{now, Store, StoreError};
use den_core::net::NetworkSpec;
use rusqlite::params;

impl Store {
    /// Adds a network; fails if the name is taken.
    pub fn insert_network(&self, net: &NetworkSpec) -> Result<(), StoreError> {
        let spec = serde_json::to_string(net).unwrap_or_default();
        let res = self
            .lock()
            .execute("INSERT INTO networks (name, spec, created) VALUES (?1, ?2, ?3)", params![net.name, spec, now()]);
        match res {
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Exists { kind: "network", name: net.name.clone() })
            }
            other => other.map(|_| ()).map_err(StoreError::from),
        }
    }

    /// Stored networks, by name.
    pub fn networks(&self) -> Result<Vec<NetworkSpec>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT name, spec FROM networks ORDER BY name")?;
        let rows: Vec<(String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(name, spec)| {
                serde_json::from_str(&spec).map_err(|e| StoreError::Corrupt { id: name, why: e.to_string() })
            })
            .collect()
    }

    /// Removes a network record.
    pub fn delete_network(&self, name: &str) -> Result<(), StoreError> {
        let n = self.lock().execute("DELETE FROM networks WHERE name = ?1", [name])?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "network", name: name.into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crud() {
        let s = Store::memory().unwrap();
        let n = NetworkSpec {
            name: "lab".into(),
            subnet: "10.88.0.0/24".into(),
            isolated: true,
            internet: true,
            audit: true,
            host_ports: vec![],
        };
        s.insert_network(&n).unwrap();
        assert!(matches!(s.insert_network(&n), Err(StoreError::Exists { .. })));
        assert_eq!(s.networks().unwrap(), vec![n]);
        s.delete_network("lab").unwrap();
        assert!(s.networks().unwrap().is_empty());
        assert!(matches!(s.delete_network("lab"), Err(StoreError::NotFound { .. })));
    }
}
