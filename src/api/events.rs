//! `GET /ha/events`: membership (and on request store) changes as Server-Sent Events, for
//! browsers (`EventSource`), `curl -N` and `meshd monitor`.
//!
//! The stream opens with one `snapshot` event (the `/ha/status` document plus the
//! `last_event_seq` it reflects), then one `membership` event per change (`id` = its `seq`)
//! or `reaped` when a member is forgotten, with the no-gap contract of the gRPC watch: a
//! client that falls behind gets a `resync` event (a fresh snapshot) instead of a gap. With
//! `?stores=1`, every store change follows as a `store` event; if those fall behind, a
//! `store_resync` event says how many were missed (re-read the stores).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::{membership_watch, status, stores, ApiError, ApiState};
use crate::runtime::events::{reason_text, state_name};
use crate::runtime::replication::StoreEvent;
use crate::runtime::{EventFeed, SequencedEvent, Snapshot};
use crate::swim;

/// Events queued ahead of a slow client (per stream; each source waits beyond it).
const QUEUE: usize = 64;

/// Handler: 400 for a `stores` parameter that is not 1/0/true/false.
pub async fn get(
    State(state): State<ApiState>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let with_stores = wants_stores(query.as_deref())?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let feed = EventFeed::new(state.snapshots.clone(), state.events.clone());
    if with_stores {
        tokio::spawn(forward_stores(
            feed.clone(),
            state.store_events.subscribe(),
            tx.clone(),
        ));
    }
    tokio::spawn(membership_watch::forward(
        feed,
        tx,
        snapshot_event,
        membership_event,
    ));
    let stream = ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// Reads `stores` from the query string (other parameters are ignored).
fn wants_stores(query: Option<&str>) -> Result<bool, ApiError> {
    let Some(query) = query else {
        return Ok(false);
    };
    let value = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(key, _)| *key == "stores")
        .map(|(_, value)| value);
    match value {
        None | Some("0" | "false") => Ok(false),
        Some("1" | "true" | "") => Ok(true),
        Some(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "stores={:?}: use stores=1 to include store changes",
                other.chars().take(32).collect::<String>()
            ),
        )),
    }
}

/// The `snapshot` (or `resync`) event: the status document and the last event it holds.
fn snapshot_event(snapshot: &Snapshot, resync: bool) -> Event {
    let mut body = serde_json::to_value(status::status(snapshot, Instant::now()))
        .unwrap_or_else(|_| json!({}));
    if let Value::Object(fields) = &mut body {
        fields.insert("last_event_seq".into(), snapshot.last_event_seq.into());
    }
    Event::default()
        .event(if resync { "resync" } else { "snapshot" })
        .data(body.to_string())
}

/// A `membership` event (or `reaped` for a forgotten member).
fn membership_event(event: &SequencedEvent) -> Event {
    let (kind, body) = match &event.event {
        swim::Event::Changed {
            member,
            previous,
            reason,
        } => (
            "membership",
            json!({
                "seq": event.seq,
                "member": member.name,
                "state": state_name(member.state),
                "previous_state": previous.map(state_name),
                "incarnation": member.incarnation,
                "reason": reason_text(reason),
                "address": member.addr.to_string(),
                "region": member.meta.region,
                "zone": member.meta.zone,
                "tags": member.meta.tags,
                "local": member.is_local,
            }),
        ),
        swim::Event::Reaped { name } => ("reaped", json!({"seq": event.seq, "member": name})),
    };
    Event::default()
        .event(kind)
        .id(event.seq.to_string())
        .data(body.to_string())
}

/// Forwards every store change as a `store` event until the client or the driver goes.
async fn forward_stores(
    feed: EventFeed,
    mut changes: broadcast::Receiver<Arc<StoreEvent>>,
    out: mpsc::Sender<Event>,
) {
    let stopped = feed.stopped();
    tokio::pin!(stopped);
    loop {
        let received = tokio::select! {
            _ = out.closed() => return,
            _ = &mut stopped => return,
            received = changes.recv() => received,
        };
        let event = match received {
            Ok(e) => store_event(&e),
            Err(RecvError::Lagged(missed)) => Event::default()
                .event("store_resync")
                .data(json!({ "missed": missed }).to_string()),
            Err(RecvError::Closed) => return,
        };
        if out.send(event).await.is_err() {
            return;
        }
    }
}

/// A `store` event: the change with its store, kind and position in the store stream.
fn store_event(event: &StoreEvent) -> Event {
    let mut body = stores::change_body(&event.change);
    if let Value::Object(fields) = &mut body {
        fields.insert("seq".into(), event.seq.into());
        fields.insert("store".into(), event.change.store.clone().into());
        fields.insert("kind".into(), event.change.kind.as_str().into());
    }
    Event::default().event("store").data(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stores_parameter_is_1_or_0() {
        let cases = [
            (None, Some(false)),
            (Some("x=1"), Some(false)),
            (Some("stores=1"), Some(true)),
            (Some("a=b&stores=true"), Some(true)),
            (Some("stores"), Some(true)),
            (Some("stores=0"), Some(false)),
            (Some("stores=yes"), None),
        ];
        for (query, want) in cases {
            assert_eq!(wants_stores(query).ok(), want, "{query:?}");
        }
    }
}
