//! The API's one route table. Each entry gives the router its handler, the authentication
//! middleware what the route needs ([`need`]), and the OpenAPI document its description
//! (`openapi.rs`); nothing else lists routes, so the three cannot drift apart.

use super::auth::Need;
use super::{apps, docker, files, images, metrics, networks, session, ssh, system, tasks, users, vms, ws};
use super::{host, Services};
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter};
use den_auth::policy::VmAction;
use den_auth::Role;

/// What a route needs before its handler runs. Where it names a VM, a user or a task, the path
/// parameter `name` (VMs, users) or `id` (tasks) says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Nothing (logging in, the API description).
    Public,
    /// Any valid identity (the handler narrows what it shows).
    Anyone,
    /// A global role of at least this.
    Global(Role),
    /// This action on the VM `name`.
    Vm(VmAction),
    /// Being the user `name` (with a token not narrowed), or an admin.
    SelfOrAdmin,
    /// Cancelling the task `id`.
    CancelTask,
}

impl Rule {
    /// Who may call, for the OpenAPI document.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Rule::Public => "public",
            Rule::Anyone => "anyone",
            Rule::Global(Role::Viewer) => "viewer",
            Rule::Global(Role::Operator) => "operator",
            Rule::Global(Role::Admin) => "admin",
            Rule::Vm(VmAction::See | VmAction::Watch) => "viewer on the VM",
            Rule::Vm(VmAction::Operate) => "operator on the VM",
            Rule::Vm(VmAction::Enter) => "operator on the VM (entering it)",
            Rule::Vm(VmAction::Clone) => "operator on the VM (its disks are copied)",
            Rule::SelfOrAdmin => "the user or an admin",
            Rule::CancelTask => "operator on the task's VM, or the task's own user",
        }
    }
}

/// One route: its method and path (axum's form, `:name`), what it needs, its handler and its
/// documentation.
pub(crate) struct Route {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub(crate) method: &'static str,
    /// The path, parameters as `:name`.
    pub(crate) path: &'static str,
    /// What it needs.
    pub(crate) rule: Rule,
    /// The handler, on this route's method.
    pub(crate) handler: fn() -> MethodRouter<Services>,
    /// One line for the OpenAPI document.
    pub(crate) summary: &'static str,
    /// The request body's schema (a name under `components.schemas`).
    pub(crate) body: Option<&'static str>,
    /// The success status and what it returns.
    pub(crate) ok: (u16, &'static str),
}

/// A long operation's answer.
const TASK: (u16, &str) = (202, "a task: `{task, location}` (and `vm` for creates); poll `location`");

macro_rules! route {
    ($method:ident, $path:literal, $rule:expr, $handler:expr, $summary:literal, $body:expr, $ok:expr $(,)?) => {
        Route {
            method: stringify!($method),
            path: $path,
            rule: $rule,
            handler: || MethodRouter::new().on(MethodFilter::$method, $handler),
            summary: $summary,
            body: $body,
            ok: $ok,
        }
    };
}

/// Every route of the API.
#[rustfmt::skip]
pub(crate) static ROUTES: &[Route] = &[
    route!(GET, "/api/v1/host", Rule::Anyone, host, "Host facts: version, KVM kind, limits, warnings", None, (200, "host")),
    route!(GET, "/api/v1/host/metrics", Rule::Anyone, metrics::host, "Host CPU, memory and disk over the last hour", None, (200, "samples")),
    route!(GET, "/api/v1/images", Rule::Anyone, images::list, "Images VMs can be made from", None, (200, "images")),
    route!(GET, "/api/v1/docker", Rule::Anyone, docker::status, "The Docker socket, its sandbox VM and policy settings", None, (200, "status")),
    route!(GET, "/api/v1/vms", Rule::Anyone, vms::list, "VMs the caller may see", None, (200, "VM records")),
    route!(POST, "/api/v1/vms", Rule::Global(Role::Operator), vms::create, "Create a VM", Some("VmSpec"), TASK),
    route!(GET, "/api/v1/vms/:name", Rule::Vm(VmAction::See), vms::get, "One VM", None, (200, "VM record")),
    route!(DELETE, "/api/v1/vms/:name", Rule::Vm(VmAction::Operate), vms::delete, "Delete a stopped VM and its disks", None, TASK),
    route!(POST, "/api/v1/vms/:name/start", Rule::Vm(VmAction::Operate), vms::start, "Start", None, TASK),
    route!(POST, "/api/v1/vms/:name/stop", Rule::Vm(VmAction::Operate), vms::stop, "Stop: graceful, then hard after a timeout", None, TASK),
    route!(POST, "/api/v1/vms/:name/reboot", Rule::Vm(VmAction::Operate), vms::reboot, "Reboot: shut down, start on the same disks", None, TASK),
    route!(POST, "/api/v1/vms/:name/exec", Rule::Vm(VmAction::Enter), vms::exec, "Run a command through the guest agent", Some("Exec"), (200, "`{code, signal, stdout, stderr}`")),
    route!(PUT, "/api/v1/vms/:name/files", Rule::Vm(VmAction::Enter), files::put, "Write the body to a guest file through the agent (`?path=/abs&mode=755`)", None, (200, "`{path, bytes, mode}`")),
    route!(GET, "/api/v1/vms/:name/files", Rule::Vm(VmAction::Enter), files::get, "A guest file's bytes, through the agent (`?path=/abs`)", None, (200, "the file")),
    route!(POST, "/api/v1/vms/:name/pause", Rule::Vm(VmAction::Operate), vms::pause, "Pause the vCPUs", None, (200, "VM record")),
    route!(POST, "/api/v1/vms/:name/resume", Rule::Vm(VmAction::Operate), vms::resume, "Resume", None, (200, "VM record")),
    route!(GET, "/api/v1/vms/:name/metrics", Rule::Vm(VmAction::See), metrics::vm, "CPU, memory, disk and network of the VM over the last hour", None, (200, "samples")),
    route!(GET, "/api/v1/vms/:name/console", Rule::Vm(VmAction::Watch), vms::console, "Recent serial console output", None, (200, "`{output}`")),
    route!(GET, "/api/v1/vms/:name/console/ws", Rule::Vm(VmAction::Enter), ws::console, "WebSocket: the serial console, binary frames both ways", None, (101, "WebSocket")),
    route!(POST, "/api/v1/vms/:name/console/ticket", Rule::Vm(VmAction::Enter), session::console_ticket, "A one-shot, 30-second ticket for the console WebSocket (`console/ws?ticket=`), for browsers", None, (200, "`{ticket, url, expires_in}`")),
    route!(GET, "/api/v1/vms/:name/snapshots", Rule::Vm(VmAction::Watch), vms::snapshots, "Disk snapshots", None, (200, "snapshots")),
    route!(POST, "/api/v1/vms/:name/snapshots", Rule::Vm(VmAction::Operate), vms::snapshot, "Take a disk snapshot", Some("Snapshot"), TASK),
    route!(DELETE, "/api/v1/vms/:name/snapshots/:snap", Rule::Vm(VmAction::Operate), vms::delete_snapshot, "Delete a snapshot", None, (200, "`{deleted}`")),
    route!(POST, "/api/v1/vms/:name/snapshots/:snap/rollback", Rule::Vm(VmAction::Operate), vms::rollback, "Roll a stopped VM back", None, TASK),
    route!(POST, "/api/v1/vms/:name/clone", Rule::Vm(VmAction::Clone), vms::clone, "Clone into a new VM", Some("Clone"), TASK),
    route!(POST, "/api/v1/vms/:name/resize", Rule::Vm(VmAction::Operate), vms::resize, "Grow the root disk", Some("Resize"), (200, "VM record")),
    route!(GET, "/api/v1/isos", Rule::Anyone, networks::isos, "Installation ISOs", None, (200, "ISOs")),
    route!(POST, "/api/v1/isos", Rule::Global(Role::Admin), networks::import_iso, "Import a host file as an ISO", Some("ImportIso"), TASK),
    route!(DELETE, "/api/v1/isos/:name", Rule::Global(Role::Admin), networks::delete_iso, "Delete an unused ISO", None, (200, "`{deleted}`")),
    route!(GET, "/api/v1/apps", Rule::Anyone, apps::list, "Installed LPK apps", None, (200, "app records")),
    route!(POST, "/api/v1/apps", Rule::Global(Role::Admin), apps::install, "Install an .lpk package (the body); `?upgrade=true` replaces the installed version, `?dry_run=true` only checks it", Some("Package"), (202, "`{task, location, app, check}` (200 with the check alone for a dry run)")),
    route!(GET, "/api/v1/apps/:name", Rule::Anyone, apps::get, "One app, by package id or subdomain, with `traffic_unlogged` (packets over the audit's rate)", None, (200, "app record")),
    route!(DELETE, "/api/v1/apps/:name", Rule::Global(Role::Admin), apps::uninstall, "Uninstall an app (`?keep_data=true` keeps /lzcapp/var)", None, TASK),
    route!(GET, "/api/v1/apps/:name/logs", Rule::Global(Role::Viewer), apps::logs, "Each service's console output (`?service=NAME&bytes=N`)", None, (200, "`{service: text}`")),
    route!(POST, "/api/v1/apps/:name/start", Rule::Global(Role::Admin), apps::start, "Start an app's services in order; ends when it answers", None, TASK),
    route!(POST, "/api/v1/apps/:name/stop", Rule::Global(Role::Admin), apps::stop, "Stop an app's services, dependents first", None, TASK),
    route!(GET, "/api/v1/apps/:name/traffic", Rule::Global(Role::Viewer), apps::traffic, "The app's outbound connection attempts (`?after=SEQ&limit=N`)", None, (200, "traffic records")),
    route!(GET, "/api/v1/system", Rule::Global(Role::Viewer), system::status, "The business OS: slots, phase, updates with their steps and outcomes, recent health checks (`?health=N`)", None, (200, "system status")),
    route!(POST, "/api/v1/system/update", Rule::Global(Role::Admin), system::update, "Write an image into the inactive OS slot and put it on trial (commits or rolls back by itself)", Some("SystemUpdate"), (202, "`{task, location, update}`")),
    route!(POST, "/api/v1/system/rollback", Rule::Global(Role::Admin), system::rollback, "End a trial, or put the other slot's OS on trial again", None, (202, "`{update}`")),
    route!(GET, "/api/v1/networks", Rule::Anyone, networks::list, "Networks with their VMs", None, (200, "networks")),
    route!(POST, "/api/v1/networks", Rule::Global(Role::Admin), networks::create, "Create a network", Some("NetworkSpec"), (201, "network")),
    route!(DELETE, "/api/v1/networks/:name", Rule::Global(Role::Admin), networks::delete, "Delete an unused network", None, (200, "`{deleted}`")),
    route!(POST, "/api/v1/login", Rule::Public, users::login, "Log in: a 12-hour session token (rate-limited)", Some("Login"), (200, "token")),
    route!(POST, "/api/v1/session", Rule::Public, session::login, "Browser login: sets the HttpOnly session cookie; changes then need `X-CSRF-Token`", Some("Login"), (200, "`{user, role, grants, csrf}`")),
    route!(GET, "/api/v1/session", Rule::Anyone, session::current, "The browser session's user and CSRF value", None, (200, "session")),
    route!(DELETE, "/api/v1/session", Rule::Anyone, session::logout, "Log out: revoke the session, clear the cookie", None, (200, "ok")),
    route!(GET, "/api/v1/whoami", Rule::Anyone, users::whoami, "The caller's identity", None, (200, "`{user, role, token}`")),
    route!(GET, "/api/v1/users", Rule::Global(Role::Admin), users::list, "Users with their grants", None, (200, "users")),
    route!(POST, "/api/v1/users", Rule::Global(Role::Admin), users::create, "Add a user", Some("NewUser"), (201, "user")),
    route!(DELETE, "/api/v1/users/:name", Rule::Global(Role::Admin), users::delete, "Remove a user, their grants and tokens", None, (200, "`{deleted}`")),
    route!(PUT, "/api/v1/users/:name/password", Rule::SelfOrAdmin, users::password, "Set a password", Some("Password"), (200, "`{user}`")),
    route!(PUT, "/api/v1/users/:name/role", Rule::Global(Role::Admin), users::role, "Set the global role", Some("Role"), (200, "`{user, role}`")),
    route!(PUT, "/api/v1/users/:name/grants/:vm", Rule::Global(Role::Admin), users::grant, "Grant a role on one VM (null revokes)", Some("Role"), (200, "`{user, vm, role}`")),
    route!(GET, "/api/v1/tokens", Rule::Anyone, users::tokens, "The caller's API tokens (`?all=true`: everyone's, admins)", None, (200, "tokens")),
    route!(GET, "/api/v1/users/:name/keys", Rule::SelfOrAdmin, users::keys, "A user's SSH public keys", None, (200, "keys")),
    route!(POST, "/api/v1/users/:name/keys", Rule::SelfOrAdmin, users::add_key, "Add an SSH public key (for the SSH gateway)", Some("NewKey"), (201, "`{user, fingerprint, type}`")),
    route!(DELETE, "/api/v1/users/:name/keys/:fingerprint", Rule::SelfOrAdmin, users::delete_key, "Remove an SSH key", None, (200, "`{removed}`")),
    route!(POST, "/api/v1/tokens", Rule::Anyone, users::create_token, "Make an API token (shown once)", Some("TokenRequest"), (201, "token")),
    route!(DELETE, "/api/v1/tokens/:id", Rule::Anyone, users::revoke_token, "Revoke a token", None, (200, "`{revoked}`")),
    route!(GET, "/api/v1/ssh/sessions", Rule::Anyone, ssh::sessions, "SSH gateway sessions, newest first (`?user=` for admins, `?limit=`)", None, (200, "sessions: `{id, user, vm, kind, command, peer, started, ended, exit, recorded}`")),
    route!(GET, "/api/v1/ssh/sessions/:id/recording", Rule::Anyone, ssh::recording, "An interactive session's recording (asciicast v2)", None, (200, "`application/x-asciicast`")),
    route!(GET, "/api/v1/tasks", Rule::Global(Role::Viewer), tasks::list, "Recent tasks (`?limit=`)", None, (200, "tasks")),
    route!(GET, "/api/v1/tasks/:id", Rule::Global(Role::Viewer), tasks::get, "One task: status, progress (percent), log", None, (200, "task")),
    route!(POST, "/api/v1/tasks/:id/cancel", Rule::CancelTask, tasks::cancel, "Cancel a create, clone or snapshot task (its work is undone)", None, (202, "`{task, cancelling}`")),
    route!(GET, "/api/v1/events", Rule::Anyone, tasks::events, "The events log (`?after=&limit=`, or the newest with `?tail=N`); non-viewers see their VMs' only", None, (200, "events")),
    route!(GET, "/api/v1/events/ws", Rule::Anyone, ws::events, "WebSocket: events after `?after=N`, then live (filtered like the log)", None, (101, "WebSocket")),
    route!(GET, "/api/v1/openapi.json", Rule::Public, super::openapi::serve, "This document", None, (200, "OpenAPI 3.1")),
];

/// The router: every route of [`ROUTES`], the methods of one path merged.
pub(crate) fn method_routers() -> Vec<(&'static str, MethodRouter<Services>)> {
    let mut paths: Vec<(&'static str, Vec<MethodRouter<Services>>)> = Vec::new();
    for r in ROUTES {
        match paths.iter_mut().find(|(p, _)| *p == r.path) {
            Some((_, methods)) => methods.push((r.handler)()),
            None => paths.push((r.path, vec![(r.handler)()])),
        }
    }
    paths
        .into_iter()
        .filter_map(|(path, methods)| methods.into_iter().reduce(MethodRouter::merge).map(|m| (path, m)))
        .collect()
}

/// The route a request goes to, with its path parameters decoded as the router's extractors
/// decode them: literal segments compared as sent (as the router does), a more literal route
/// before a more general one.
fn route_of(method: &str, path: &str) -> Option<(&'static Route, Vec<(&'static str, String)>)> {
    let segs: Vec<&str> = path.split('/').collect();
    ROUTES
        .iter()
        .filter(|r| r.method == method)
        .filter_map(|r| {
            let template: Vec<&'static str> = r.path.split('/').collect();
            if template.len() != segs.len() {
                return None;
            }
            let mut params = Vec::new();
            for (t, s) in template.iter().zip(&segs) {
                match t.strip_prefix(':') {
                    Some(name) if !s.is_empty() => params.push((name, den_net_util::url::decode_path(s))),
                    Some(_) => return None,
                    None if t == s => {}
                    None => return None,
                }
            }
            Some((r, params))
        })
        .max_by_key(|(r, params)| r.path.split('/').count() - params.len())
}

/// What `method path` requires. A path no route has needs an admin (who then gets 404). `HEAD`
/// needs what `GET` needs: the router answers it with the `GET` handler.
pub(crate) fn need(method: &Method, path: &str) -> Need {
    let method = if method == Method::HEAD { Method::GET.as_str() } else { method.as_str() };
    let Some((route, params)) = route_of(method, path) else {
        return Need::Global(Role::Admin);
    };
    let param = |name: &str| params.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    match route.rule {
        Rule::Public => Need::Public,
        Rule::Anyone => Need::Anyone,
        Rule::Global(role) => Need::Global(role),
        Rule::Vm(action) => Need::Vm(param("name"), action),
        Rule::SelfOrAdmin => Need::SelfOrAdmin(param("name")),
        Rule::CancelTask => Need::CancelTask(param("id")),
    }
}

/// Every operation as (method, path template): lowercase method, OpenAPI's `{name}` form.
#[cfg(test)]
pub(crate) fn operations() -> impl Iterator<Item = (String, String)> {
    ROUTES.iter().map(|r| (r.method.to_ascii_lowercase(), openapi_path(r.path)))
}

/// `:name` segments as `{name}`.
pub(crate) fn openapi_path(path: &str) -> String {
    path.split('/')
        .map(|s| s.strip_prefix(':').map(|p| format!("{{{p}}}")).unwrap_or(s.to_string()))
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_consistent() {
        let mut seen = std::collections::HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.path)), "{} {} twice", r.method, r.path);
            assert!(["GET", "POST", "PUT", "DELETE"].contains(&r.method), "{}", r.method);
            assert!(r.path.starts_with("/api/v1/"), "{}", r.path);
            let names = |p: &str| r.path.split('/').any(|s| s == format!(":{p}"));
            match r.rule {
                Rule::Vm(_) | Rule::SelfOrAdmin => assert!(names("name"), "{} {} names no :name", r.method, r.path),
                Rule::CancelTask => assert!(names("id"), "{} {} names no :id", r.method, r.path),
                _ => {}
            }
        }
        // Building the router panics on a method given twice for one path.
        assert_eq!(
            method_routers().len(),
            ROUTES.iter().map(|r| r.path).collect::<std::collections::HashSet<_>>().len()
        );
    }

    #[test]
    fn literal_routes_win_and_parameters_are_decoded() {
        let (r, params) = route_of("GET", "/api/v1/vms/%77eb1/console/ws").unwrap();
        assert_eq!(r.path, "/api/v1/vms/:name/console/ws");
        assert_eq!(params, [("name", "web1".to_string())]);
        assert!(route_of("GET", "/api/v1/vms/").is_none(), "an empty segment is no parameter");
        assert!(route_of("GET", "/api/v1/%76ms").is_none(), "literals compare as sent, as the router's do");
        assert!(route_of("PATCH", "/api/v1/vms").is_none());
        assert_eq!(need(&Method::HEAD, "/api/v1/vms/web1/files"), need(&Method::GET, "/api/v1/vms/web1/files"));
        assert_eq!(need(&Method::HEAD, "/api/v1/vms/web1/files"), Need::Vm("web1".into(), VmAction::Enter));
        assert_eq!(need(&Method::OPTIONS, "/api/v1/vms"), Need::Global(Role::Admin));
    }
}
