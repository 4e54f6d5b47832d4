//! The gRPC client API (`meshd.client.v1.Membership`, see `proto/client.proto`), served by
//! tonic inside the axum router, so it shares the HTTP port: axum speaks HTTP/1.1 and
//! cleartext HTTP/2, and requests under `/meshd.client.v1.Membership/` go to this service.
//!
//! Like the HTTP handlers, it reads published snapshots and the numbered event feed, and sends
//! commands to the driver; it never touches the core.
//!
//! A watcher in Rust (needs tonic's `channel` feature for the connection):
//!
//! ```no_run
//! # async fn watch() -> Result<(), Box<dyn std::error::Error>> {
//! use meshd::api::grpc::pb::{membership_client::MembershipClient, watch_membership_response::Event};
//! use meshd::api::grpc::pb::WatchMembershipRequest;
//!
//! let channel = tonic::transport::Endpoint::from_static("http://127.0.0.11:39528").connect().await?;
//! let mut client = MembershipClient::new(channel);
//! let mut stream = client.watch_membership(WatchMembershipRequest {}).await?.into_inner();
//! while let Some(message) = stream.message().await? {
//!     match message.event {
//!         Some(Event::Snapshot(s)) => println!("{} members as of event {}", s.members.len(), s.last_event_seq),
//!         Some(Event::Change(c)) => {
//!             let member = c.member.clone().unwrap_or_default();
//!             println!("#{} {}: {:?} -> {:?} ({})", c.seq, member.name, c.previous_state(), member.state(), c.reason);
//!         }
//!         Some(Event::Reaped(r)) => println!("#{} {} forgotten", r.seq, r.name),
//!         None => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod convert;
mod stores;
mod watch;

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::Router;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use super::auth::{Access, Denied};
use super::keys::{ask, Unanswered};
use crate::runtime::driver::SetTagsRefused;
use crate::runtime::replication::StoreEvent;
use crate::runtime::trust::{KeyChange, KeyRef};
use crate::runtime::{Command, EventFeed};
use crate::seal::Key;
use pb::membership_server::{Membership, MembershipServer};
use pb::stores_server::StoresServer;

/// Messages and tonic client/server code generated from `proto/client.proto`.
pub mod pb {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/meshd.client.v1.rs"));
}

/// The `Membership` service (and through [`add_routes`] the `Stores` service): what it reads,
/// where it sends commands, and its policy.
#[derive(Clone, Debug)]
pub struct MembershipService {
    feed: EventFeed,
    commands: mpsc::Sender<Command>,
    store_events: broadcast::Sender<Arc<StoreEvent>>,
    access: Access,
}

impl MembershipService {
    /// A service over the node's event feeds and command channel; `access` decides who may
    /// make the calls that change the node (as for HTTP).
    pub fn new(
        feed: EventFeed,
        store_events: broadcast::Sender<Arc<StoreEvent>>,
        commands: mpsc::Sender<Command>,
        access: Access,
    ) -> Self {
        MembershipService {
            feed,
            commands,
            store_events,
            access,
        }
    }

    /// Runs a keyring command for a gRPC caller.
    async fn keys(&self, change: Option<KeyChange>) -> Result<Response<pb::KeyReport>, Status> {
        match ask(&self.commands, change).await {
            Ok(report) => Ok(Response::new(convert::key_report(&report))),
            Err(Unanswered::Gone) => Err(driver_gone()),
            Err(Unanswered::Refused(reason)) => Err(Status::failed_precondition(reason)),
        }
    }
}

/// Refuses a call that changes the node unless the access policy allows its caller.
fn authorize<T>(access: &Access, request: &Request<T>) -> Result<(), Status> {
    let authorization = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    let peer = peer_of(request);
    access.check(peer, authorization).map_err(|denied| {
        tracing::warn!(?peer, "refused a mutating gRPC call");
        match denied {
            Denied::RemoteWithoutToken => Status::permission_denied(denied.message()),
            Denied::BadToken => Status::unauthenticated(denied.message()),
        }
    })
}

/// Adds the gRPC services' routes to `router` (which keeps its own routes and fallbacks).
pub fn add_routes(router: Router, service: MembershipService) -> Router {
    type Server = MembershipServer<MembershipService>;
    type Store = StoresServer<stores::StoresService>;
    let stores = stores::StoresService {
        commands: service.commands.clone(),
        events: service.store_events.clone(),
        snapshots: service.feed.snapshot_receiver(),
        access: service.access.clone(),
    };
    let server = MembershipServer::new(service).max_decoding_message_size(super::MAX_BODY_BYTES);
    let store = StoresServer::new(stores).max_decoding_message_size(super::MAX_BODY_BYTES);
    router
        .route_service(
            &format!("/{}/{{*method}}", <Server as NamedService>::NAME),
            server,
        )
        .route_service(
            &format!("/{}/{{*method}}", <Store as NamedService>::NAME),
            store,
        )
}

/// The caller's address, from axum's `ConnectInfo` (tonic's `remote_addr()` is only set by
/// tonic's own server, which we do not use).
fn peer_of<T>(request: &Request<T>) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr)
}

fn driver_gone() -> Status {
    Status::unavailable("node is shutting down")
}

#[tonic::async_trait]
impl Membership for MembershipService {
    async fn get_leader(
        &self,
        _request: Request<pb::GetLeaderRequest>,
    ) -> Result<Response<pb::GetLeaderResponse>, Status> {
        let view = super::coordination::leader(&self.feed.snapshot(), Instant::now());
        Ok(Response::new(convert::leader(view)))
    }

    async fn get_owner(
        &self,
        request: Request<pb::GetOwnerRequest>,
    ) -> Result<Response<pb::GetOwnerResponse>, Status> {
        let key = request.into_inner().key;
        let owner = super::coordination::owner(&self.feed.snapshot(), key)
            .map_err(|e| Status::invalid_argument(e.message))?;
        Ok(Response::new(convert::owner(owner)))
    }

    async fn list_members(
        &self,
        _request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let snapshot = self.feed.snapshot();
        Ok(Response::new(convert::list(&snapshot, Instant::now())))
    }

    type WatchMembershipStream = ReceiverStream<watch::WatchItem>;

    async fn watch_membership(
        &self,
        _request: Request<pb::WatchMembershipRequest>,
    ) -> Result<Response<Self::WatchMembershipStream>, Status> {
        let (tx, rx) = mpsc::channel(watch::WATCH_QUEUE);
        tokio::spawn(watch::forward(self.feed.clone(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn set_tags(
        &self,
        request: Request<pb::SetTagsRequest>,
    ) -> Result<Response<pb::SetTagsResponse>, Status> {
        authorize(&self.access, &request)?;
        let tags = request.into_inner().tags;
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::SetTags { tags, reply })
            .await
            .map_err(|_| driver_gone())?;
        match answer.await.map_err(|_| driver_gone())? {
            Ok(incarnation) => {
                tracing::info!(incarnation, "tags replaced over gRPC");
                Ok(Response::new(pb::SetTagsResponse { incarnation }))
            }
            Err(SetTagsRefused::Leaving) => Err(Status::failed_precondition(
                "node is leaving; its tags can no longer change",
            )),
            Err(SetTagsRefused::Invalid(err)) => Err(Status::invalid_argument(err.to_string())),
        }
    }

    async fn leave(
        &self,
        request: Request<pb::LeaveRequest>,
    ) -> Result<Response<pb::LeaveResponse>, Status> {
        authorize(&self.access, &request)?;
        tracing::info!(peer = ?peer_of(&request), "leave requested over gRPC");
        self.commands
            .send(Command::Leave)
            .await
            .map_err(|_| driver_gone())?;
        Ok(Response::new(pb::LeaveResponse {}))
    }

    async fn list_keys(
        &self,
        request: Request<pb::ListKeysRequest>,
    ) -> Result<Response<pb::KeyReport>, Status> {
        authorize(&self.access, &request)?;
        self.keys(None).await
    }

    async fn install_key(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyReport>, Status> {
        authorize(&self.access, &request)?;
        let key = Key::from_base64(&request.into_inner().key)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.keys(Some(KeyChange::Install(key))).await
    }

    async fn use_key(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyReport>, Status> {
        authorize(&self.access, &request)?;
        let key = KeyRef::parse(&request.into_inner().key).map_err(Status::invalid_argument)?;
        self.keys(Some(KeyChange::Use(key))).await
    }

    async fn remove_key(
        &self,
        request: Request<pb::KeyRequest>,
    ) -> Result<Response<pb::KeyReport>, Status> {
        authorize(&self.access, &request)?;
        let key = KeyRef::parse(&request.into_inner().key).map_err(Status::invalid_argument)?;
        self.keys(Some(KeyChange::Remove(key))).await
    }
}

#[cfg(test)]
mod tests;
