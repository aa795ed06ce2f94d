//! `/api/v1/apps`: install (the request body is the package), check, list, show, uninstall,
//! traffic audit.

use super::{ApiError, Caller};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use den_core::new_id;
use den_lpk_host::{AppTable, Apps};
use den_vms::Den;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// Receives the request body into `.uploads/<id>.lpk`, refusing more than the configured size.
async fn receive(apps: &Apps, req: Request) -> Result<std::path::PathBuf, ApiError> {
    let dirs = apps.app_dirs();
    let fail = |e: std::io::Error| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", format!("cannot store the package: {e}"))
    };
    dirs.create().map_err(fail)?;
    let path = dirs.uploads().join(format!("{}.lpk", new_id()));
    let max = apps.apps_cfg().max_package_mib << 20;
    let mut file = tokio::fs::File::create(&path).await.map_err(fail)?;
    let mut stream = req.into_body().into_data_stream();
    let mut total = 0u64;
    let res: Result<(), ApiError> = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::new(StatusCode::BAD_REQUEST, "upload", format!("the package upload broke off: {e}"))
            })?;
            total += chunk.len() as u64;
            if total > max {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the package is larger than {} MiB (max_package_mib under [apps] in den.toml)", max >> 20),
                ));
            }
            file.write_all(&chunk).await.map_err(fail)?;
        }
        if total == 0 {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "upload", "send the .lpk file as the request body"));
        }
        file.flush().await.map_err(fail)
    }
    .await;
    if let Err(e) = res {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// What the check found, for people and scripts.
fn report(pkg: &den_lpk::Package) -> Value {
    json!({
        "package": pkg.meta.package, "version": pkg.version.to_string(), "format": pkg.format,
        "name": pkg.meta.name, "signed": pkg.signed, "permissions": pkg.meta.permissions,
        "subdomain": pkg.plan.subdomain,
        "services": pkg.plan.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>(),
        "routes": pkg.plan.routes, "files": pkg.files.len(), "unpacked_bytes": pkg.unpacked,
        "warnings": pkg.plan.warnings,
    })
}

#[derive(Deserialize)]
pub(super) struct InstallQuery {
    /// Only check the package.
    #[serde(default)]
    dry_run: bool,
    /// Replace the installed app of the same package id (a newer version).
    #[serde(default)]
    upgrade: bool,
}

/// `POST /api/v1/apps`: installs a package (202 with the task); with `?upgrade=true` replaces
/// the installed version of the same package; with `?dry_run=true` only checks it (200 with
/// what the check found).
pub(super) async fn install(
    State(apps): State<Arc<Apps>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<InstallQuery>,
    req: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let file = receive(&apps, req).await?;
    if q.dry_run {
        let res = async { apps.app_check(&file, apps.lpk_options(None)?).await }.await;
        let _ = std::fs::remove_file(&file);
        return Ok((StatusCode::OK, Json(report(&res?))));
    }
    let checked = async {
        let opts = apps.lpk_options(None)?;
        let pkg = apps.app_check(&file, opts.clone()).await?;
        Ok::<_, den_lpk_host::AppError>((pkg, opts))
    }
    .await;
    let (pkg, opts) = match checked {
        Ok(x) => x,
        Err(e) => {
            let _ = std::fs::remove_file(&file);
            return Err(e.into());
        }
    };
    let summary = report(&pkg);
    let (task, app) = if q.upgrade {
        let name = pkg.meta.package.clone();
        apps.app_upgrade(&name, file, pkg, opts, &caller.user)?
    } else {
        apps.app_install(file, pkg, opts, &caller.user)?
    };
    Ok((StatusCode::ACCEPTED, Json(json!({"task": task, "app": app.package, "check": summary}))))
}

/// `GET /api/v1/apps`.
pub(super) async fn list(State(den): State<Arc<Den>>) -> Result<Json<Value>, ApiError> {
    Ok(Json(serde_json::to_value(den.store.apps()?).unwrap_or_default()))
}

/// `GET /api/v1/apps/:name` (package id or subdomain).
/// With `traffic_unlogged`: how many packets of the app's traffic were not logged because its
/// services sent more than the audit logs (`net::nft::AUDIT_RATE`).
pub(super) async fn get(State(den): State<Arc<Den>>, Path(name): Path<String>) -> Result<Json<Value>, ApiError> {
    let app = den.store.app(&name).map_err(den_lpk_host::AppError::from)?;
    let unlogged = den_net::nft::unlogged_of(&den_net::nft::unlogged().await, &app.network);
    let mut v = serde_json::to_value(app).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("traffic_unlogged".into(), unlogged.into());
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
pub(super) struct UninstallQuery {
    #[serde(default)]
    keep_data: bool,
}

/// `DELETE /api/v1/apps/:name?keep_data=true`.
pub(super) async fn uninstall(
    State(apps): State<Arc<Apps>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Query<UninstallQuery>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let task = apps.app_uninstall(&name, q.keep_data, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task": task}))))
}

#[derive(Deserialize)]
pub(super) struct TrafficQuery {
    after: Option<i64>,
    limit: Option<u32>,
}

/// `GET /api/v1/apps/:name/traffic`: the app's outbound connection attempts.
pub(super) async fn traffic(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
    Query(q): Query<TrafficQuery>,
) -> Result<Json<Value>, ApiError> {
    let app = den.store.app(&name).map_err(den_lpk_host::AppError::from)?;
    let recs = den.store.traffic(&app.package, q.after.unwrap_or(0), q.limit.unwrap_or(500).min(5000))?;
    Ok(Json(serde_json::to_value(recs).unwrap_or_default()))
}

/// `POST /api/v1/apps/:name/start`.
pub(super) async fn start(
    State(apps): State<Arc<Apps>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let task = apps.app_start(&name, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task": task}))))
}

/// `POST /api/v1/apps/:name/stop`.
pub(super) async fn stop(
    State(apps): State<Arc<Apps>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let task = apps.app_stop(&name, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(json!({"task": task}))))
}

#[derive(Deserialize)]
pub(super) struct LogsQuery {
    service: Option<String>,
    bytes: Option<usize>,
}

/// `GET /api/v1/apps/:name/logs`: each service's console output (its programs' output and
/// its boot), the last `bytes` (default 64 KiB) of each.
pub(super) async fn logs(
    State(den): State<Arc<Den>>,
    Path(name): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Json<Value>, ApiError> {
    let app = den.store.app(&name).map_err(den_lpk_host::AppError::from)?;
    if let Some(s) = q.service.as_deref().filter(|s| !app.vms.contains_key(*s)) {
        let names: Vec<&str> = app.vms.keys().map(String::as_str).collect();
        let msg = format!("app {} has no service `{s}` (it has: {})", app.package, names.join(", "));
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", msg));
    }
    let mut out = serde_json::Map::new();
    for (svc, vm) in app.vms.iter().filter(|(s, _)| q.service.as_deref().is_none_or(|w| w == s.as_str())) {
        let text = den.console(vm, q.bytes.unwrap_or(64 << 10).min(4 << 20)).await.unwrap_or_default();
        out.insert(svc.clone(), Value::String(text));
    }
    Ok(Json(Value::Object(out)))
}
