//! The `meshd.client.v1.Stores` service: the replicated stores over gRPC, with the semantics
//! of the HTTP routes under `/ha/stores` (both send the same commands to the driver, and
//! `WatchStore` follows the same watcher as the SSE route).

use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use super::pb;
use super::pb::stores_server::Stores;
use crate::api::auth::Access;
use crate::api::store_watch::{self, WatchItem};
use crate::api::stores::{json_value, send_read, send_write};
use crate::runtime::replication::{StoreAnswer, StoreEvent, StoreQuery, StoreWriteError};
use crate::runtime::{Command, Snapshot};
use crate::store::{EntryView, Op, WriteError};

/// The `Stores` service: the driver's command channel, the store change stream and policy.
#[derive(Clone, Debug)]
pub struct StoresService {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) events: broadcast::Sender<Arc<StoreEvent>>,
    pub(super) snapshots: watch::Receiver<Snapshot>,
    pub(super) access: Access,
}

/// What the `WatchStore` response stream yields.
type WatchStoreItem = Result<pb::WatchStoreResponse, Status>;

#[tonic::async_trait]
impl Stores for StoresService {
    async fn list_stores(
        &self,
        _request: Request<pb::ListStoresRequest>,
    ) -> Result<Response<pb::ListStoresResponse>, Status> {
        let Some(StoreAnswer::List(stores)) = send_read(&self.commands, StoreQuery::List).await
        else {
            return Err(super::driver_gone());
        };
        let stores = stores
            .into_iter()
            .map(|s| pb::StoreInfo {
                name: s.name,
                kind: s.kind.as_str().to_owned(),
                keys: s.keys as u64,
                bytes: s.bytes as u64,
            })
            .collect();
        Ok(Response::new(pb::ListStoresResponse { stores }))
    }

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<pb::GetEntriesResponse>, Status> {
        let store = request.into_inner().store;
        let query = StoreQuery::Entries(store.clone());
        match send_read(&self.commands, query).await {
            Some(StoreAnswer::Entries {
                entries: Some((kind, entries)),
                ..
            }) => Ok(Response::new(pb::GetEntriesResponse {
                store,
                kind: kind.as_str().to_owned(),
                entries: entries.into_iter().map(entry).collect(),
            })),
            Some(_) => Err(Status::not_found(format!("no store {store:?}"))),
            None => Err(super::driver_gone()),
        }
    }

    async fn get_entry(
        &self,
        request: Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::StoreEntry>, Status> {
        let pb::GetEntryRequest { store, key } = request.into_inner();
        let query = StoreQuery::Get(store.clone(), key.clone());
        match send_read(&self.commands, query).await {
            Some(StoreAnswer::Get(Some(view))) => Ok(Response::new(entry(view))),
            Some(_) => Err(Status::not_found(format!(
                "no key {key:?} in store {store:?}"
            ))),
            None => Err(super::driver_gone()),
        }
    }

    async fn write(
        &self,
        request: Request<pb::WriteRequest>,
    ) -> Result<Response<pb::StoreEntry>, Status> {
        super::authorize(&self.access, &request)?;
        let pb::WriteRequest { store, key, op } = request.into_inner();
        let op = match op {
            Some(pb::write_request::Op::PutJson(json)) => Op::Put(json.into_bytes()),
            Some(pb::write_request::Op::Incr(by)) => Op::Incr(by),
            Some(pb::write_request::Op::Add(member)) => Op::Add(member),
            Some(pb::write_request::Op::Remove(member)) => Op::Remove(member),
            Some(pb::write_request::Op::Delete(_)) => Op::Delete,
            None => return Err(Status::invalid_argument("no operation given")),
        };
        match send_write(&self.commands, store, key, op).await {
            Ok(written) => Ok(Response::new(pb::StoreEntry {
                value_json: written
                    .value
                    .as_ref()
                    .map_or("null".into(), |v| json_value(v).to_string()),
                deleted: written.value.is_none(),
                version: written.version.to_string(),
                key: written.key,
            })),
            Err(None) => Err(super::driver_gone()),
            Err(Some(e)) => Err(write_status(e)),
        }
    }

    type WatchStoreStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = WatchStoreItem> + Send + 'static>>;

    async fn watch_store(
        &self,
        request: Request<pb::WatchStoreRequest>,
    ) -> Result<Response<Self::WatchStoreStream>, Status> {
        let store = request.into_inner().store;
        let (tx, rx) = mpsc::channel(store_watch::WATCH_QUEUE);
        tokio::spawn(store_watch::forward(
            self.commands.clone(),
            self.events.clone(),
            self.snapshots.clone(),
            store,
            tx,
        ));
        let stream = ReceiverStream::new(rx).map(|item| Ok(watch_message(item)));
        Ok(Response::new(Box::pin(stream)))
    }
}

fn watch_message(item: WatchItem) -> pb::WatchStoreResponse {
    let event = match item {
        WatchItem::Snapshot {
            store,
            kind,
            entries,
            resync,
        } => pb::watch_store_response::Event::Snapshot(pb::StoreSnapshot {
            store,
            kind: kind.map_or("", |k| k.as_str()).to_owned(),
            entries: entries.into_iter().map(entry).collect(),
            resync,
        }),
        WatchItem::Change { seq, change } => {
            let value = change.value.as_ref().map(json_value);
            pb::watch_store_response::Event::Change(pb::StoreChange {
                seq,
                entry: Some(pb::StoreEntry {
                    key: change.key,
                    value_json: value.as_ref().map_or("null".into(), ToString::to_string),
                    version: change.version.map(|v| v.to_string()).unwrap_or_default(),
                    deleted: value.is_none(),
                }),
                local: change.local,
            })
        }
    };
    pb::WatchStoreResponse { event: Some(event) }
}

fn entry(view: EntryView) -> pb::StoreEntry {
    pb::StoreEntry {
        value_json: json_value(&view.value).to_string(),
        version: view.version.to_string(),
        key: view.key,
        deleted: false,
    }
}

/// The status of a refused write, as HTTP's codes map to gRPC's.
fn write_status(e: StoreWriteError) -> Status {
    match e {
        StoreWriteError::Refused(WriteError::NotFound) => Status::not_found("no such key"),
        StoreWriteError::Refused(e @ WriteError::WrongKind { .. }) => {
            Status::failed_precondition(e.to_string())
        }
        StoreWriteError::Refused(WriteError::Limit(e)) if e.is_size() => {
            Status::resource_exhausted(e.to_string())
        }
        StoreWriteError::Refused(WriteError::Limit(e)) => Status::invalid_argument(e.to_string()),
        StoreWriteError::NotDurable(e) => Status::internal(format!(
            "applied but not written to the data directory: {e}"
        )),
    }
}
