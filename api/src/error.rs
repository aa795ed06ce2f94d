//! API errors: JSON `{code, message, field?}` with a stable code and the right HTTP status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use den_store::StoreError;
use den_vms::VmError;

/// An error reply: its status, and the body clients read (`den_api_types::ErrorBody`, the one
/// definition of its JSON).
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
    /// The request field at fault.
    pub field: Option<&'static str>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into(), field: None }
    }

    /// A request field is invalid (400, `invalid_field`).
    pub fn invalid_field(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { field: Some(field), ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_field", message) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = den_api_types::ErrorBody {
            code: self.code.to_string(),
            message: self.message,
            field: self.field.map(str::to_string),
        };
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<VmError> for ApiError {
    fn from(e: VmError) -> ApiError {
        match e {
            VmError::Invalid(f) => ApiError::invalid_field(f.field, format!("{}: {}", f.field, f.message)),
            VmError::Store(StoreError::NotFound { kind, name }) => {
                let hint = match kind {
                    "network" => "`den net ls` lists networks",
                    "task" => "`den task ls` lists tasks",
                    _ => "`den vm ls` lists VMs",
                };
                ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("{kind} `{name}` not found; {hint}"))
            }
            VmError::Store(StoreError::Exists { kind, name }) => ApiError {
                status: StatusCode::CONFLICT,
                code: "exists",
                message: format!("{kind} `{name}` already exists; pick another name"),
                field: Some("name"),
            },
            VmError::Conflict { .. } | VmError::NotCancellable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "wrong_state", e.to_string())
            }
            VmError::Store(_) | VmError::Images(_) | VmError::Keeper(_) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
            VmError::Engine(_) => ApiError::new(StatusCode::BAD_GATEWAY, "engine", e.to_string()),
            VmError::Net(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "network", e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::from(VmError::Store(e))
    }
}

impl From<den_lpk_host::AppError> for ApiError {
    fn from(e: den_lpk_host::AppError) -> ApiError {
        use den_lpk_host::AppError as A;
        match &e {
            A::Package(p) => ApiError::new(StatusCode::BAD_REQUEST, p.code(), e.to_string()),
            A::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            A::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            A::Store(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
            A::Failed(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
        }
    }
}

/// The stable code for an error status the framework (not a handler) answered with.
fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "no_route",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_json",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Turns every error answer that is not already Den's JSON error (axum's own rejections of a bad
/// query string or path, a wrong method) into one, keeping its status and saying what was wrong.
pub(super) async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = match (status, text.is_empty()) {
        (StatusCode::METHOD_NOT_ALLOWED, _) => {
            let allow = parts.headers.get(axum::http::header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or("");
            format!("this path does not take that method; it takes: {allow}")
        }
        (_, false) => text,
        (_, true) => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = ApiError::new(status, code_for(status), message).into_response();
    if let Some(allow) = parts.headers.get(axum::http::header::ALLOW) {
        out.headers_mut().insert(axum::http::header::ALLOW, allow.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Q {
        #[allow(dead_code)]
        n: u32,
    }

    #[tokio::test]
    async fn framework_rejections_become_json_errors() {
        let app = axum::Router::new()
            .route("/x", get(|_: axum::extract::Query<Q>| async { "ok" }))
            .layer(axum::middleware::from_fn(json_errors));
        let call = |uri: &str, method: &str| {
            let req = axum::http::Request::builder().uri(uri).method(method).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(req)
        };
        for (uri, method, status, code) in [
            ("/x?n=abc", "GET", 400, "bad_request"),
            ("/x", "GET", 400, "bad_request"),
            ("/x?n=1", "POST", 405, "method_not_allowed"),
        ] {
            let resp = call(uri, method).await.unwrap();
            assert_eq!(resp.status().as_u16(), status, "{method} {uri}");
            assert_eq!(resp.headers()["content-type"], "application/json");
            let body = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["code"], code, "{v}");
            assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{v}");
        }
        assert_eq!(call("/x?n=1", "GET").await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn errors_read_as_the_shared_error_body() {
        for (e, field) in [
            (ApiError::new(StatusCode::NOT_FOUND, "not_found", "VM `x` not found"), None),
            (ApiError::invalid_field("name", "name: too long"), Some("name")),
        ] {
            let (status, code, message) = (e.status, e.code, e.message.clone());
            let resp = e.into_response();
            assert_eq!(resp.status(), status);
            let bytes = axum::body::to_bytes(resp.into_body(), 4096).await.unwrap();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(v.get("field").is_some(), field.is_some(), "no `field` key unless one is at fault: {v}");
            let body: den_api_types::ErrorBody = serde_json::from_value(v).unwrap();
            assert_eq!(body.code, code);
            assert_eq!(body.message, message);
            assert_eq!(body.field.as_deref(), field);
        }
    }
}
