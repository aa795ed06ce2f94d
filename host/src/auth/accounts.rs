//! Accounts: adding users, logging in (rate-limited), making and checking API tokens, and
//! turning a user or token into a [`Caller`].

use super::limiter::Limiter;
use super::{password, token, Caller, Role, TokenScope};
use crate::model::{valid_name, FieldError};
use crate::store::{now, Store, StoreError, TokenRecord};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a login session token lives.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Names that belong to Den itself.
const RESERVED: [&str; 2] = ["root", "dend"];

/// Why a request was not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No valid credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials, not enough rights (403).
    #[error("{0}")]
    Forbidden(String),
    /// Too many failed logins (429).
    #[error("too many failed logins; try again in {} s", .0.as_secs().max(1))]
    RateLimited(Duration),
    /// A field is invalid (400).
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(FieldError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid(field: &'static str, message: impl Into<String>) -> AuthError {
    AuthError::Invalid(FieldError { field, message: message.into() })
}

/// What a new token should be (`POST /api/v1/tokens`).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Whose token (default: the caller's; others' only for admins).
    #[serde(default)]
    pub user: Option<String>,
    /// What it is for.
    pub name: String,
    /// Highest role it carries (default: its user's).
    #[serde(default)]
    pub role: Option<Role>,
    /// VM names it is limited to.
    #[serde(default)]
    pub vms: Option<Vec<String>>,
    /// Lifetime in seconds (default: until revoked).
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A token just made: its record and the secret string, shown once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewToken {
    /// The record.
    #[serde(flatten)]
    pub record: TokenRecord,
    /// `den_<id>_<secret>`: the only time it is shown.
    pub token: String,
}

/// The accounts service.
#[derive(Default)]
pub struct Accounts {
    limiter: Limiter,
    /// One-shot console tickets for browsers.
    pub tickets: super::ticket::Tickets,
}

impl Accounts {
    /// Adds a user; `password` is hashed with argon2id.
    pub async fn add_user(
        &self,
        store: &Store,
        name: &str,
        pw: Option<String>,
        role: Option<Role>,
    ) -> Result<(), AuthError> {
        if name.len() > 32 || !valid_name(name) {
            return Err(invalid("name", format!("`{name}` is not a user name: a-z, 0-9 and -, 1 to 32 characters")));
        }
        if RESERVED.contains(&name) {
            return Err(invalid("name", format!("`{name}` is reserved for Den itself")));
        }
        let hash = match pw {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        Ok(store.insert_user(name, hash.as_deref(), role)?)
    }

    /// Sets a user's password.
    pub async fn set_password(&self, store: &Store, name: &str, pw: String) -> Result<(), AuthError> {
        let hash = hash_password(pw).await?;
        Ok(store.set_password(name, Some(&hash))?)
    }

    /// The identity of `user` with their own rights (no token cap).
    pub fn caller(&self, store: &Store, user: &str) -> Result<Caller, AuthError> {
        let Some(crate::store::UserAuth { role, .. }) = store.user_auth(user)? else {
            return Err(AuthError::Unauthorized(format!("user `{user}` no longer exists")));
        };
        Ok(Caller { user: user.into(), global: role, grants: Arc::new(store.grants_of(user)?), token: None })
    }

    /// Checks a bearer token; the caller it stands for, capped by the token.
    pub fn verify_token(&self, store: &Store, presented: &str) -> Result<Caller, AuthError> {
        let bad = || AuthError::Unauthorized("the API token is not valid (revoked, expired or mistyped)".into());
        let (id, secret) = token::parse(presented).ok_or_else(bad)?;
        let (rec, hash) = store.token(id)?.ok_or_else(bad)?;
        if !token::same(&token::digest(secret), &hash) || rec.expires.is_some_and(|e| e <= now()) {
            return Err(bad());
        }
        let mut caller = self.caller(store, &rec.user)?;
        if let Some(cap) = rec.scope.role {
            caller.global = caller.global.map(|g| g.min(cap));
        }
        caller.token = Some(rec.scope);
        Ok(caller)
    }

    /// Logs in with a password: a session token valid for [`SESSION_TTL`]. Failed attempts
    /// count per user name and per source address (`from`).
    pub async fn login(&self, store: &Store, user: &str, pw: &str, from: &str) -> Result<NewToken, AuthError> {
        self.check_password(store, user, pw, from).await?;
        let _ = store.purge_expired_tokens();
        self.make_token(store, user, "session", None, None, Some(SESSION_TTL))
    }

    /// Checks `user`'s password (the API's login and the SSH gateway's password method), within
    /// the failure limits per user name and per source address (`from`).
    pub async fn check_password(&self, store: &Store, user: &str, pw: &str, from: &str) -> Result<(), AuthError> {
        self.not_limited(user, from)?;
        let stored = store.user_auth(user)?.and_then(|u| u.password_hash);
        // Unknown users cost the same time as wrong passwords.
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        let pw = pw.to_string();
        let ok = tokio::task::spawn_blocking(move || password::verify(&pw, &hash)).await.unwrap_or(false);
        if !ok {
            self.failed_login(user, from);
            return Err(AuthError::Unauthorized("wrong user name or password".into()));
        }
        self.limiter.succeeded(&limit_keys(user, from)[0]);
        Ok(())
    }

    /// Refuses when `user` or the address `from` failed too often lately.
    pub fn not_limited(&self, user: &str, from: &str) -> Result<(), AuthError> {
        match self.limiter.blocked(&limit_keys(user, from), Instant::now()) {
            Some(wait) => Err(AuthError::RateLimited(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed login (any method) of `user` from `from`.
    pub fn failed_login(&self, user: &str, from: &str) {
        self.limiter.failed(&limit_keys(user, from), Instant::now());
    }

    /// Makes an API token for `user`, as `caller` asks: for themselves, or for anyone when
    /// admin; `role` and `vms` can narrow it; `ttl` makes it expire.
    pub fn create_token(&self, store: &Store, caller: &Caller, req: TokenRequest) -> Result<NewToken, AuthError> {
        let TokenRequest { user, name, role, vms, expires_in } = req;
        let ttl = expires_in.map(Duration::from_secs);
        let name = name.as_str();
        let user = user.as_deref().unwrap_or(&caller.user);
        if user != caller.user && !caller.is_admin() {
            return Err(AuthError::Forbidden("only an admin makes tokens for other users".into()));
        }
        if store.user_auth(user)?.is_none() {
            return Err(invalid("user", format!("user `{user}` not found; `den user ls` lists users")));
        }
        if name.is_empty() || name.len() > 64 || name.contains(['\n', '\0']) {
            return Err(invalid("name", "give the token a name of 1 to 64 characters (what it is for)"));
        }
        // A token never carries more than the token used to make it.
        let role = match (role, caller.token.as_ref().and_then(|t| t.role)) {
            (Some(r), Some(cap)) => Some(r.min(cap)),
            (r, cap) => r.or(cap),
        };
        let vms = vms.or_else(|| caller.token.as_ref().and_then(|t| t.vms.clone()));
        self.make_token(store, user, name, role, vms, ttl)
    }

    fn make_token(
        &self,
        store: &Store,
        user: &str,
        name: &str,
        role: Option<Role>,
        vms: Option<Vec<String>>,
        ttl: Option<Duration>,
    ) -> Result<NewToken, AuthError> {
        let (id, secret, hash) =
            token::generate().map_err(|e| AuthError::Unauthorized(format!("cannot make a token: {e}")))?;
        let t = now();
        let record = TokenRecord {
            id: id.clone(),
            user: user.into(),
            name: name.into(),
            scope: TokenScope { id, role, vms },
            created: t,
            expires: ttl.map(|d| t + d.as_secs() as i64),
        };
        store.insert_token(&record, &hash)?;
        Ok(NewToken { record, token: secret })
    }
}

async fn hash_password(pw: String) -> Result<String, AuthError> {
    password::acceptable(&pw).map_err(|m| invalid("password", m))?;
    tokio::task::spawn_blocking(move || password::hash(&pw))
        .await
        .map_err(|e| invalid("password", e.to_string()))?
        .map_err(|e| invalid("password", e))
}

/// A valid argon2id hash of a random password nobody knows, verified for unknown users so that
/// a login's duration does not tell whether the user exists.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4HbLeqcxdTvmGSbp+3O5ZHVVSlKkeVxv0Eo6sqCDEzU";

/// The limiter's keys for a login of `user` from `from`: the user's first.
fn limit_keys(user: &str, from: &str) -> [String; 2] {
    [format!("user:{user}"), format!("addr:{from}")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn users_logins_tokens_and_limits() {
        let store = Store::memory().unwrap();
        let acc = Accounts::default();
        assert!(!password::verify("x", DUMMY_HASH) && argon2::PasswordHash::new(DUMMY_HASH).is_ok());
        acc.add_user(&store, "alice", Some("alice-password".into()), Some(Role::Operator)).await.unwrap();
        assert!(matches!(acc.add_user(&store, "root", None, None).await, Err(AuthError::Invalid(_))));
        assert!(
            matches!(acc.add_user(&store, "bob", Some("short".into()), None).await, Err(AuthError::Invalid(f)) if f.field == "password")
        );
        let s = acc.login(&store, "alice", "alice-password", "10.0.0.9").await.unwrap();
        let c = acc.verify_token(&store, &s.token).unwrap();
        assert_eq!((c.user.as_str(), c.global), ("alice", Some(Role::Operator)));
        assert!(s.record.expires.is_some());
        let req = TokenRequest { user: None, name: "ro".into(), role: Some(Role::Viewer), vms: None, expires_in: None };
        let ro = acc.create_token(&store, &c, req).unwrap();
        let rc = acc.verify_token(&store, &ro.token).unwrap();
        assert_eq!(rc.global, Some(Role::Viewer), "narrower than its user");
        let up = TokenRequest { user: None, name: "up".into(), role: Some(Role::Admin), vms: None, expires_in: None };
        let t2 = acc.create_token(&store, &rc, up).unwrap();
        assert_eq!(
            acc.verify_token(&store, &t2.token).unwrap().global,
            Some(Role::Viewer),
            "no escalation through tokens"
        );
        let other =
            TokenRequest { user: Some("root".into()), name: "x".into(), role: None, vms: None, expires_in: None };
        assert!(matches!(acc.create_token(&store, &c, other), Err(AuthError::Forbidden(_))));
        store.delete_token(&ro.record.id).unwrap();
        assert!(matches!(acc.verify_token(&store, &ro.token), Err(AuthError::Unauthorized(_))), "revoked");
        for _ in 0..super::super::limiter::MAX_FAILURES {
            assert!(matches!(acc.login(&store, "alice", "wrong", "10.0.0.9").await, Err(AuthError::Unauthorized(_))));
        }
        assert!(matches!(
            acc.login(&store, "alice", "alice-password", "10.0.0.9").await,
            Err(AuthError::RateLimited(_))
        ));
    }
}
