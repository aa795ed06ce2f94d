//! `/api/v1/login`, `/whoami`, `/users` and `/tokens`.

use super::body::Body;
use super::ApiError;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use den_api_types::{AddedKey, KeyRecord, TokenRecord, UserRecord};
use den_auth::accounts::TokenRequest;
use den_auth::Transport;
use den_auth::{AuthError, Caller, NewToken, Role};
use den_vms::{Den, VmError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A login request.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub(super) user: String,
    password: String,
}

/// `POST /api/v1/login`: a session token (12 hours). Failed logins are rate-limited per user
/// and per source address (429 with `Retry-After`).
pub(super) async fn login(
    State(den): State<Arc<Den>>,
    State(accounts): State<Arc<den_auth::Accounts>>,
    Extension(transport): Extension<Transport>,
    Body(req): Body<Login>,
) -> Result<Json<NewToken>, Response> {
    password_login(&den, &accounts, &transport, &req).await.map(Json)
}

/// Checks a password login (audited, rate-limited): a new session token, or the error response.
pub(super) async fn password_login(
    den: &Den,
    accounts: &den_auth::Accounts,
    transport: &Transport,
    req: &Login,
) -> Result<NewToken, Response> {
    let from = match transport {
        Transport::Remote(addr) => addr.ip().to_string(),
        Transport::Local(c) => format!("local:{}", c.user),
    };
    match accounts.login(&den.store, &req.user, &req.password, &from).await {
        Ok(t) => {
            den.event(&req.user, "user.login", &req.user, &from);
            Ok(t)
        }
        Err(e) => {
            let retry = match &e {
                AuthError::RateLimited(d) => Some(d.as_secs().max(1)),
                AuthError::Busy => Some(2),
                _ => None,
            };
            den.event(&req.user, "user.login_failed", &req.user, &format!("{from}: {e}"));
            let mut resp = ApiError::from(e).into_response();
            if let Some(s) = retry {
                if let Ok(v) = s.to_string().parse() {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            Err(resp)
        }
    }
}

/// `GET /api/v1/whoami`.
pub(super) async fn whoami(Extension(c): Extension<Caller>) -> Json<Value> {
    Json(json!({"user": c.user, "role": c.global, "token": c.token}))
}

/// A new user.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    name: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    role: Option<Role>,
}

/// `GET /api/v1/users` (admin).
pub(super) async fn list(State(den): State<Arc<Den>>) -> Result<Json<Vec<UserRecord>>, ApiError> {
    Ok(Json(den.store.users()?))
}

/// `POST /api/v1/users` (admin): 201.
pub(super) async fn create(
    State(den): State<Arc<Den>>,
    State(accounts): State<Arc<den_auth::Accounts>>,
    Extension(c): Extension<Caller>,
    Body(u): Body<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    accounts.add_user(&den.store, &u.name, u.password, u.role).await?;
    den.event(&c.user, "user.created", &u.name, u.role.map(Role::as_str).unwrap_or("no global role"));
    Ok((StatusCode::CREATED, Json(json!({"name": u.name, "role": u.role}))))
}

/// `DELETE /api/v1/users/{name}` (admin): their grants and tokens go too.
pub(super) async fn delete(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    den.store.delete_user(&name).map_err(|e| ApiError::from(VmError::Store(e)))?;
    den.event(&c.user, "user.deleted", &name, "");
    Ok(Json(json!({"deleted": name})))
}

/// A password change.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPassword {
    password: String,
}

/// `PUT /api/v1/users/{name}/password` (the user or an admin).
pub(super) async fn password(
    State(den): State<Arc<Den>>,
    State(accounts): State<Arc<den_auth::Accounts>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    Body(p): Body<NewPassword>,
) -> Result<Json<Value>, ApiError> {
    accounts.set_password(&den.store, &name, p.password).await?;
    den.event(&c.user, "user.password_set", &name, "");
    Ok(Json(json!({"user": name})))
}

/// A role (or none).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SetRole {
    role: Option<Role>,
}

/// `PUT /api/v1/users/{name}/role` (admin): the global role, `null` for none.
pub(super) async fn role(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    Body(r): Body<SetRole>,
) -> Result<Json<Value>, ApiError> {
    den.store.set_role(&name, r.role).map_err(|e| ApiError::from(VmError::Store(e)))?;
    den.event(&c.user, "user.role_set", &name, r.role.map(Role::as_str).unwrap_or("none"));
    Ok(Json(json!({"user": name, "role": r.role})))
}

/// `PUT /api/v1/users/{name}/grants/{vm}` (admin): a role on one VM, `null` to revoke.
pub(super) async fn grant(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path((name, vm)): Path<(String, String)>,
    Body(r): Body<SetRole>,
) -> Result<Json<Value>, ApiError> {
    let rec = den.store.vm(&vm).map_err(VmError::from)?;
    den.store.set_grant(&name, &rec.id, r.role).map_err(|e| ApiError::from(VmError::Store(e)))?;
    let what = format!("{} on {}", r.role.map(Role::as_str).unwrap_or("nothing"), rec.spec.name);
    den.event(&c.user, "user.granted", &name, &what);
    Ok(Json(json!({"user": name, "vm": rec.spec.name, "role": r.role})))
}

/// `?all=true`.
#[derive(Deserialize)]
pub(super) struct All {
    #[serde(default)]
    all: bool,
}

/// `GET /api/v1/tokens`: the caller's tokens (`?all=true`: everyone's, for admins).
pub(super) async fn tokens(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Query(q): Query<All>,
) -> Result<Json<Vec<TokenRecord>>, ApiError> {
    let user = if q.all && c.is_admin() { None } else { Some(c.user.as_str()) };
    Ok(Json(den.store.tokens(user)?))
}

/// `POST /api/v1/tokens`: 201 with the token, shown this once.
pub(super) async fn create_token(
    State(den): State<Arc<Den>>,
    State(accounts): State<Arc<den_auth::Accounts>>,
    Extension(c): Extension<Caller>,
    Body(req): Body<TokenRequest>,
) -> Result<(StatusCode, Json<NewToken>), ApiError> {
    if c.token.is_none() && c.user == "root" && req.user.is_none() {
        return Err(ApiError::from(AuthError::Invalid(den_core::FieldError {
            field: "user",
            message: "root is the local admin, not a Den user: name the user the token is for".into(),
        })));
    }
    let t = accounts.create_token(&den.store, &c, req)?;
    den.event(&c.user, "token.created", &t.record.user, &format!("{} ({})", t.record.name, t.record.id));
    Ok((StatusCode::CREATED, Json(t)))
}

/// `DELETE /api/v1/tokens/{id}`: revokes one of the caller's tokens (any, for admins).
pub(super) async fn revoke_token(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let not_found =
        || ApiError::from(VmError::Store(den_store::StoreError::NotFound { kind: "token", name: id.clone() }));
    let (t, _) = den.store.token(&id)?.ok_or_else(not_found)?;
    if t.user != c.user && !c.is_admin() {
        return Err(not_found());
    }
    den.store.delete_token(&id)?;
    den.event(&c.user, "token.revoked", &t.user, &format!("{} ({id})", t.name));
    Ok(Json(json!({"revoked": id})))
}

/// `GET /api/v1/users/{name}/keys` (the user or an admin).
pub(super) async fn keys(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
) -> Result<Json<Vec<KeyRecord>>, ApiError> {
    Ok(Json(den.store.keys(Some(&name))?))
}

/// A key to add.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewKey {
    key: String,
}

/// `POST /api/v1/users/{name}/keys` (the user or an admin): 201 with the fingerprint.
pub(super) async fn add_key(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path(name): Path<String>,
    Body(k): Body<NewKey>,
) -> Result<(StatusCode, Json<AddedKey>), ApiError> {
    let key = den_auth::sshkey::SshKey::parse(&k.key)
        .map_err(|message| ApiError::from(AuthError::Invalid(den_core::FieldError { field: "key", message })))?;
    den.store.insert_key(&name, &key.fingerprint, &key.line()).map_err(|e| ApiError::from(VmError::Store(e)))?;
    den.event(&c.user, "user.key_added", &name, &key.fingerprint);
    Ok((StatusCode::CREATED, Json(AddedKey { user: name, fingerprint: key.fingerprint, kind: key.kind })))
}

/// `DELETE /api/v1/users/{name}/keys/{fingerprint}` (the user or an admin).
pub(super) async fn delete_key(
    State(den): State<Arc<Den>>,
    Extension(c): Extension<Caller>,
    Path((name, fp)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    den.store.delete_key(&name, &fp).map_err(|e| ApiError::from(VmError::Store(e)))?;
    den.event(&c.user, "user.key_removed", &name, &fp);
    Ok(Json(json!({"removed": fp})))
}
