//! `/api/v1/apps`: install (the request body is the package), check, list, show, uninstall,
//! traffic audit.

use super::{ApiError, Caller};
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use den_api_types::apps::{AppInstalled, PackageCheck, TrafficRecord};
use den_api_types::Accepted;
use den_core::new_id;
use den_lpk_host::AppRecord;
use den_lpk_host::{AppTable, Apps};
use den_vms::Den;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
fn report(pkg: &den_lpk::Package) -> PackageCheck {
    PackageCheck {
        package: pkg.meta.package.clone(),
        version: pkg.version.to_string(),
        format: pkg.format,
        name: pkg.meta.name.clone(),
        signed: pkg.signed.clone(),
        permissions: pkg.meta.permissions.clone(),
        subdomain: pkg.plan.subdomain.clone(),
        services: pkg.plan.services.iter().map(|s| s.name.clone()).collect(),
        routes: pkg.plan.routes.clone(),
        files: pkg.files.len(),
        unpacked_bytes: pkg.unpacked,
        warnings: pkg.plan.warnings.clone(),
    }
}

/// `GET /api/v1/apps/{name}`: the app's record and how much of its traffic went unlogged.
#[derive(Serialize)]
pub(super) struct AppDetail {
    #[serde(flatten)]
    app: AppRecord,
    /// Packets of the app's traffic that were not logged because its services sent more than
    /// the audit logs (`den_net::nft::AUDIT_RATE`).
    traffic_unlogged: u64,
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
) -> Result<Response, ApiError> {
    let file = receive(&apps, req).await?;
    if q.dry_run {
        let res = async { apps.app_check(&file, apps.lpk_options(None)?).await }.await;
        let _ = std::fs::remove_file(&file);
        return Ok((StatusCode::OK, Json(report(&res?))).into_response());
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
    let answer = AppInstalled { task: Accepted::new(&task), app: app.package, check: summary };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// `GET /api/v1/apps`.
pub(super) async fn list(State(den): State<Arc<Den>>) -> Result<Json<Vec<AppRecord>>, ApiError> {
    Ok(Json(den.store.apps()?))
}

/// `GET /api/v1/apps/:name` (package id or subdomain).
pub(super) async fn get(State(den): State<Arc<Den>>, Path(name): Path<String>) -> Result<Json<AppDetail>, ApiError> {
    let app = den.store.app(&name).map_err(den_lpk_host::AppError::from)?;
    let traffic_unlogged = den_net::nft::unlogged_of(&den_net::nft::unlogged().await, &app.network);
    Ok(Json(AppDetail { app, traffic_unlogged }))
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
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let task = apps.app_uninstall(&name, q.keep_data, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted::new(&task))))
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
) -> Result<Json<Vec<TrafficRecord>>, ApiError> {
    let app = den.store.app(&name).map_err(den_lpk_host::AppError::from)?;
    Ok(Json(den.store.traffic(&app.package, q.after.unwrap_or(0), q.limit.unwrap_or(500).min(5000))?))
}

/// `POST /api/v1/apps/:name/start`.
pub(super) async fn start(
    State(apps): State<Arc<Apps>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let task = apps.app_start(&name, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted::new(&task))))
}

/// `POST /api/v1/apps/:name/stop`.
pub(super) async fn stop(
    State(apps): State<Arc<Apps>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let task = apps.app_stop(&name, &caller.user)?;
    Ok((StatusCode::ACCEPTED, Json(Accepted::new(&task))))
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
) -> Result<Json<BTreeMap<String, String>>, ApiError> {
    let app = den.store.app(&name).map_err(den_lpk_host::AppError::from)?;
    if let Some(s) = q.service.as_deref().filter(|s| !app.vms.contains_key(*s)) {
        let names: Vec<&str> = app.vms.keys().map(String::as_str).collect();
        let msg = format!("app {} has no service `{s}` (it has: {})", app.package, names.join(", "));
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", msg));
    }
    let mut out = BTreeMap::new();
    for (svc, vm) in app.vms.iter().filter(|(s, _)| q.service.as_deref().is_none_or(|w| w == s.as_str())) {
        let text = den.console(vm, q.bytes.unwrap_or(64 << 10).min(4 << 20)).await.unwrap_or_default();
        out.insert(svc.clone(), text);
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use den_api_types::apps::{AppState, AppSummary, Signed};

    fn record() -> AppRecord {
        let manifest = "application: {subdomain: hello, routes: ['/=http://web:80/']}\nservices: {web: {image: box}}";
        AppRecord {
            version: "1.2.3".into(),
            state: AppState::Running,
            signed: Signed::Verified(vec!["den-test".into()]),
            vms: [("web".to_string(), "hello-web".to_string())].into(),
            ..AppRecord::fixture("cloud.den.hello", manifest)
        }
    }

    /// The CLI reads the list's and the detail's records as `AppSummary`: every field it relies
    /// on is there with its meaning, and the detail's extra count comes through.
    #[test]
    fn app_records_read_as_summaries() {
        let listed: Vec<AppSummary> = serde_json::from_value(serde_json::to_value(vec![record()]).unwrap()).unwrap();
        let want = AppSummary {
            package: "cloud.den.hello".into(),
            version: "1.2.3".into(),
            subdomain: "hello".into(),
            state: AppState::Running,
            signed: Signed::Verified(vec!["den-test".into()]),
            traffic_unlogged: 0,
        };
        assert_eq!(listed, vec![want.clone()]);
        let detail = serde_json::to_value(AppDetail { app: record(), traffic_unlogged: 7 }).unwrap();
        assert_eq!(detail["vms"]["web"], "hello-web", "the detail is still the whole record: {detail}");
        let read: AppSummary = serde_json::from_value(detail).unwrap();
        assert_eq!(read, AppSummary { traffic_unlogged: 7, ..want });
    }
}
