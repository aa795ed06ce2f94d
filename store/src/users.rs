//! Users, per-VM grants and API tokens.

use super::{now, Store, StoreError};
pub use den_core::users::{KeyRecord, TokenRecord, UserRecord};
use den_core::users::{Role, TokenScope};
use rusqlite::{params, OptionalExtension};
use std::collections::HashMap;

/// What logging in and authorising need of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserAuth {
    /// Global role.
    pub role: Option<Role>,
    /// argon2id PHC string, when a password is set.
    pub password_hash: Option<String>,
}

fn exists(kind: &'static str, name: &str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    let name = name.to_string();
    move |e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
            StoreError::Exists { kind, name }
        }
        e => StoreError::Sql(e),
    }
}

fn role_of(s: Option<String>) -> Option<Role> {
    s.as_deref().and_then(Role::parse)
}

impl Store {
    /// Adds a user.
    pub fn insert_user(&self, name: &str, password_hash: Option<&str>, role: Option<Role>) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO users (name, password, role, created) VALUES (?1, ?2, ?3, ?4)",
                params![name, password_hash, role.map(Role::as_str), now()],
            )
            .map_err(exists("user", name))?;
        Ok(())
    }

    /// A user's global role and password hash, if the user exists.
    pub fn user_auth(&self, name: &str) -> Result<Option<UserAuth>, StoreError> {
        let row = self
            .lock()
            .query_row("SELECT role, password FROM users WHERE name = ?1", [name], |r| {
                Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Option<String>>(1)?))
            })
            .optional()?;
        Ok(row.map(|(role, password_hash)| UserAuth { role: role_of(role), password_hash }))
    }

    /// All users with their grants, by name.
    pub fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT name, role, password IS NOT NULL, created FROM users ORDER BY name")?;
        let mut users: Vec<UserRecord> = stmt
            .query_map([], |r| {
                Ok(UserRecord {
                    name: r.get(0)?,
                    role: role_of(r.get(1)?),
                    has_password: r.get(2)?,
                    grants: HashMap::new(),
                    created: r.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        let mut stmt = conn.prepare_cached("SELECT g.user, v.name, g.role FROM grants g JOIN vms v ON v.id = g.vm")?;
        let rows: Vec<(String, String, String)> =
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
        for (user, vm, role) in rows {
            if let (Some(u), Some(role)) = (users.iter_mut().find(|u| u.name == user), Role::parse(&role)) {
                u.grants.insert(vm, role);
            }
        }
        Ok(users)
    }

    /// Sets (`Some`) or clears a user's password hash.
    pub fn set_password(&self, name: &str, hash: Option<&str>) -> Result<(), StoreError> {
        self.update_user(name, "UPDATE users SET password = ?2 WHERE name = ?1", hash)
    }

    /// Sets a user's global role.
    pub fn set_role(&self, name: &str, role: Option<Role>) -> Result<(), StoreError> {
        self.update_user(name, "UPDATE users SET role = ?2 WHERE name = ?1", role.map(Role::as_str))
    }

    fn update_user(&self, name: &str, sql: &str, value: Option<&str>) -> Result<(), StoreError> {
        if self.lock().execute(sql, params![name, value])? == 0 {
            return Err(StoreError::NotFound { kind: "user", name: name.into() });
        }
        Ok(())
    }

    /// Removes a user (their grants and tokens go with them).
    pub fn delete_user(&self, name: &str) -> Result<(), StoreError> {
        if self.lock().execute("DELETE FROM users WHERE name = ?1", [name])? == 0 {
            return Err(StoreError::NotFound { kind: "user", name: name.into() });
        }
        Ok(())
    }

    /// Grants `role` on VM `vm_id` (`None` revokes).
    pub fn set_grant(&self, user: &str, vm_id: &str, role: Option<Role>) -> Result<(), StoreError> {
        let conn = self.lock();
        match role {
            Some(r) => conn
                .execute(
                    "INSERT INTO grants (user, vm, role) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user, vm) DO UPDATE SET role = excluded.role",
                    params![user, vm_id, r.as_str()],
                )
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation => {
                        StoreError::NotFound { kind: "user", name: user.into() }
                    }
                    e => StoreError::Sql(e),
                })?,
            None => conn.execute("DELETE FROM grants WHERE user = ?1 AND vm = ?2", params![user, vm_id])?,
        };
        Ok(())
    }

    /// A user's grants by VM id.
    pub fn grants_of(&self, user: &str) -> Result<HashMap<String, Role>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached("SELECT vm, role FROM grants WHERE user = ?1")?;
        let rows: Vec<(String, String)> =
            stmt.query_map([user], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
        Ok(rows.into_iter().filter_map(|(vm, r)| Some((vm, Role::parse(&r)?))).collect())
    }

    /// Stores a token (its secret's hash only).
    pub fn insert_token(&self, t: &TokenRecord, hash: &str) -> Result<(), StoreError> {
        let vms = t.scope.vms.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default());
        self.lock()
            .execute(
                "INSERT INTO tokens (id, user, hash, name, role, vms, created, expires, session) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    t.id,
                    t.user,
                    hash,
                    t.name,
                    t.scope.role.map(Role::as_str),
                    vms,
                    t.created,
                    t.expires,
                    t.scope.session
                ],
            )
            .map_err(exists("token", &t.id))?;
        Ok(())
    }

    /// A token and its hash by id.
    pub fn token(&self, id: &str) -> Result<Option<(TokenRecord, String)>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(&format!("{TOKEN_SELECT} WHERE id = ?1"))?;
        Ok(stmt.query_row([id], token_row).optional()?)
    }

    /// Tokens, of one user or all.
    pub fn tokens(&self, user: Option<&str>) -> Result<Vec<TokenRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached(&format!("{TOKEN_SELECT} WHERE ?1 IS NULL OR user = ?1 ORDER BY created"))?;
        let rows: Vec<(TokenRecord, String)> = stmt.query_map([user], token_row)?.collect::<Result<_, _>>()?;
        Ok(rows.into_iter().map(|(t, _)| t).collect())
    }

    /// Revokes a token.
    pub fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        if self.lock().execute("DELETE FROM tokens WHERE id = ?1", [id])? == 0 {
            return Err(StoreError::NotFound { kind: "token", name: id.into() });
        }
        Ok(())
    }

    /// Removes expired tokens.
    pub fn purge_expired_tokens(&self) -> Result<usize, StoreError> {
        Ok(self.lock().execute("DELETE FROM tokens WHERE expires IS NOT NULL AND expires <= ?1", [now()])?)
    }
}

impl Store {
    /// Adds an SSH key to a user; a key already added (to anyone) is refused.
    pub fn insert_key(&self, user: &str, fingerprint: &str, line: &str) -> Result<(), StoreError> {
        if self.user_auth(user)?.is_none() {
            return Err(StoreError::NotFound { kind: "user", name: user.into() });
        }
        self.lock()
            .execute(
                "INSERT INTO ssh_keys (fingerprint, user, line, created) VALUES (?1, ?2, ?3, ?4)",
                params![fingerprint, user, line, now()],
            )
            .map_err(exists("SSH key", fingerprint))?;
        Ok(())
    }

    /// A user's SSH keys, or everyone's.
    pub fn keys(&self, user: Option<&str>) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT fingerprint, user, line, created FROM ssh_keys WHERE ?1 IS NULL OR user = ?1 ORDER BY created",
        )?;
        let rows = stmt.query_map([user], |r| {
            Ok(KeyRecord { fingerprint: r.get(0)?, user: r.get(1)?, line: r.get(2)?, created: r.get(3)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The key with this fingerprint, whoever's it is.
    pub fn key(&self, fingerprint: &str) -> Result<Option<KeyRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT fingerprint, user, line, created FROM ssh_keys WHERE fingerprint = ?1")?;
        let row = stmt
            .query_row([fingerprint], |r| {
                Ok(KeyRecord { fingerprint: r.get(0)?, user: r.get(1)?, line: r.get(2)?, created: r.get(3)? })
            })
            .optional()?;
        Ok(row)
    }

    /// Removes one of a user's SSH keys.
    pub fn delete_key(&self, user: &str, fingerprint: &str) -> Result<(), StoreError> {
        let n = self
            .lock()
            .execute("DELETE FROM ssh_keys WHERE user = ?1 AND fingerprint = ?2", params![user, fingerprint])?;
        if n == 0 {
            return Err(StoreError::NotFound { kind: "SSH key", name: fingerprint.into() });
        }
        Ok(())
    }
}

const TOKEN_SELECT: &str = "SELECT id, user, hash, name, role, vms, created, expires, session FROM tokens";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenRecord, String)> {
    let vms: Option<String> = r.get(5)?;
    let scope = TokenScope {
        id: r.get(0)?,
        role: role_of(r.get(4)?),
        vms: vms.and_then(|v| serde_json::from_str(&v).ok()),
        expires: r.get(7)?,
        session: r.get(8)?,
    };
    Ok((
        TokenRecord { id: r.get(0)?, user: r.get(1)?, name: r.get(3)?, scope, created: r.get(6)?, expires: r.get(7)? },
        r.get(2)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_grants_tokens() {
        let s = Store::memory().unwrap();
        s.insert_user("alice", Some("$hash"), Some(Role::Viewer)).unwrap();
        assert!(matches!(s.insert_user("alice", None, None), Err(StoreError::Exists { .. })));
        assert_eq!(
            s.user_auth("alice").unwrap(),
            Some(UserAuth { role: Some(Role::Viewer), password_hash: Some("$hash".into()) })
        );
        assert_eq!(s.user_auth("bob").unwrap(), None);
        s.insert_vm(&den_core::testkit::vm_record("web1")).unwrap();
        s.set_grant("alice", "id-web1", Some(Role::Operator)).unwrap();
        assert!(s.set_grant("nobody", "id-web1", Some(Role::Operator)).is_err());
        assert_eq!(s.grants_of("alice").unwrap().get("id-web1"), Some(&Role::Operator));
        assert_eq!(s.users().unwrap()[0].grants.get("web1"), Some(&Role::Operator));
        let t = TokenRecord {
            id: "0123456789abcdef".into(),
            user: "alice".into(),
            name: "ci".into(),
            scope: TokenScope {
                id: "0123456789abcdef".into(),
                role: Some(Role::Viewer),
                vms: Some(vec!["web1".into()]),
                expires: None,
                session: false,
            },
            created: 1,
            expires: None,
        };
        s.insert_token(&t, "h").unwrap();
        assert_eq!(s.token(&t.id).unwrap(), Some((t.clone(), "h".into())));
        assert_eq!(s.tokens(Some("alice")).unwrap(), vec![t.clone()]);
        assert!(s.tokens(Some("bob")).unwrap().is_empty());
        s.delete_vm("id-web1").unwrap();
        assert!(s.grants_of("alice").unwrap().is_empty(), "grants go with the VM");
        s.insert_key("alice", "SHA256:x", "ssh-ed25519 AAAA a").unwrap();
        assert!(matches!(s.insert_key("alice", "SHA256:x", "dup"), Err(StoreError::Exists { .. })));
        assert!(matches!(s.insert_key("bob", "SHA256:y", "k"), Err(StoreError::NotFound { .. })));
        assert_eq!(s.keys(Some("alice")).unwrap().len(), 1);
        assert_eq!(s.key("SHA256:x").unwrap().map(|k| k.user), Some("alice".into()));
        assert_eq!(s.key("SHA256:nope").unwrap(), None);
        s.delete_user("alice").unwrap();
        assert_eq!(s.token(&t.id).unwrap(), None, "tokens go with the user");
        assert!(s.keys(None).unwrap().is_empty(), "keys go with the user");
    }
}
