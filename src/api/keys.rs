//! Keyring commands: `GET /ha/keys` (which keys every live member holds), `POST
//! /ha/keys/install`, `/ha/keys/use` and `/ha/keys/remove` with `{"key": "<base64 or id>"}`.
//! Each answers with the report of how many members acknowledged and which did not. All need a
//! loopback caller or the token (see [`super::auth`]): listing asks every member.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::{body_of, ApiError, ApiState};
use crate::runtime::keys::KeyReport;
use crate::runtime::trust::{KeyChange, KeyRef};
use crate::runtime::Command;
use crate::seal::Key;

/// What the POSTs' body looks like, for the error that says it is not that.
const KEY_SHAPE: &str = "{\"key\": \"<key>\"}";

/// The body of the POSTs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyBody {
    /// A base64 key (`install` needs the key itself), or a key id for `use` and `remove`.
    key: String,
}

/// `GET /ha/keys`.
pub async fn list(State(state): State<ApiState>) -> Result<Json<KeyReport>, ApiError> {
    run(&state, None).await
}

/// `POST /ha/keys/install`.
pub async fn install(
    State(state): State<ApiState>,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> Result<Json<KeyReport>, ApiError> {
    let key = Key::from_base64(&body_of(&state, body, KEY_SHAPE)?.key).map_err(bad_request)?;
    run(&state, Some(KeyChange::Install(key))).await
}

/// `POST /ha/keys/use`.
pub async fn use_key(
    State(state): State<ApiState>,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> Result<Json<KeyReport>, ApiError> {
    let key = KeyRef::parse(&body_of(&state, body, KEY_SHAPE)?.key).map_err(bad_request)?;
    run(&state, Some(KeyChange::Use(key))).await
}

/// `POST /ha/keys/remove`.
pub async fn remove(
    State(state): State<ApiState>,
    body: Result<Json<KeyBody>, JsonRejection>,
) -> Result<Json<KeyReport>, ApiError> {
    let key = KeyRef::parse(&body_of(&state, body, KEY_SHAPE)?.key).map_err(bad_request)?;
    run(&state, Some(KeyChange::Remove(key))).await
}

fn bad_request(e: impl ToString) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, e.to_string())
}

/// Why a keyring command got no report.
#[derive(Debug)]
pub(super) enum Unanswered {
    /// The driver is gone (the node is shutting down).
    Gone,
    /// The node refused the command (the reason).
    Refused(String),
}

/// Sends a keyring command to the driver and waits for the report (HTTP and gRPC alike).
pub(super) async fn ask(
    commands: &mpsc::Sender<Command>,
    change: Option<KeyChange>,
) -> Result<KeyReport, Unanswered> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::Keys { change, reply })
        .await
        .map_err(|_| Unanswered::Gone)?;
    answer
        .await
        .map_err(|_| Unanswered::Gone)?
        .map_err(Unanswered::Refused)
}

async fn run(state: &ApiState, change: Option<KeyChange>) -> Result<Json<KeyReport>, ApiError> {
    match ask(&state.commands, change).await {
        Ok(report) => Ok(Json(report)),
        Err(Unanswered::Gone) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "node is shutting down",
        )),
        Err(Unanswered::Refused(reason)) => Err(ApiError::new(StatusCode::CONFLICT, reason)),
    }
}
