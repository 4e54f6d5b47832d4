//! The replicated stores over HTTP: `GET /ha/stores` (every store), `GET
//! /ha/stores/{store}` (its entries), `GET|PUT|DELETE /ha/stores/{store}/{key}`, `POST
//! /ha/stores/{store}/{key}/incr|add|remove`, `GET /ha/stores/{store}/watch` (Server-Sent
//! Events), and SMG's `GET /ha/workers` and `GET /ha/policies`. Writes are mutations: loopback
//! or the token (see [`super::auth`]).

use std::convert::Infallible;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json_;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::store_watch::{self, WatchItem};
use super::{body_of, ApiError, ApiState, PathOf};
use crate::runtime::replication::{StoreAnswer, StoreQuery, StoreWriteError};
use crate::runtime::{vitals, Command};
use crate::store::limits::StoreLimitError;
use crate::store::{Change, EntryView, Kind, Op, StoreSummary, Value, WriteError, Written};

/// `GET /ha/stores`.
#[derive(Debug, Serialize)]
pub struct StoresBody {
    /// Every store, by name.
    pub stores: Vec<StoreItem>,
}

/// One store in [`StoresBody`].
#[derive(Debug, Serialize)]
pub struct StoreItem {
    name: String,
    kind: &'static str,
    keys: usize,
    bytes: usize,
}

/// One key: `{"key", "value", "version"}`.
#[derive(Debug, Serialize)]
pub struct EntryBody {
    key: String,
    value: Json_,
    version: String,
}

/// `GET /ha/stores/{store}`.
#[derive(Debug, Serialize)]
pub struct EntriesBody {
    store: String,
    kind: &'static str,
    entries: Vec<EntryBody>,
}

/// `PUT` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    value: Json_,
}

/// `POST …/incr` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncrBody {
    #[serde(deserialize_with = "whole_number")]
    by: i64,
}

/// An i64 written as an integer or as a float with no fraction (`5.0`): JSON does not tell the
/// two apart, and neither does the OpenAPI schema's `integer`.
fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let n = serde_json::Number::deserialize(d)?;
    if let Some(i) = n.as_i64() {
        return Ok(i);
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i64::MIN as f64 && f < i64::MAX as f64 => Ok(f as i64),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number between -2^63 and 2^63-1"
        ))),
    }
}

/// `POST …/add` and `…/remove` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberBody {
    member: String,
}

/// `GET /ha/stores`.
pub async fn list(State(state): State<ApiState>) -> Result<Json<StoresBody>, ApiError> {
    let StoreAnswer::List(stores) = read(&state, StoreQuery::List).await? else {
        return Err(unavailable());
    };
    Ok(Json(StoresBody {
        stores: stores.into_iter().map(store_item).collect(),
    }))
}

/// `GET /ha/stores/{store}`.
pub async fn entries(
    State(state): State<ApiState>,
    PathOf(store): PathOf<String>,
) -> Result<Json<EntriesBody>, ApiError> {
    let (kind, entries) = store_entries(&state, &store).await?;
    Ok(Json(EntriesBody {
        store,
        kind: kind.as_str(),
        entries: entries.into_iter().map(entry_body).collect(),
    }))
}

/// `GET /ha/stores/{store}/{key}`.
pub async fn get(
    State(state): State<ApiState>,
    PathOf((store, key)): PathOf<(String, String)>,
) -> Result<Json<EntryBody>, ApiError> {
    match read(&state, StoreQuery::Get(store.clone(), key.clone())).await? {
        StoreAnswer::Get(Some(view)) => Ok(Json(entry_body(view))),
        _ => Err(not_found(&store, &key)),
    }
}

/// `PUT /ha/stores/{store}/{key}` with `{"value": …}` (an `lww` store).
pub async fn put(
    State(state): State<ApiState>,
    PathOf((store, key)): PathOf<(String, String)>,
    body: Result<Json<PutBody>, JsonRejection>,
) -> Result<Json<EntryBody>, ApiError> {
    let body = body_of(&state, body, "{\"value\": <any JSON>}")?;
    let json = serde_json::to_vec(&body.value).map_err(|e| bad_request(e.to_string()))?;
    write(&state, store, key, Op::Put(json)).await
}

/// `POST /ha/stores/{store}/{key}/incr` with `{"by": n}` (a `counter` store).
pub async fn incr(
    State(state): State<ApiState>,
    PathOf((store, key)): PathOf<(String, String)>,
    body: Result<Json<IncrBody>, JsonRejection>,
) -> Result<Json<EntryBody>, ApiError> {
    let body = body_of(&state, body, "{\"by\": <integer>}")?;
    write(&state, store, key, Op::Incr(body.by)).await
}

/// `POST /ha/stores/{store}/{key}/add` with `{"member": "…"}` (a `set` store).
pub async fn add(
    State(state): State<ApiState>,
    PathOf((store, key)): PathOf<(String, String)>,
    body: Result<Json<MemberBody>, JsonRejection>,
) -> Result<Json<EntryBody>, ApiError> {
    let body = body_of(&state, body, "{\"member\": \"<string>\"}")?;
    write(&state, store, key, Op::Add(body.member)).await
}

/// `POST /ha/stores/{store}/{key}/remove` with `{"member": "…"}` (a `set` store).
pub async fn remove(
    State(state): State<ApiState>,
    PathOf((store, key)): PathOf<(String, String)>,
    body: Result<Json<MemberBody>, JsonRejection>,
) -> Result<Json<EntryBody>, ApiError> {
    let body = body_of(&state, body, "{\"member\": \"<string>\"}")?;
    write(&state, store, key, Op::Remove(body.member)).await
}

/// `DELETE /ha/stores/{store}/{key}`: answers `{"key", "deleted": true, "version"}`.
pub async fn delete(
    State(state): State<ApiState>,
    PathOf((store, key)): PathOf<(String, String)>,
) -> Result<Json<Json_>, ApiError> {
    let view = apply(&state, store, key, Op::Delete).await?;
    Ok(Json(serde_json::json!({
        "key": view.key,
        "deleted": true,
        "version": view.version.to_string(),
    })))
}

/// `GET /ha/stores/{store}/watch`: Server-Sent Events, first a `snapshot` event (the store's
/// entries, `{"store", "kind", "entries", "resync"}`), then one `change` event per change of a
/// key (`{"key", "value", "version", "deleted", "local"}`), with no gap: a watcher that falls
/// behind gets a new `snapshot` with `"resync": true`.
pub async fn watch(
    State(state): State<ApiState>,
    PathOf(store): PathOf<String>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(store_watch::WATCH_QUEUE);
    tokio::spawn(store_watch::forward(
        state.commands.clone(),
        state.store_events.clone(),
        state.snapshots.clone(),
        store,
        tx,
    ));
    let stream = ReceiverStream::new(rx).map(|item| Ok(sse_event(item)));
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn sse_event(item: WatchItem) -> Event {
    match item {
        WatchItem::Snapshot {
            store,
            kind,
            entries,
            resync,
        } => {
            let body = serde_json::json!({
                "store": store,
                "kind": kind.map(Kind::as_str),
                "entries": entries.into_iter().map(entry_body).collect::<Vec<_>>(),
                "resync": resync,
            });
            Event::default().event("snapshot").data(body.to_string())
        }
        WatchItem::Change { seq, change } => Event::default()
            .event("change")
            .id(seq.to_string())
            .data(change_body(&change).to_string()),
    }
}

/// One change of a key as JSON: `{"key", "value", "version", "deleted", "local"}`.
pub fn change_body(change: &Change) -> Json_ {
    serde_json::json!({
        "key": change.key,
        "value": change.value.as_ref().map_or(Json_::Null, json_value),
        "version": change.version.as_ref().map(ToString::to_string),
        "deleted": change.value.is_none(),
        "local": change.local,
    })
}

/// SMG's `GET /ha/workers`: every worker in the store `workers`, each its JSON object with
/// `worker_id` (the key, unless the object names one) and `version` (ms of its last write).
pub async fn smg_workers(State(state): State<ApiState>) -> Result<Json<Vec<Json_>>, ApiError> {
    smg_list(&state, "workers", "worker_id").await
}

/// SMG's `GET /ha/policies`: every policy in the store `policies`, keyed by `model_id`.
pub async fn smg_policies(State(state): State<ApiState>) -> Result<Json<Vec<Json_>>, ApiError> {
    smg_list(&state, "policies", "model_id").await
}

async fn smg_list(
    state: &ApiState,
    store: &str,
    id_field: &str,
) -> Result<Json<Vec<Json_>>, ApiError> {
    let entries = match store_entries(state, store).await {
        Ok((_, entries)) => entries,
        Err(e) if e.status == StatusCode::NOT_FOUND => Vec::new(),
        Err(e) => return Err(e),
    };
    let list = entries
        .into_iter()
        .map(|view| {
            let version = view.version.wall_ms;
            let mut object = match json_value(&view.value) {
                Json_::Object(map) => map,
                other => serde_json::Map::from_iter([("value".to_string(), other)]),
            };
            object
                .entry(id_field.to_string())
                .or_insert_with(|| Json_::String(view.key.clone()));
            object.insert("version".into(), Json_::from(version));
            Json_::Object(object)
        })
        .collect();
    Ok(Json(list))
}

/// The JSON form of a value: the stored JSON, the count, or the sorted members.
pub fn json_value(value: &Value) -> Json_ {
    match value {
        Value::Json(text) => serde_json::from_slice(text).unwrap_or(Json_::Null),
        Value::Count(n) => Json_::from(*n),
        Value::Members(members) => Json_::from(members.clone()),
    }
}

fn entry_body(view: EntryView) -> EntryBody {
    EntryBody {
        value: json_value(&view.value),
        version: view.version.to_string(),
        key: view.key,
    }
}

fn store_item(s: StoreSummary) -> StoreItem {
    StoreItem {
        name: s.name,
        kind: s.kind.as_str(),
        keys: s.keys,
        bytes: s.bytes,
    }
}

async fn store_entries(state: &ApiState, store: &str) -> Result<(Kind, Vec<EntryView>), ApiError> {
    match read(state, StoreQuery::Entries(store.to_owned())).await? {
        StoreAnswer::Entries {
            entries: Some(found),
            ..
        } => Ok(found),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no store {store:?}"),
        )),
    }
}

async fn write(
    state: &ApiState,
    store: String,
    key: String,
    op: Op,
) -> Result<Json<EntryBody>, ApiError> {
    let written = apply(state, store, key, op).await?;
    Ok(Json(EntryBody {
        value: written.value.as_ref().map_or(Json_::Null, json_value),
        version: written.version.to_string(),
        key: written.key,
    }))
}

/// Sends a write to the driver and maps its refusal to a status: 409 another kind, 404
/// nothing to delete or remove, 413 over a size bound, 400 malformed, 500 not durable.
async fn apply(state: &ApiState, store: String, key: String, op: Op) -> Result<Written, ApiError> {
    let (s, k) = (store.clone(), key.clone());
    match send_write(&state.commands, store, key, op).await {
        Ok(view) => Ok(view),
        Err(None) => Err(unavailable()),
        Err(Some(StoreWriteError::Refused(WriteError::NotFound))) => Err(not_found(&s, &k)),
        Err(Some(StoreWriteError::Refused(
            e @ (WriteError::WrongKind { .. } | WriteError::Limit(StoreLimitError::Reserved(_))),
        ))) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(Some(StoreWriteError::Refused(WriteError::Limit(e)))) => {
            let status = if e.is_size() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            Err(ApiError::new(status, e.to_string()))
        }
        Err(Some(StoreWriteError::NotDurable(e))) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("applied but not written to the data directory: {e}"),
        )),
    }
}

/// Sends a write to the driver; `Err(None)` when the driver is gone.
pub async fn send_write(
    commands: &mpsc::Sender<Command>,
    store: String,
    key: String,
    op: Op,
) -> Result<Written, Option<StoreWriteError>> {
    // Each node's vitals are its own to write: through the API anyone could forge another's.
    if store == vitals::STORE {
        let reserved = StoreLimitError::Reserved(vitals::STORE);
        return Err(Some(StoreWriteError::Refused(WriteError::Limit(reserved))));
    }
    let (reply, answer) = oneshot::channel();
    let command = Command::StoreWrite {
        store,
        key,
        op,
        reply,
    };
    commands.send(command).await.map_err(|_| None)?;
    answer.await.map_err(|_| None)?.map_err(Some)
}

/// Sends a read to the driver; `None` when the driver is gone.
pub async fn send_read(commands: &mpsc::Sender<Command>, query: StoreQuery) -> Option<StoreAnswer> {
    let (reply, answer) = oneshot::channel();
    commands
        .send(Command::StoreRead { query, reply })
        .await
        .ok()?;
    answer.await.ok()
}

async fn read(state: &ApiState, query: StoreQuery) -> Result<StoreAnswer, ApiError> {
    send_read(&state.commands, query)
        .await
        .ok_or_else(unavailable)
}

fn not_found(store: &str, key: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no key {key:?} in store {store:?}"),
    )
}

fn bad_request(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, message)
}

fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "node is shutting down")
}
