//! Authentication and authorisation of every API request, in one place. Local callers (the Unix
//! socket) arrive with their identity; remote ones (HTTPS) present `Authorization: Bearer
//! den_...` (an API token or a login session). The route table (`routes.rs`) says what each route
//! requires; the middleware answers 401 or 403 before a handler runs.

use super::routes::need;
use super::{session, ApiError};
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use den_auth::policy::{self, Action, VmAction};
use den_auth::Accounts;
use den_auth::Transport;
use den_auth::{AuthError, Caller, Role};
use den_vms::Den;

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Nothing (login, the API description).
    Public,
    /// Any valid identity (the handler narrows what it shows).
    Anyone,
    /// A global role of at least this.
    Global(Role),
    /// An action on the named VM.
    Vm(String, VmAction),
    /// Cancelling the task with this id.
    CancelTask(String),
    /// Being this user (with a token not narrowed), or an admin.
    SelfOrAdmin(String),
}

fn unauthorized(msg: String) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg)
}

fn forbidden(msg: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg)
}

/// Whether `caller` may do what `need` asks: looks up the VM or task and asks
/// [`policy::authorize`].
fn authorize(den: &Den, caller: &Caller, need: &Need) -> Result<(), ApiError> {
    let denied = |d: policy::Denied| forbidden(d.0);
    match need {
        Need::Public | Need::Anyone => Ok(()),
        Need::Global(r) => policy::authorize(caller, &Action::Global(*r)).map_err(denied),
        Need::SelfOrAdmin(u) => policy::authorize(caller, &Action::OwnAccount(u)).map_err(denied),
        Need::Vm(name, act) => match den.store.vm(name) {
            Ok(vm) => policy::authorize(caller, &Action::Vm(&vm, *act)).map_err(denied),
            // Those who could act on it learn that it does not exist (404 from the handler).
            Err(_) => policy::authorize(caller, &Action::MissingVm(*act)).map_err(denied),
        },
        Need::CancelTask(id) => match den.store.task(id) {
            Ok(task) => {
                let vm = den.store.vm(&task.target).ok();
                policy::authorize(caller, &Action::CancelTask(&task, vm.as_ref())).map_err(denied)
            }
            Err(_) => policy::authorize(caller, &Action::Global(Role::Operator)).map_err(denied),
        },
    }
}

/// [`authorize`] as a yes or no, for the permission matrix.
#[cfg(test)]
pub(super) fn authorize_for_test(den: &Den, caller: &Caller, need: &Need) -> bool {
    authorize(den, caller, need).is_ok()
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Unauthorized(m) => unauthorized(m),
            AuthError::Forbidden(m) => forbidden(m),
            AuthError::RateLimited(_) => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string()),
            AuthError::Busy => ApiError::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string()),
            AuthError::Invalid(f) => ApiError {
                field: Some(f.field),
                ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", format!("{}: {}", f.field, f.message))
            },
            AuthError::Store(s) => ApiError::from(s),
        }
    }
}

/// Which events a caller may see: all of them for viewers of everything; for others, the events
/// about VMs they have a role on (and the deletion of one they saw before).
pub struct EventFilter {
    caller: Caller,
    everything: bool,
    seen: std::collections::HashSet<String>,
}

impl EventFilter {
    /// The filter for `caller`.
    pub fn new(caller: &Caller) -> EventFilter {
        let capped = caller.token.as_ref().is_some_and(|t| t.vms.is_some());
        EventFilter {
            caller: caller.clone(),
            everything: caller.has(Role::Viewer) && !capped,
            seen: Default::default(),
        }
    }

    /// Whether the caller may see `e`.
    pub fn allows(&mut self, den: &Den, e: &den_core::event::Event) -> bool {
        if self.everything {
            return true;
        }
        if !e.kind.starts_with("vm.") {
            return false;
        }
        match den.store.vm(&e.target) {
            Ok(vm) if policy::authorize(&self.caller, &Action::Vm(&vm, VmAction::See)).is_ok() => {
                self.seen.insert(vm.spec.name);
                true
            }
            Ok(_) => false,
            Err(_) => e.kind == "vm.deleted" && self.seen.remove(&e.target),
        }
    }
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(str::trim)
}

/// The middleware: finds the caller, checks [`need`], and hands the [`Caller`] to the handler.
pub async fn authenticate(State(services): State<super::Services>, mut req: Request, next: Next) -> Response {
    let den = &services.den;
    let need = need(req.method(), req.uri().path());
    let caller = match req.extensions().get::<Transport>() {
        Some(Transport::Local(c)) => c.clone(),
        Some(Transport::Remote(_)) if need == Need::Public => return next.run(req).await,
        Some(Transport::Remote(_)) => match remote_caller(den, &services.accounts, &mut req) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        },
        None => return unauthorized("no transport identity".into()).into_response(),
    };
    if let Err(e) = authorize(den, &caller, &need) {
        return e.into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Who a network request comes from: a bearer token, a console ticket, or the session cookie
/// (with its CSRF value on anything that changes state, and a same-origin check on WebSockets).
fn remote_caller(den: &Den, accounts: &Accounts, req: &mut Request) -> Result<Caller, ApiError> {
    if let Some(t) = bearer(req) {
        return Ok(accounts.verify_token(&den.store, t)?);
    }
    if let Some((vm, ticket)) = console_ticket(req) {
        let id = den.store.vm(&vm).map(|v| v.id).unwrap_or_default();
        return accounts.tickets.redeem(&ticket, &id).ok_or_else(|| {
            unauthorized("the console ticket is not valid (used, expired or for another VM); ask for a new one".into())
        });
    }
    let Some(session) =
        den_auth::transport::cookie(req.headers(), den_auth::transport::SESSION_COOKIE).map(str::to_string)
    else {
        let msg = "log in first: send `Authorization: Bearer <token>` (POST /api/v1/login gives one)";
        return Err(unauthorized(msg.into()));
    };
    let caller = accounts
        .verify_token(&den.store, &session)
        .map_err(|_| unauthorized("your session has ended (logged out or expired); log in again".into()))?;
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && !session::csrf_ok(req.headers(), &session) {
        let msg = format!("the `{}` header is missing or wrong; reload the page", session::CSRF_HEADER);
        return Err(forbidden(msg));
    }
    if req.headers().contains_key(header::UPGRADE) && !same_origin(req) {
        return Err(forbidden("a WebSocket from another site may not use Den's session".into()));
    }
    req.extensions_mut().insert(session::CookieSession(session));
    Ok(caller)
}

/// `(vm, ticket)` of a `GET /api/v1/vms/{vm}/console/ws?ticket=...`.
fn console_ticket(req: &Request) -> Option<(String, String)> {
    let segs: Vec<&str> = req.uri().path().strip_prefix("/api/v1/")?.split('/').collect();
    let ["vms", vm, "console", "ws"] = segs.as_slice() else { return None };
    let ticket = den_net_util::url::query_values(req.uri().query()?, "ticket").into_iter().next()?;
    // The VM's name as the route's rule and the handler read it: decoded.
    Some((den_net_util::url::decode_path(vm), ticket))
}

/// Whether the request's `Origin` (when it has one) names the host it was sent to.
fn same_origin(req: &Request) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    origin.split_once("://").is_some_and(|(_, o)| !host.is_empty() && o == host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tickets_name_the_vm_as_the_handler_reads_it() {
        let req = |uri: &str| Request::builder().uri(uri).body(axum::body::Body::empty()).unwrap();
        let got = console_ticket(&req("/api/v1/vms/w%65b1/console/ws?ticket=abc"));
        assert_eq!(got, Some(("web1".to_string(), "abc".to_string())), "decoded, as Path<String> decodes it");
        assert_eq!(console_ticket(&req("/api/v1/api/v1/vms/web1/console/ws?ticket=abc")), None, "one prefix only");
        assert_eq!(console_ticket(&req("/api/v1/vms/web1/console/ws")), None, "no ticket");
    }

    #[test]
    fn route_needs() {
        let n = |m: Method, p: &str| need(&m, p);
        let vm = |a: VmAction| Need::Vm("web1".into(), a);
        assert_eq!(n(Method::POST, "/api/v1/login"), Need::Public);
        assert_eq!(n(Method::GET, "/api/v1/vms"), Need::Anyone);
        assert_eq!(n(Method::POST, "/api/v1/vms"), Need::Global(Role::Operator));
        assert_eq!(n(Method::GET, "/api/v1/vms/web1"), vm(VmAction::See));
        assert_eq!(n(Method::GET, "/api/v1/vms/web1/console"), vm(VmAction::Watch));
        assert_eq!(n(Method::POST, "/api/v1/vms/web1/stop"), vm(VmAction::Operate));
        assert_eq!(n(Method::DELETE, "/api/v1/vms/web1"), vm(VmAction::Operate));
        assert_eq!(n(Method::POST, "/api/v1/networks"), Need::Global(Role::Admin));
        assert_eq!(n(Method::POST, "/api/v1/vms/web1/clone"), vm(VmAction::Clone), "a clone copies its disks");
        assert_eq!(n(Method::POST, "/api/v1/vms/web1/snapshots"), vm(VmAction::Operate));
        assert_eq!(n(Method::GET, "/api/v1/vms/web1/snapshots"), vm(VmAction::Watch));
        assert_eq!(n(Method::GET, "/api/v1/users"), Need::Global(Role::Admin));
        assert_eq!(n(Method::PUT, "/api/v1/users/bob/password"), Need::SelfOrAdmin("bob".into()));
        assert_eq!(n(Method::POST, "/api/v1/users/bob/keys"), Need::SelfOrAdmin("bob".into()));
        assert_eq!(n(Method::DELETE, "/api/v1/users/bob/keys/SHA256:x"), Need::SelfOrAdmin("bob".into()));
        assert_eq!(n(Method::POST, "/api/v1/tokens"), Need::Anyone);
        assert_eq!(n(Method::DELETE, "/api/v1/tokens/abc"), Need::Anyone, "the handler checks ownership");
        assert_eq!(n(Method::GET, "/api/v1/tasks/x"), Need::Global(Role::Viewer));
        assert_eq!(n(Method::POST, "/api/v1/tasks/x/cancel"), Need::CancelTask("x".into()));
        assert_eq!(n(Method::GET, "/api/v1/events/ws"), Need::Anyone, "filtered by EventFilter");
        assert_eq!(n(Method::GET, "/api/v1/vms/web1/console/ws"), vm(VmAction::Enter));
        assert_eq!(n(Method::POST, "/api/v1/session"), Need::Public, "logging in");
        assert_eq!(n(Method::GET, "/api/v1/session"), Need::Anyone);
        assert_eq!(n(Method::DELETE, "/api/v1/session"), Need::Anyone);
        assert_eq!(n(Method::POST, "/api/v1/vms/web1/console/ticket"), vm(VmAction::Enter));
        assert_eq!(n(Method::GET, "/api/v1/vms/web1/files"), vm(VmAction::Enter));
        assert_eq!(n(Method::POST, "/api/v1/vms/%77eb1/exec"), vm(VmAction::Enter), "decoded");
        assert_eq!(n(Method::GET, "/api/v1/nonsense"), Need::Global(Role::Admin), "unknown paths need the most");
    }
}
