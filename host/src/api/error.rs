//! API errors: JSON `{code, message, field?}` with a stable code and the right HTTP status.

use crate::store::StoreError;
use crate::vms::VmError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error reply.
#[derive(Debug, Serialize)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
    /// The request field at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
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
        (self.status, axum::Json(&self)).into_response()
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
            VmError::Store(_) | VmError::Images(_) => {
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

impl From<crate::apps::AppError> for ApiError {
    fn from(e: crate::apps::AppError) -> ApiError {
        use crate::apps::AppError as A;
        match &e {
            A::Package(p) => ApiError::new(StatusCode::BAD_REQUEST, p.code(), e.to_string()),
            A::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            A::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            A::Store(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
            A::Failed(_) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "failed", e.to_string()),
        }
    }
}
