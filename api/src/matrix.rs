//! The permission matrix: every API operation (the route table's) for
//! each kind of caller, against an expectation written out by hand here. A new route without a
//! row fails the test, so none can be forgotten; a change in who may do what shows up as a
//! changed row. The Docker socket's request classes are checked the same way.

use super::auth::authorize_for_test;
use super::routes::need;
use axum::http::Method;
use den_auth::policy::{self, narrow};
use den_auth::{Caller, Role, TokenScope};
use den_vms::Den;
use std::sync::Arc;

/// The callers, each with the VM that `{name}` stands for (and the task `{id}` on it):
/// an admin on root's VM; an operator on their own VM, on root's, on one of Den's own; a viewer
/// on root's; the operator's token narrowed to viewer and their own VM, on that VM and on
/// root's; and a token minted from the narrowed one asking for more, on root's VM.
const COLUMNS: [(&str, &str); 8] = [
    ("admin", "other1"),
    ("operator", "own1"),
    ("operator", "other1"),
    ("operator", "den1"),
    ("viewer", "other1"),
    ("narrowed", "own1"),
    ("narrowed", "other1"),
    ("minted", "other1"),
];

/// `A`: let through to the handler, `F`: 403, per column of [`COLUMNS`].
const MATRIX: &[(&str, &str)] = &[
    ("get /api/v1/host", "AAAAAAAA"),
    ("get /api/v1/host/metrics", "AAAAAAAA"),
    ("get /api/v1/images", "AAAAAAAA"),
    ("get /api/v1/docker", "AAAAAAAA"),
    ("get /api/v1/vms", "AAAAAAAA"),
    ("post /api/v1/vms", "AAAAFFFF"),
    ("get /api/v1/vms/{name}", "AAAAAAFF"),
    ("delete /api/v1/vms/{name}", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/start", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/stop", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/reboot", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/exec", "AAAFFFFF"),
    ("put /api/v1/vms/{name}/files", "AAAFFFFF"),
    ("get /api/v1/vms/{name}/files", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/pause", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/resume", "AAAFFFFF"),
    ("get /api/v1/vms/{name}/metrics", "AAAAAAFF"),
    ("get /api/v1/vms/{name}/console", "AAAFAAFF"),
    ("get /api/v1/vms/{name}/console/ws", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/console/ticket", "AAAFFFFF"),
    ("get /api/v1/vms/{name}/snapshots", "AAAFAAFF"),
    ("post /api/v1/vms/{name}/snapshots", "AAAFFFFF"),
    ("delete /api/v1/vms/{name}/snapshots/{snap}", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/snapshots/{snap}/rollback", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/clone", "AAAFFFFF"),
    ("post /api/v1/vms/{name}/resize", "AAAFFFFF"),
    ("get /api/v1/isos", "AAAAAAAA"),
    ("post /api/v1/isos", "AFFFFFFF"),
    ("delete /api/v1/isos/{name}", "AFFFFFFF"),
    ("get /api/v1/apps", "AAAAAAAA"),
    ("post /api/v1/apps", "AFFFFFFF"),
    ("get /api/v1/apps/{name}", "AAAAAAAA"),
    ("delete /api/v1/apps/{name}", "AFFFFFFF"),
    ("get /api/v1/apps/{name}/logs", "AAAAAAAA"),
    ("post /api/v1/apps/{name}/start", "AFFFFFFF"),
    ("post /api/v1/apps/{name}/stop", "AFFFFFFF"),
    ("get /api/v1/apps/{name}/traffic", "AAAAAAAA"),
    ("get /api/v1/system", "AAAAAAAA"),
    ("post /api/v1/system/update", "AFFFFFFF"),
    ("post /api/v1/system/rollback", "AFFFFFFF"),
    ("get /api/v1/networks", "AAAAAAAA"),
    ("post /api/v1/networks", "AFFFFFFF"),
    ("delete /api/v1/networks/{name}", "AFFFFFFF"),
    ("post /api/v1/login", "AAAAAAAA"),
    ("post /api/v1/session", "AAAAAAAA"),
    ("get /api/v1/session", "AAAAAAAA"),
    ("delete /api/v1/session", "AAAAAAAA"),
    ("get /api/v1/whoami", "AAAAAAAA"),
    ("get /api/v1/users", "AFFFFFFF"),
    ("post /api/v1/users", "AFFFFFFF"),
    ("delete /api/v1/users/{name}", "AFFFFFFF"),
    ("put /api/v1/users/{name}/password", "AAAAFFFF"),
    ("put /api/v1/users/{name}/role", "AFFFFFFF"),
    ("put /api/v1/users/{name}/grants/{vm}", "AFFFFFFF"),
    ("get /api/v1/tokens", "AAAAAAAA"),
    ("get /api/v1/users/{name}/keys", "AAAAFFFF"),
    ("post /api/v1/users/{name}/keys", "AAAAFFFF"),
    ("delete /api/v1/users/{name}/keys/{fingerprint}", "AAAAFFFF"),
    ("post /api/v1/tokens", "AAAAAAAA"),
    ("delete /api/v1/tokens/{id}", "AAAAAAAA"),
    ("get /api/v1/ssh/sessions", "AAAAAAAA"),
    ("get /api/v1/ssh/sessions/{id}/recording", "AAAAAAAA"),
    ("get /api/v1/tasks", "AAAAAAAA"),
    ("get /api/v1/tasks/{id}", "AAAAAAAA"),
    ("post /api/v1/tasks/{id}/cancel", "AAFFFFFF"),
    ("get /api/v1/events", "AAAAAAAA"),
    ("get /api/v1/events/ws", "AAAAAAAA"),
    ("get /api/v1/openapi.json", "AAAAAAAA"),
];

fn scope(role: Option<Role>, vms: Option<Vec<String>>) -> TokenScope {
    TokenScope { id: "t".into(), role, vms, expires: None, session: false }
}

/// A caller as `verify_token` makes it: the user's rights, capped by the token.
fn with_token(mut c: Caller, s: TokenScope) -> Caller {
    if let Some(cap) = s.role {
        c.global = c.global.map(|g| g.min(cap));
    }
    c.token = Some(s);
    c
}

fn callers() -> [Caller; 5] {
    let user = |name: &str, role| Caller { user: name.into(), global: Some(role), grants: Arc::default(), token: None };
    let narrowed = with_token(user("olga", Role::Operator), scope(Some(Role::Viewer), Some(vec!["own1".into()])));
    let (role, vms, _) = narrow(&narrowed, Some(Role::Admin), Some(vec!["own1".into(), "other1".into()]), None);
    let minted = with_token(user("olga", Role::Operator), scope(role, vms));
    [user("ada", Role::Admin), user("olga", Role::Operator), user("vic", Role::Viewer), narrowed, minted]
}

fn den() -> Arc<Den> {
    let dir = tempfile::tempdir().unwrap();
    let paths = den_vms::paths::Paths::new(dir.path(), &dir.path().join("run"), &dir.path().join("images"));
    let den = Den::new(
        den_store::Store::memory().unwrap(),
        paths,
        den_core::vm::Limits { max_cpus: 2, max_memory_mib: 1024 },
        "10.87.0.0/24",
    );
    for (name, owner) in [("own1", "olga"), ("other1", "root"), ("den1", "dend")] {
        let mut vm = den_core::testkit::vm_record(name);
        vm.owner = owner.into();
        den.store.insert_vm(&vm).unwrap();
        den.store.insert_task(&format!("t-{name}"), "vm.create", name, owner).unwrap();
    }
    den
}

#[test]
fn every_route_for_every_kind_of_caller() {
    let den = den();
    let [admin, op, viewer, narrowed, minted] = callers();
    assert_eq!(minted.token.as_ref().and_then(|t| t.vms.clone()), Some(vec!["own1".to_string()]), "minting narrows");
    let column_callers = [&admin, &op, &op, &op, &viewer, &narrowed, &narrowed, &minted];
    let mut missing = vec![];
    let mut wrong = vec![];
    for (method, template) in super::routes::operations() {
        let key = format!("{method} {template}");
        let Some((_, row)) = MATRIX.iter().find(|(k, _)| *k == key) else {
            missing.push(key);
            continue;
        };
        for (i, ((who, vm), caller)) in COLUMNS.iter().zip(column_callers).enumerate() {
            let path = template
                .replace("{name}", if template.starts_with("/api/v1/users/") { "olga" } else { vm })
                .replace("{vm}", vm)
                .replace("{snap}", "s1")
                .replace("{id}", &format!("t-{vm}"))
                .replace("{fingerprint}", "SHA256:x");
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let got = if authorize_for_test(&den, caller, &need(&m, &path)) { 'A' } else { 'F' };
            let want = row.as_bytes().get(i).copied().map(char::from).unwrap_or('?');
            if got != want {
                wrong.push(format!("{key} as {who} on {vm}: expected {want}, got {got}"));
            }
        }
    }
    assert!(missing.is_empty(), "routes with no row in the permission matrix: {missing:#?}");
    assert!(wrong.is_empty(), "the permission matrix differs:\n{}", wrong.join("\n"));
    assert_eq!(MATRIX.len(), super::routes::operations().count(), "no rows for routes that are gone");
}

#[test]
fn every_docker_request_class_for_every_kind_of_caller() {
    use den_dockerd_bridge::owners::{access, role_for};
    let [admin, op, viewer, ..] = callers();
    // (request, object owner): the columns are admin, operator on their own object, operator on
    // someone else's, operator on an object with no owner, viewer on the operator's.
    let rows: &[(&str, &str, &str, &str)] = &[
        ("GET", "/v1.41/containers/json", "", "AAAAA"),
        ("GET", "/v1.41/containers/c1/json", "", "AAAAA"),
        ("GET", "/v1.41/containers/c1/logs", "", "AAAAA"),
        ("GET", "/v1.41/containers/c1/archive", "path=/", "AAFFF"),
        ("GET", "/v1.41/containers/c1/export", "", "AAFFF"),
        ("GET", "/v1.41/images/get", "names=i1", "AAFAF"),
        ("POST", "/v1.41/containers/create", "", "AAAAF"),
        ("POST", "/v1.41/containers/c1/exec", "", "AAFFF"),
        ("POST", "/v1.41/exec/e1/start", "", "AAFFF"),
        ("PUT", "/v1.41/containers/c1/archive", "path=/", "AAFFF"),
        ("POST", "/v1.41/containers/c1/stop", "", "AAFFF"),
        ("DELETE", "/v1.41/containers/c1", "", "AAFFF"),
        ("DELETE", "/v1.41/volumes/v1", "", "AAFFF"),
        ("POST", "/v1.41/networks/n1/connect", "", "AAFFF"),
        ("POST", "/v1.41/containers/prune", "", "AFFFF"),
        ("POST", "/v1.41/build", "t=x", "AAAAF"),
    ];
    for (method, path, query, want) in rows {
        let acc = access(method, path, query);
        let read = *method == "GET";
        for (i, (caller, owner)) in
            [(&admin, Some("olga")), (&op, Some("olga")), (&op, Some("root")), (&op, None), (&viewer, Some("olga"))]
                .into_iter()
                .enumerate()
        {
            let role_ok = caller.has(role_for(&acc, read));
            let objects = match &acc {
                den_dockerd_bridge::owners::Access::Change(o) | den_dockerd_bridge::owners::Access::ReadFiles(o) => {
                    o.clone()
                }
                _ => vec![],
            };
            let objects_ok = objects.iter().all(|o| {
                let shared = matches!(o, den_dockerd_bridge::owners::Object::Image(_)) && owner.is_none();
                let what = o.describe();
                let action = policy::Action::DockerObject { what: &what, owner, shared, binds_shares: false };
                policy::authorize(caller, &action).is_ok()
            });
            let got = if role_ok && objects_ok { 'A' } else { 'F' };
            let expected = want.as_bytes()[i] as char;
            assert_eq!(got, expected, "{method} {path}?{query}, column {i}");
        }
    }
}
