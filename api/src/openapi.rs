//! The API's OpenAPI 3.1 document (`GET /api/v1/openapi.json`), built from one table of routes.
//! A test checks the table against the router's own route list, so the two cannot drift.

use serde_json::{json, Map, Value};

/// One documented operation.
struct Op {
    method: &'static str,
    /// Path in OpenAPI form (`{name}`).
    path: &'static str,
    summary: &'static str,
    /// What the caller needs (`anyone`, `public`, a role, or a role on the VM).
    needs: &'static str,
    /// Request body schema (a name under `components.schemas`).
    body: Option<&'static str>,
    /// Success status and what it returns.
    ok: (u16, &'static str),
}

const fn op(
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    needs: &'static str,
    body: Option<&'static str>,
    ok: (u16, &'static str),
) -> Op {
    Op { method, path, summary, needs, body, ok }
}

const TASK: (u16, &str) = (202, "a task: `{task, location}` (and `vm` for creates); poll `location`");

const OPS: &[Op] = &[
    op("get", "/api/v1/host", "Host facts: version, KVM kind, limits, warnings", "anyone", None, (200, "host")),
    op("get", "/api/v1/host/metrics", "Host CPU, memory and disk over the last hour", "anyone", None, (200, "samples")),
    op("get", "/api/v1/images", "Images VMs can be made from", "anyone", None, (200, "images")),
    op(
        "get",
        "/api/v1/docker",
        "The Docker socket, its sandbox VM and policy settings",
        "anyone",
        None,
        (200, "status"),
    ),
    op("get", "/api/v1/vms", "VMs the caller may see", "anyone", None, (200, "VM records")),
    op("post", "/api/v1/vms", "Create a VM", "operator", Some("VmSpec"), TASK),
    op("get", "/api/v1/vms/{name}", "One VM", "viewer on the VM", None, (200, "VM record")),
    op("delete", "/api/v1/vms/{name}", "Delete a stopped VM and its disks", "operator on the VM", None, TASK),
    op("post", "/api/v1/vms/{name}/start", "Start", "operator on the VM", None, TASK),
    op(
        "post",
        "/api/v1/vms/{name}/stop",
        "Stop: graceful, then hard after a timeout",
        "operator on the VM",
        None,
        TASK,
    ),
    op(
        "post",
        "/api/v1/vms/{name}/reboot",
        "Reboot: shut down, start on the same disks",
        "operator on the VM",
        None,
        TASK,
    ),
    op(
        "post",
        "/api/v1/vms/{name}/exec",
        "Run a command through the guest agent",
        "operator on the VM",
        Some("Exec"),
        (200, "`{code, signal, stdout, stderr}`"),
    ),
    op(
        "put",
        "/api/v1/vms/{name}/files",
        "Write the body to a guest file through the agent (`?path=/abs&mode=755`)",
        "operator on the VM",
        None,
        (200, "`{path, bytes, mode}`"),
    ),
    op(
        "get",
        "/api/v1/vms/{name}/files",
        "A guest file's bytes, through the agent (`?path=/abs`)",
        "operator on the VM",
        None,
        (200, "the file"),
    ),
    op("post", "/api/v1/vms/{name}/pause", "Pause the vCPUs", "operator on the VM", None, (200, "VM record")),
    op("post", "/api/v1/vms/{name}/resume", "Resume", "operator on the VM", None, (200, "VM record")),
    op(
        "get",
        "/api/v1/vms/{name}/metrics",
        "CPU, memory, disk and network of the VM over the last hour",
        "viewer on the VM",
        None,
        (200, "samples"),
    ),
    op(
        "get",
        "/api/v1/vms/{name}/console",
        "Recent serial console output",
        "viewer on the VM",
        None,
        (200, "`{output}`"),
    ),
    op(
        "get",
        "/api/v1/vms/{name}/console/ws",
        "WebSocket: the serial console, binary frames both ways",
        "operator on the VM",
        None,
        (101, "WebSocket"),
    ),
    op(
        "post",
        "/api/v1/vms/{name}/console/ticket",
        "A one-shot, 30-second ticket for the console WebSocket (`console/ws?ticket=`), for browsers",
        "operator on the VM",
        None,
        (200, "`{ticket, url, expires_in}`"),
    ),
    op("get", "/api/v1/vms/{name}/snapshots", "Disk snapshots", "viewer on the VM", None, (200, "snapshots")),
    op("post", "/api/v1/vms/{name}/snapshots", "Take a disk snapshot", "operator on the VM", Some("Snapshot"), TASK),
    op(
        "delete",
        "/api/v1/vms/{name}/snapshots/{snap}",
        "Delete a snapshot",
        "operator on the VM",
        None,
        (200, "`{deleted}`"),
    ),
    op(
        "post",
        "/api/v1/vms/{name}/snapshots/{snap}/rollback",
        "Roll a stopped VM back",
        "operator on the VM",
        None,
        TASK,
    ),
    op("post", "/api/v1/vms/{name}/clone", "Clone into a new VM", "operator", Some("Clone"), TASK),
    op(
        "post",
        "/api/v1/vms/{name}/resize",
        "Grow the root disk",
        "operator on the VM",
        Some("Resize"),
        (200, "VM record"),
    ),
    op("get", "/api/v1/isos", "Installation ISOs", "anyone", None, (200, "ISOs")),
    op("post", "/api/v1/isos", "Import a host file as an ISO", "admin", Some("ImportIso"), TASK),
    op("delete", "/api/v1/isos/{name}", "Delete an unused ISO", "admin", None, (200, "`{deleted}`")),
    op("get", "/api/v1/apps", "Installed LPK apps", "anyone", None, (200, "app records")),
    op(
        "post",
        "/api/v1/apps",
        "Install an .lpk package (the body); `?upgrade=true` replaces the installed version, `?dry_run=true` only checks it",
        "admin",
        Some("Package"),
        (202, "`{task, app, check}` (200 with the check alone for a dry run)"),
    ),
    op("get", "/api/v1/apps/{name}", "One app, by package id or subdomain, with `traffic_unlogged` (packets over the audit's rate)", "anyone", None, (200, "app record")),
    op("delete", "/api/v1/apps/{name}", "Uninstall an app (`?keep_data=true` keeps /lzcapp/var)", "admin", None, TASK),
    op(
        "get",
        "/api/v1/apps/{name}/logs",
        "Each service's console output (`?service=NAME&bytes=N`)",
        "viewer",
        None,
        (200, "`{service: text}`"),
    ),
    op(
        "post",
        "/api/v1/apps/{name}/start",
        "Start an app's services in order; ends when it answers",
        "admin",
        None,
        TASK,
    ),
    op("post", "/api/v1/apps/{name}/stop", "Stop an app's services, dependents first", "admin", None, TASK),
    op(
        "get",
        "/api/v1/apps/{name}/traffic",
        "The app's outbound connection attempts (`?after=SEQ&limit=N`)",
        "viewer",
        None,
        (200, "traffic records"),
    ),
    op(
        "get",
        "/api/v1/system",
        "The business OS: slots, phase, updates with their steps and outcomes, recent health checks (`?health=N`)",
        "viewer",
        None,
        (200, "system status"),
    ),
    op(
        "post",
        "/api/v1/system/update",
        "Write an image into the inactive OS slot and put it on trial (commits or rolls back by itself)",
        "admin",
        Some("SystemUpdate"),
        (202, "`{task, location, update}`"),
    ),
    op(
        "post",
        "/api/v1/system/rollback",
        "End a trial, or put the other slot's OS on trial again",
        "admin",
        None,
        (202, "`{update}`"),
    ),
    op("get", "/api/v1/networks", "Networks with their VMs", "anyone", None, (200, "networks")),
    op("post", "/api/v1/networks", "Create a network", "admin", Some("NetworkSpec"), (201, "network")),
    op("delete", "/api/v1/networks/{name}", "Delete an unused network", "admin", None, (200, "`{deleted}`")),
    op(
        "post",
        "/api/v1/login",
        "Log in: a 12-hour session token (rate-limited)",
        "public",
        Some("Login"),
        (200, "token"),
    ),
    op(
        "post",
        "/api/v1/session",
        "Browser login: sets the HttpOnly session cookie; changes then need `X-CSRF-Token`",
        "public",
        Some("Login"),
        (200, "`{user, role, grants, csrf}`"),
    ),
    op("get", "/api/v1/session", "The browser session's user and CSRF value", "anyone", None, (200, "session")),
    op("delete", "/api/v1/session", "Log out: revoke the session, clear the cookie", "anyone", None, (200, "ok")),
    op("get", "/api/v1/whoami", "The caller's identity", "anyone", None, (200, "`{user, role, token}`")),
    op("get", "/api/v1/users", "Users with their grants", "admin", None, (200, "users")),
    op("post", "/api/v1/users", "Add a user", "admin", Some("NewUser"), (201, "user")),
    op("delete", "/api/v1/users/{name}", "Remove a user, their grants and tokens", "admin", None, (200, "`{deleted}`")),
    op(
        "put",
        "/api/v1/users/{name}/password",
        "Set a password",
        "the user or an admin",
        Some("Password"),
        (200, "`{user}`"),
    ),
    op("put", "/api/v1/users/{name}/role", "Set the global role", "admin", Some("Role"), (200, "`{user, role}`")),
    op(
        "put",
        "/api/v1/users/{name}/grants/{vm}",
        "Grant a role on one VM (null revokes)",
        "admin",
        Some("Role"),
        (200, "`{user, vm, role}`"),
    ),
    op(
        "get",
        "/api/v1/tokens",
        "The caller's API tokens (`?all=true`: everyone's, admins)",
        "anyone",
        None,
        (200, "tokens"),
    ),
    op("get", "/api/v1/users/{name}/keys", "A user's SSH public keys", "the user or an admin", None, (200, "keys")),
    op(
        "post",
        "/api/v1/users/{name}/keys",
        "Add an SSH public key (for the SSH gateway)",
        "the user or an admin",
        Some("NewKey"),
        (201, "`{user, fingerprint, type}`"),
    ),
    op(
        "delete",
        "/api/v1/users/{name}/keys/{fingerprint}",
        "Remove an SSH key",
        "the user or an admin",
        None,
        (200, "`{removed}`"),
    ),
    op("post", "/api/v1/tokens", "Make an API token (shown once)", "anyone", Some("TokenRequest"), (201, "token")),
    op("delete", "/api/v1/tokens/{id}", "Revoke a token", "its user or an admin", None, (200, "`{revoked}`")),
    op(
        "get",
        "/api/v1/ssh/sessions",
        "SSH gateway sessions, newest first (`?user=` for admins, `?limit=`)",
        "anyone (their own; admins everyone's)",
        None,
        (200, "sessions: `{id, user, vm, kind, command, peer, started, ended, exit, recorded}`"),
    ),
    op(
        "get",
        "/api/v1/ssh/sessions/{id}/recording",
        "An interactive session's recording (asciicast v2)",
        "its user or an admin",
        None,
        (200, "`application/x-asciicast`"),
    ),
    op("get", "/api/v1/tasks", "Recent tasks (`?limit=`)", "viewer", None, (200, "tasks")),
    op("get", "/api/v1/tasks/{id}", "One task: status, progress (percent), log", "viewer", None, (200, "task")),
    op(
        "post",
        "/api/v1/tasks/{id}/cancel",
        "Cancel a create, clone or snapshot task (its work is undone)",
        "operator",
        None,
        (202, "`{task, cancelling}`"),
    ),
    op(
        "get",
        "/api/v1/events",
        "The events log (`?after=&limit=`, or the newest with `?tail=N`); non-viewers see their VMs' only",
        "anyone",
        None,
        (200, "events"),
    ),
    op(
        "get",
        "/api/v1/events/ws",
        "WebSocket: events after `?after=N`, then live (filtered like the log)",
        "anyone",
        None,
        (101, "WebSocket"),
    ),
    op("get", "/api/v1/openapi.json", "This document", "public", None, (200, "OpenAPI 3.1")),
];

fn schemas() -> Value {
    let s = |props: Value, required: &[&str]| json!({"type": "object", "additionalProperties": false, "properties": props, "required": required});
    let role = json!({"enum": ["admin", "operator", "viewer", null]});
    json!({
        "Error": {"type": "object", "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}}, "required": ["code", "message"]},
        "VmSpec": s(json!({
            "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
            "image": {"type": "string"},
            "iso": {"type": "string"},
            "firmware": {"enum": ["bios", "uefi"]},
            "kind": {"enum": ["dev", "app", "system"]},
            "engine": {"enum": ["auto", "vmm", "qemu"]},
            "cpus": {"type": "integer", "minimum": 1},
            "memory_mib": {"type": "integer", "minimum": 64},
            "restart": {"enum": ["always", "on-failure", "never"]},
            "cmdline_extra": {"type": "string", "maxLength": 1024},
            "disk_mib": {"type": "integer", "minimum": 64},
            "autostart": {"type": "boolean"},
            "first_boot": s(json!({"users": {"type": "array", "items": {"type": "string"}}, "ssh_keys": {"type": "array", "items": {"type": "string"}}}), &[]),
            "start_order": {"type": "integer", "minimum": 0},
            "nics": {"type": "array", "maxItems": 8, "items": s(json!({"network": {"type": "string"}, "mac": {"type": "string"}}), &[])},
            "ports": {"type": "array", "items": s(json!({"host_port": {"type": "integer"}, "guest_port": {"type": "integer"}, "proto": {"enum": ["tcp", "udp"]}, "local": {"type": "boolean"}}), &["host_port", "guest_port"])},
            "data_disk_mib": {"type": "integer", "minimum": 64},
            "shares": {"type": "array", "maxItems": 8, "description": "host folders shared over virtio-fs (admins only)", "items": s(json!({"host": {"type": "string"}, "guest": {"type": "string"}}), &["host"])},
        }), &["name", "image"]),
        "NetworkSpec": s(json!({"name": {"type": "string", "maxLength": 11}, "subnet": {"type": "string", "examples": ["10.88.0.0/24"]}, "isolated": {"type": "boolean"}, "host_ports": {"type": "array", "maxItems": 64, "items": s(json!({"port": {"type": "integer", "minimum": 1, "maximum": 65535}, "proto": {"enum": ["tcp", "udp"]}}), &["port"])}}), &["name", "subnet"]),
        "Package": {"type": "string", "format": "binary", "description": "an .lpk file (v1 ZIP or v2 tar)"},
        "ImportIso": s(json!({"name": {"type": "string"}, "path": {"type": "string"}}), &["name", "path"]),
        "SystemUpdate": s(json!({"image": {"type": "string"}}), &["image"]),
        "Exec": s(json!({"argv": {"type": "array", "items": {"type": "string"}, "minItems": 1}}), &["argv"]),
        "Snapshot": s(json!({"name": {"type": "string"}, "description": {"type": "string"}}), &["name"]),
        "Clone": s(json!({"name": {"type": "string"}}), &["name"]),
        "Resize": s(json!({"disk_mib": {"type": "integer"}}), &["disk_mib"]),
        "Login": s(json!({"user": {"type": "string"}, "password": {"type": "string"}}), &["user", "password"]),
        "NewUser": s(json!({"name": {"type": "string"}, "password": {"type": ["string", "null"], "minLength": 8}, "role": role}), &["name"]),
        "NewKey": s(json!({"key": {"type": "string", "description": "an authorized_keys line"}}), &["key"]),
        "Password": s(json!({"password": {"type": "string", "minLength": 8}}), &["password"]),
        "Role": s(json!({"role": role}), &["role"]),
        "TokenRequest": s(json!({"name": {"type": "string"}, "user": {"type": ["string", "null"]}, "role": role, "vms": {"type": ["array", "null"], "items": {"type": "string"}}, "expires_in": {"type": ["integer", "null"]}}), &["name"]),
    })
}

/// Every documented operation as (method, path template): the router's routes (a test keeps
/// them the same).
pub fn operations() -> impl Iterator<Item = (&'static str, &'static str)> {
    OPS.iter().map(|o| (o.method, o.path))
}

/// What a success answers with: JSON for all but file contents, recordings and WebSockets.
fn ok_media(o: &Op) -> Option<&'static str> {
    match (o.method, o.path) {
        (_, p) if p.ends_with("/ws") => None,
        ("get", "/api/v1/vms/{name}/files") => Some("application/octet-stream"),
        ("get", "/api/v1/ssh/sessions/{id}/recording") => Some("application/x-asciicast"),
        _ => Some("application/json"),
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in OPS {
        let params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| json!({"name": p, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut ok = json!({"description": o.ok.1});
        if let Some(media) = ok_media(o) {
            let body =
                if media == "application/json" { json!({"schema": {"type": ["object", "array"]}}) } else { json!({}) };
            ok["content"] = json!({ media: body });
        }
        let mut op = json!({
            "summary": o.summary,
            "description": format!("Needs: {}.", o.needs),
            "parameters": params,
            "responses": {
                o.ok.0.to_string(): ok,
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if o.needs == "public" {
            op["security"] = json!([]);
        }
        if let Some(b) = o.body {
            let media = if b == "Package" { "application/octet-stream" } else { "application/json" };
            op["requestBody"] = json!({"required": true, "content": {media: {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        let entry = paths.entry(o.path).or_insert_with(|| json!({}));
        entry[o.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Den API (dend)", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Errors are JSON `{code, message, field?}`. Remote callers send `Authorization: Bearer den_...`; the local Unix socket's root is admin."},
        "servers": [{"url": "https://localhost:8006"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas()},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.route(...)` of the router is documented with the same methods, and nothing else is.
    #[test]
    fn document_matches_the_router() {
        let src = include_str!("lib.rs");
        let mut routed = vec![];
        for line in src.lines().map(str::trim).filter(|l| l.starts_with(".route(\"")) {
            let path = line.split('"').nth(1).unwrap_or_default();
            let path: String = path
                .split('/')
                .map(|s| s.strip_prefix(':').map(|p| format!("{{{p}}}")).unwrap_or(s.to_string()))
                .collect::<Vec<_>>()
                .join("/");
            for m in ["get", "post", "put", "delete"] {
                if line.contains(&format!("{m}(")) {
                    routed.push(format!("{m} {path}"));
                }
            }
        }
        routed.sort();
        let mut documented: Vec<String> = OPS.iter().map(|o| format!("{} {}", o.method, o.path)).collect();
        documented.sort();
        assert_eq!(routed, documented);
        let doc = document();
        assert_eq!(
            doc["paths"]["/api/v1/vms"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/VmSpec"
        );
        for o in OPS.iter().filter_map(|o| o.body) {
            assert!(doc["components"]["schemas"].get(o).is_some(), "schema {o}");
        }
    }

    /// The VmSpec schema lists exactly the fields the API accepts.
    #[test]
    fn vm_spec_schema_matches_the_type() {
        let spec: den_core::vm::VmSpec =
            serde_json::from_value(json!({"name": "a", "image": "b", "disk_mib": 100, "first_boot": {"users": ["u"]},
                                          "iso": "x", "firmware": "bios", "data_disk_mib": 100,
                                          "shares": [{"host": "/srv"}]}))
            .unwrap();
        let fields: Vec<String> = serde_json::to_value(&spec).unwrap().as_object().unwrap().keys().cloned().collect();
        let props = &schemas()["VmSpec"]["properties"];
        for f in &fields {
            assert!(props.get(f).is_some(), "{f} missing from the schema");
        }
        assert_eq!(props.as_object().unwrap().len(), fields.len());
    }
}
