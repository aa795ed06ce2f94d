//! The API's OpenAPI 3.1 document (`GET /api/v1/openapi.json`), built from the route table
//! (`routes.rs`) that also builds the router and says what each route needs.

use crate::routes::{openapi_path, Route, Rule, ROUTES};
use serde_json::{json, Map, Value};

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

/// What a success answers with: JSON for all but file contents, recordings and WebSockets.
fn ok_media(r: &Route) -> Option<&'static str> {
    match (r.method, r.path) {
        (_, p) if p.ends_with("/ws") => None,
        ("GET", "/api/v1/vms/:name/files") => Some("application/octet-stream"),
        ("GET", "/api/v1/ssh/sessions/:id/recording") => Some("application/x-asciicast"),
        _ => Some("application/json"),
    }
}

/// `GET /api/v1/openapi.json`.
pub(crate) async fn serve() -> axum::Json<Value> {
    axum::Json(document())
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for o in ROUTES {
        let params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix(':'))
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
            "description": format!("Needs: {}.", o.rule.describe()),
            "parameters": params,
            "responses": {
                o.ok.0.to_string(): ok,
                "default": {"description": "an error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        });
        if o.rule == Rule::Public {
            op["security"] = json!([]);
        }
        if let Some(b) = o.body {
            let media = if b == "Package" { "application/octet-stream" } else { "application/json" };
            op["requestBody"] = json!({"required": true, "content": {media: {"schema": {"$ref": format!("#/components/schemas/{b}")}}}});
        }
        let entry = paths.entry(openapi_path(o.path)).or_insert_with(|| json!({}));
        entry[o.method.to_ascii_lowercase()] = op;
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

    /// Every route is documented once, under its OpenAPI path and method, with its body's schema.
    #[test]
    fn document_has_every_route() {
        let doc = document();
        for r in ROUTES {
            let op = &doc["paths"][openapi_path(r.path)][r.method.to_ascii_lowercase()];
            assert_eq!(op["summary"], r.summary, "{} {}", r.method, r.path);
        }
        let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, ROUTES.len());
        assert_eq!(
            doc["paths"]["/api/v1/vms"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/VmSpec"
        );
        for o in ROUTES.iter().filter_map(|o| o.body) {
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
