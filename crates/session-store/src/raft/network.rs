//! openraft's network over the raft wire: one multiplexed connection per
//! peer, opened on first use and again after it breaks, and checked to
//! reach the node it is meant for.

use std::collections::HashMap;
use std::error::Error;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::SessionRaft;
use super::mux::{CallError, Caller};
use super::rpc::{Request, Response};
use super::wire::{WireConfig, WireError};

type NodeId = u64;
type RpcError<E> = RPCError<NodeId, BasicNode, E>;

/// The open connection to each peer, by id and address.
type Callers = Arc<Mutex<HashMap<(NodeId, String), Caller>>>;

/// Makes a [`Peer`] for each node raft talks to. Peers of the same node
/// share one connection: openraft asks for a new client for every
/// leadership check (each linearizable read), which must not cost a
/// handshake.
pub(crate) struct Network {
    wire: Arc<WireConfig>,
    callers: Callers,
}

impl Network {
    pub(crate) fn new(wire: Arc<WireConfig>) -> Self {
        Self {
            wire,
            callers: Callers::default(),
        }
    }
}

impl RaftNetworkFactory<SessionRaft> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            wire: Arc::clone(&self.wire),
            callers: Arc::clone(&self.callers),
        }
    }
}

/// The connection to one peer.
pub(crate) struct Peer {
    target: NodeId,
    addr: String,
    wire: Arc<WireConfig>,
    callers: Callers,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// The node is down or unreachable: trying again later may work.
    #[error("{0}")]
    Down(String),
    /// The node refused us (another secret, another protocol, another
    /// node than expected): trying again will not help.
    #[error("{0}")]
    Refused(String),
}

/// Connects to the node at `addr` (a socket address or a host name with
/// a port), expecting it to be node `target` when given.
pub(crate) async fn connect(
    addr: &str,
    wire: &WireConfig,
    target: Option<NodeId>,
) -> Result<Caller, ConnectError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| ConnectError::Down(format!("cannot resolve {addr}: {e}")))?
        .collect();
    let mut last = ConnectError::Down(format!("{addr} resolves to no address"));
    for socket in resolved {
        last = match Caller::connect(socket, wire).await {
            Ok(caller) => match target {
                Some(id) if caller.peer_id() != id => ConnectError::Refused(format!(
                    "{addr} is node {}, not node {id}",
                    caller.peer_id()
                )),
                _ => return Ok(caller),
            },
            Err(e @ (WireError::WrongSecret | WireError::NotAPeer(_))) => {
                ConnectError::Refused(format!("{addr}: {e}"))
            }
            Err(e) => ConnectError::Down(format!("{addr}: {e}")),
        };
    }
    Err(last)
}

impl Peer {
    async fn call<E: Error>(
        &mut self,
        request: Request,
        option: &RPCOption,
    ) -> Result<Response, RpcError<E>> {
        let key = (self.target, self.addr.clone());
        let open = self
            .callers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|c| c.is_alive())
            .cloned();
        let caller = match open {
            Some(caller) => caller,
            None => {
                let caller = connect(&self.addr, &self.wire, Some(self.target))
                    .await
                    .map_err(|e| Unreachable::new(&e))?;
                self.callers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, caller.clone());
                caller
            }
        };
        caller
            .call(&request, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unsent(_) => RPCError::Unreachable(Unreachable::new(&e)),
                CallError::TooLarge { .. } => match &request {
                    Request::Append(append) => {
                        RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(
                            u64::try_from(append.entries.len() / 2).unwrap_or(1).max(1),
                        ))
                    }
                    _ => RPCError::Network(NetworkError::new(&e)),
                },
                CallError::Lost | CallError::TimedOut(_) => {
                    RPCError::Network(NetworkError::new(&e))
                }
            })
    }

    fn unexpected<E: Error>(&self) -> RpcError<E> {
        RPCError::Network(NetworkError::new(&Failed(format!(
            "node {} answered with the wrong kind of message",
            self.target
        ))))
    }
}

impl RaftNetwork<SessionRaft> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<SessionRaft>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcError<RaftError<NodeId>>> {
        match self.call(Request::Append(rpc), &option).await? {
            Response::Append(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<SessionRaft>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcError<RaftError<NodeId, InstallSnapshotError>>>
    {
        match self.call(Request::Snapshot(rpc), &option).await? {
            Response::Snapshot(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcError<RaftError<NodeId>>> {
        match self.call(Request::Vote(rpc), &option).await? {
            Response::Vote(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(self.unexpected()),
        }
    }
}
