//! JSON errors and the fallbacks for unknown paths and wrong methods.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// An error answered as `{"error": message}` with `status`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status code (4xx/5xx).
    pub status: StatusCode,
    /// Human-readable reason.
    pub message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    /// An error with this status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: &self.message,
            }),
        )
            .into_response()
    }
}

/// Path parameters, like axum's `Path`, but a path that does not decode (e.g. a percent
/// escape that is not UTF-8) is answered with a JSON error like every other error, not
/// axum's plain text.
#[derive(Debug)]
pub struct PathOf<T>(pub T);

impl<S, T> FromRequestParts<S> for PathOf<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(PathOf(value)),
            Err(rejection) => Err(ApiError::new(
                rejection.status(),
                format!("bad path: {}", rejection.body_text()),
            )),
        }
    }
}

/// 404 for paths no route matches.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no route for {method} {}", uri.path()),
    )
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} not allowed for {}", uri.path()),
    )
}

/// The body, or a JSON error naming the shape expected.
pub fn body_of<T>(
    state: &super::ApiState,
    body: Result<Json<T>, axum::extract::rejection::JsonRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    body.map(|Json(body)| body).map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            state.server.count_body_too_large();
        }
        ApiError::new(
            rejection.status(),
            format!("expected {shape}: {}", rejection.body_text()),
        )
    })
}
