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
mod watch;

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::Router;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::server::NamedService;
use tonic::{Request, Response, Status};

use crate::runtime::driver::SetTagsRefused;
use crate::runtime::{Command, EventFeed};
use pb::membership_server::{Membership, MembershipServer};

/// Messages and tonic client/server code generated from `proto/client.proto`.
pub mod pb {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/meshd.client.v1.rs"));
}

/// The `Membership` service: what it reads, where it sends commands, and its policy.
#[derive(Clone, Debug)]
pub struct MembershipService {
    feed: EventFeed,
    commands: mpsc::Sender<Command>,
    allow_remote_shutdown: bool,
}

impl MembershipService {
    /// A service over the node's event feed and command channel. `allow_remote_shutdown` lets
    /// non-loopback callers use `Leave` (as `--allow-remote-shutdown` does for HTTP).
    pub fn new(
        feed: EventFeed,
        commands: mpsc::Sender<Command>,
        allow_remote_shutdown: bool,
    ) -> Self {
        MembershipService {
            feed,
            commands,
            allow_remote_shutdown,
        }
    }
}

/// Adds the gRPC service's routes to `router` (which keeps its own routes and fallbacks).
pub fn add_routes(router: Router, service: MembershipService) -> Router {
    type Server = MembershipServer<MembershipService>;
    router.route_service(
        &format!("/{}/{{*method}}", <Server as NamedService>::NAME),
        MembershipServer::new(service),
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

/// Whether a caller at `peer` may make this node leave; an unknown caller counts as remote.
fn leave_allowed(peer: Option<SocketAddr>, allow_remote: bool) -> bool {
    allow_remote || peer.is_some_and(|p| p.ip().is_loopback())
}

fn driver_gone() -> Status {
    Status::unavailable("node is shutting down")
}

#[tonic::async_trait]
impl Membership for MembershipService {
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
        let peer = peer_of(&request);
        if !leave_allowed(peer, self.allow_remote_shutdown) {
            tracing::warn!(?peer, "refused gRPC leave from a remote caller");
            return Err(Status::permission_denied(
                "leave is only accepted from loopback (start with --allow-remote-shutdown)",
            ));
        }
        tracing::info!(?peer, "leave requested over gRPC");
        self.commands
            .send(Command::Leave)
            .await
            .map_err(|_| driver_gone())?;
        Ok(Response::new(pb::LeaveResponse {}))
    }
}

#[cfg(test)]
mod tests;
