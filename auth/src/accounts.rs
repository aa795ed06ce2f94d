//! Accounts: adding users, logging in (rate-limited), making and checking API tokens, and
//! turning a user or token into a [`Caller`].

use super::limiter::{key_keys, password_keys, Limiter};
use super::{password, token, Caller, Role, TokenScope};
use den_core::users::NewToken;
use den_core::{valid_name, FieldError};
use den_store::{now, Store, StoreError, TokenRecord};
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
    /// Too many passwords are being checked at once (429).
    #[error("too many logins are being checked at once; try again in a few seconds")]
    Busy,
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

/// Password hashes computed at once: each takes 19 MiB and a core for about 50 ms.
pub const MAX_HASHES: usize = 2;
/// How long a login waits for a free hashing slot before it gets [`AuthError::Busy`].
pub const HASH_WAIT: Duration = Duration::from_secs(5);

/// The accounts service.
pub struct Accounts {
    limiter: Limiter,
    /// Bounds the argon2 work (memory and CPU) running at once, whoever asks for it.
    hashing: tokio::sync::Semaphore,
    /// One-shot console tickets for browsers.
    pub tickets: super::ticket::Tickets,
}

impl Default for Accounts {
    fn default() -> Accounts {
        Accounts {
            limiter: Limiter::default(),
            hashing: tokio::sync::Semaphore::new(MAX_HASHES),
            tickets: Default::default(),
        }
    }
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
            Some(p) => Some(self.hash_password(p).await?),
            None => None,
        };
        Ok(store.insert_user(name, hash.as_deref(), role)?)
    }

    /// Sets a user's password.
    pub async fn set_password(&self, store: &Store, name: &str, pw: String) -> Result<(), AuthError> {
        let hash = self.hash_password(pw).await?;
        Ok(store.set_password(name, Some(&hash))?)
    }

    /// The identity of `user` with their own rights (no token cap).
    pub fn caller(&self, store: &Store, user: &str) -> Result<Caller, AuthError> {
        let Some(den_store::UserAuth { role, .. }) = store.user_auth(user)? else {
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
        let expires = Some(now() + SESSION_TTL.as_secs() as i64);
        let scope = TokenScope { id: String::new(), role: None, vms: None, expires, session: true };
        self.make_token(store, user, "session", scope)
    }

    /// Checks `user`'s password (the API's login, the ingress's and the SSH gateway's password
    /// method). The attempt is counted against the user name and the address `from` before the
    /// hash runs, and at most [`MAX_HASHES`] hashes run at once.
    pub async fn check_password(&self, store: &Store, user: &str, pw: &str, from: &str) -> Result<(), AuthError> {
        let attempt =
            self.limiter.attempt(password_keys(user, from), Instant::now()).map_err(AuthError::RateLimited)?;
        let stored = store.user_auth(user)?.and_then(|u| u.password_hash);
        // Unknown users cost the same time as wrong passwords.
        let hash = stored.unwrap_or_else(|| DUMMY_HASH.to_string());
        let pw = pw.to_string();
        let ok = self.hashing_slot(move || password::verify(&pw, &hash)).await?;
        if !ok {
            return Err(AuthError::Unauthorized("wrong user name or password".into()));
        }
        self.limiter.succeeded(attempt);
        Ok(())
    }

    /// Checks and hashes a new password in a hashing slot.
    async fn hash_password(&self, pw: String) -> Result<String, AuthError> {
        password::acceptable(&pw).map_err(|m| invalid("password", m))?;
        self.hashing_slot(move || password::hash(&pw)).await?.map_err(|e| invalid("password", e))
    }

    /// Runs argon2 work `f` when a hashing slot is free, waiting at most [`HASH_WAIT`].
    async fn hashing_slot<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T, AuthError> {
        let permit = tokio::time::timeout(HASH_WAIT, self.hashing.acquire())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let out = tokio::task::spawn_blocking(f).await.map_err(|_| AuthError::Busy);
        drop(permit);
        out
    }

    /// Refuses when the address `from` offered wrong keys too often lately (public-key logins
    /// have their own budget: password failures never block them).
    pub fn key_login_allowed(&self, from: &str) -> Result<(), AuthError> {
        match self.limiter.blocked(&key_keys(from), Instant::now()) {
            Some(wait) => Err(AuthError::RateLimited(wait)),
            None => Ok(()),
        }
    }

    /// Counts a failed public-key login from `from`.
    pub fn failed_key_login(&self, from: &str) {
        self.limiter.failed(&key_keys(from), Instant::now());
    }

    /// Makes an API token for `user`, as `caller` asks: for themselves, or for anyone when
    /// admin; `role` and `vms` can narrow it; `ttl` makes it expire.
    pub fn create_token(&self, store: &Store, caller: &Caller, req: TokenRequest) -> Result<NewToken, AuthError> {
        let TokenRequest { user, name, role, vms, expires_in } = req;
        let ttl = expires_in.map(Duration::from_secs);
        let name = name.as_str();
        let vms = vms.map(|mut v| {
            v.sort();
            v.dedup();
            v
        });
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
        if let Some(v) = vms.iter().flatten().find(|v| v.is_empty() || v.len() > 64) {
            return Err(invalid("vms", format!("`{v}` is not a VM name")));
        }
        let ttl = ttl.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let expires = ttl.map(|s| now().saturating_add(s));
        // A token never carries more than the token used to make it.
        let (role, vms, expires) = super::policy::narrow(caller, role, vms, expires);
        self.make_token(store, user, name, TokenScope { id: String::new(), role, vms, expires, session: false })
    }

    /// Stores a new token for `user` with `scope` (its id is filled in here).
    fn make_token(&self, store: &Store, user: &str, name: &str, mut scope: TokenScope) -> Result<NewToken, AuthError> {
        let (id, secret, hash) =
            token::generate().map_err(|e| AuthError::Unauthorized(format!("cannot make a token: {e}")))?;
        scope.id = id.clone();
        let expires = scope.expires;
        let record = TokenRecord { id, user: user.into(), name: name.into(), scope, created: now(), expires };
        store.insert_token(&record, &hash)?;
        Ok(NewToken { record, token: secret })
    }
}

/// A valid argon2id hash of a random password nobody knows, verified for unknown users so that
/// a login's duration does not tell whether the user exists.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$4HbLeqcxdTvmGSbp+3O5ZHVVSlKkeVxv0Eo6sqCDEzU";

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
        for _ in 0..crate::limiter::MAX_FAILURES {
            assert!(matches!(acc.login(&store, "alice", "wrong", "10.0.0.9").await, Err(AuthError::Unauthorized(_))));
        }
        assert!(matches!(
            acc.login(&store, "alice", "alice-password", "10.0.0.9").await,
            Err(AuthError::RateLimited(_))
        ));
        assert!(acc.key_login_allowed("10.0.0.9").is_ok(), "password failures never block key logins");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_guesses_are_counted_before_hashing() {
        let store = Arc::new(Store::memory().unwrap());
        let acc = Arc::new(Accounts::default());
        acc.add_user(&store, "admin", Some("admin-password".into()), Some(Role::Admin)).await.unwrap();
        let guesses = (0..20).map(|i| {
            let (store, acc) = (store.clone(), acc.clone());
            tokio::spawn(async move { acc.check_password(&store, "admin", &format!("guess-{i}"), "10.0.0.7").await })
        });
        let results = futures_util::future::join_all(guesses).await;
        let hashed = results.iter().filter(|r| matches!(r, Ok(Err(AuthError::Unauthorized(_))))).count();
        let limited = results.iter().filter(|r| matches!(r, Ok(Err(AuthError::RateLimited(_))))).count();
        assert_eq!((hashed, limited), (crate::limiter::MAX_FAILURES, 20 - crate::limiter::MAX_FAILURES));
        assert!(acc.check_password(&store, "admin", "admin-password", "10.0.0.8").await.is_err(), "the user is spent");
        assert!(acc.key_login_allowed("10.0.0.7").is_ok());
        acc.failed_key_login("10.0.0.6");
        assert!(acc.key_login_allowed("10.0.0.6").is_ok(), "one wrong key is not a lockout");
    }
}
