//! Request bodies: JSON with unknown fields refused, a size limit, and errors in the API's format
//! (the serde message names the bad field).

use super::error::ApiError;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

/// Largest request body accepted.
pub(super) const MAX_BODY: usize = 64 * 1024;

/// A JSON request body.
pub struct Body<T>(pub T);

#[axum::async_trait]
impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY).await.map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body larger than {MAX_BODY} bytes (or cut short)"),
            )
        })?;
        if bytes.is_empty() {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", "a JSON body is required"));
        }
        serde_json::from_slice(&bytes)
            .map(Body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", format!("request body: {e}")))
    }
}
