//! Browser sessions: `/api/v1/session` logs in with a password and sets an `HttpOnly`,
//! `Secure`, `SameSite=Strict` cookie holding a session token. Requests that authenticate with
//! that cookie and change anything must also carry `X-CSRF-Token`, a value derived from the
//! session token that only the logged-in page learns (from this endpoint's JSON). Console
//! WebSockets use one-shot tickets (`POST /api/v1/vms/{name}/console/ticket`).

use super::body::Body;
use super::users::Login;
use super::ApiError;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use den_auth::accounts::SESSION_TTL;
use den_auth::Transport;
use den_auth::{token, AuthError, Caller};
use den_vms::{Den, VmError};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use den_auth::transport::SESSION_COOKIE;
/// The header that proves a cookie-authenticated request came from Den's own page.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The request was authenticated by the session cookie holding this token.
#[derive(Debug, Clone)]
pub struct CookieSession(pub String);

/// The CSRF value that belongs to the session token `session`.
pub fn csrf_for(session: &str) -> String {
    hex::encode(Sha256::digest(format!("den-csrf\0{session}").as_bytes()))
}

/// Whether a cookie-authenticated request that changes something carries the right CSRF value.
pub fn csrf_ok(headers: &HeaderMap, session: &str) -> bool {
    headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).is_some_and(|v| token::same(v.trim(), &csrf_for(session)))
}

fn set_cookie(value: &str, max_age: u64) -> Option<HeaderValue> {
    format!("{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict").parse().ok()
}

/// What the page needs to know about its user: name, global role, grants by VM id, CSRF value.
fn describe(den: &Den, caller: &Caller, session: Option<&str>) -> Result<Value, ApiError> {
    let grants = den.store.grants_of(&caller.user).map_err(VmError::Store)?;
    Ok(json!({
        "user": caller.user,
        "role": caller.global,
        "grants": grants,
        "csrf": session.map(csrf_for),
    }))
}

/// `POST /api/v1/session`: logs in with a password, sets the session cookie, and answers with
/// [`describe`]. Failed logins are rate-limited like `/api/v1/login`.
pub async fn login(
    State(den): State<Arc<Den>>,
    State(accounts): State<Arc<den_auth::Accounts>>,
    Extension(transport): Extension<Transport>,
    Body(req): Body<Login>,
) -> Result<Response, Response> {
    let new = super::users::password_login(&den, &accounts, &transport, &req).await?;
    let caller = accounts.caller(&den.store, &req.user).map_err(|e| ApiError::from(e).into_response())?;
    let body = describe(&den, &caller, Some(&new.token)).map_err(IntoResponse::into_response)?;
    let mut resp = Json(body).into_response();
    if let Some(c) = set_cookie(&new.token, SESSION_TTL.as_secs()) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// `GET /api/v1/session`: who is logged in ([`describe`]); the CSRF value when the request came
/// with the session cookie.
pub async fn current(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    session: Option<Extension<CookieSession>>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(describe(&den, &caller, session.as_ref().map(|s| s.0 .0.as_str()))?))
}

/// `DELETE /api/v1/session`: logs out: the session token is revoked and the cookie cleared.
pub async fn logout(
    State(den): State<Arc<Den>>,
    Extension(caller): Extension<Caller>,
    session: Option<Extension<CookieSession>>,
) -> Result<Response, ApiError> {
    if let Some(id) = session.as_ref().and_then(|s| token::parse(&s.0 .0)).map(|(id, _)| id.to_string()) {
        den.store.delete_token(&id)?;
        den.event(&caller.user, "user.logout", &caller.user, "");
    }
    let mut resp = (StatusCode::OK, Json(json!({"logged_out": caller.user}))).into_response();
    if let Some(c) = set_cookie("", 0) {
        resp.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(resp)
}

/// `POST /api/v1/vms/{name}/console/ticket`: a one-shot ticket for the console WebSocket of
/// this VM, valid for 30 s (`console/ws?ticket=...`).
pub async fn console_ticket(
    State(den): State<Arc<Den>>,
    State(accounts): State<Arc<den_auth::Accounts>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let vm = den.store.vm(&name).map_err(VmError::from)?;
    let ticket = accounts.tickets.issue(&caller, &vm.id).map_err(|e| ApiError::from(AuthError::Unauthorized(e)))?;
    let url = format!("/api/v1/vms/{}/console/ws?ticket={ticket}", vm.spec.name);
    Ok(Json(json!({"ticket": ticket, "url": url, "expires_in": den_auth::ticket::TICKET_TTL.as_secs()})))
}

#[cfg(test)]
mod tests {
    use super::*;
    use den_auth::transport::cookie;

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "theme=dark; __Host-den_session=den_abc ".parse().unwrap());
        h.append(header::COOKIE, "other=1".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("den_abc"));
        assert_eq!(cookie(&h, "other"), Some("1"));
        assert_eq!(cookie(&h, "den"), None);
        assert!(!csrf_ok(&h, "den_abc"), "no header");
        h.insert(CSRF_HEADER, csrf_for("den_abc").parse().unwrap());
        assert!(csrf_ok(&h, "den_abc"));
        assert!(!csrf_ok(&h, "den_abd"), "bound to its session");
        assert_ne!(csrf_for("a"), csrf_for("b"));
        let c = set_cookie("den_x", 60).unwrap();
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("Secure") && c.contains("SameSite=Strict"), "{c}");
    }
}
