//! The messages nodes and clients exchange, encoded with postcard (compact
//! serde, no schema step). Each frame is a call number (8 bytes,
//! big-endian) and one message, so many calls share one connection and
//! their answers may come back in any order.

use std::collections::BTreeMap;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::SessionRaft;
use super::command::{Op, Query, Reply};

type NodeId = u64;

/// A call to a node.
#[derive(Serialize, Deserialize)]
pub(crate) enum Request {
    Append(AppendEntriesRequest<SessionRaft>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<SessionRaft>),
    /// A session write; the leader stamps and proposes it.
    Write(Op),
    /// A read: linearizable (through the leader's read index) or from
    /// whichever node is asked.
    Read {
        query: Query,
        linearizable: bool,
    },
    Admin(Admin),
}

/// A node's answer.
#[derive(Serialize, Deserialize)]
pub(crate) enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Client(Result<Reply, Bounce>),
    Admin(Result<Status, Bounce>),
}

/// Cluster management.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Admin {
    /// Make these nodes (id to address) the first members.
    Init(BTreeMap<NodeId, String>),
    /// Add a node that replicates without voting.
    AddLearner { id: NodeId, addr: String },
    /// Make a learner a voter, once it has caught up.
    Promote { id: NodeId, max_lag: u64 },
    /// Take a node out of the cluster.
    Remove { id: NodeId },
    /// The leader's view: who leads, and how far each member is.
    Status,
    /// The view of the node asked.
    LocalStatus,
}

/// Why a node did not carry out a call.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Bounce {
    /// Only the leader takes this call; here is who leads, if known. The
    /// call was not proposed: repeating it at the leader is safe.
    NotLeader { leader: Option<(NodeId, String)> },
    /// The node cannot serve it now (shutting down, storage failed): the
    /// message says why. For a write, it may or may not have been applied.
    Unavailable(String),
    /// The call is wrong (an admin request that cannot be carried out).
    Invalid(String),
}

/// A node's view of the cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Status {
    /// The node answering.
    pub id: NodeId,
    /// The leader, if one is known.
    pub leader: Option<NodeId>,
    /// The current term.
    pub term: u64,
    /// Voting members (id to address).
    pub voters: BTreeMap<NodeId, String>,
    /// Non-voting members (id to address).
    pub learners: BTreeMap<NodeId, String>,
    /// The index of the last entry applied here.
    pub last_applied: u64,
    /// The index of the last entry in this node's log.
    pub last_log: u64,
    /// On the leader: how many entries each member is behind the leader's
    /// log (`None`: nothing known of it yet).
    pub lag: BTreeMap<NodeId, Option<u64>>,
}

/// One frame: the call number and the message.
pub(crate) fn encode<T: Serialize>(call: u64, message: &T) -> Result<Vec<u8>, postcard::Error> {
    // Sized first (a walk that copies nothing): a batch of entries is
    // hundreds of kilobytes, and growing into it would copy it again.
    let mut out = Vec::with_capacity(8 + encoded_len(message)?);
    out.extend_from_slice(&call.to_be_bytes());
    append(message, out)
}

/// `value` encoded at the end of `out`.
pub(crate) fn append<T: Serialize>(value: &T, out: Vec<u8>) -> Result<Vec<u8>, postcard::Error> {
    postcard::serialize_with_flavor(value, Append(out))
}

/// Postcard's output into a vector, a run of bytes (a session's data)
/// copied as one slice (`memcpy`): postcard's own `Extend` output copies
/// it through an iterator, a loop of 16-byte moves.
struct Append(Vec<u8>);

impl postcard::ser_flavors::Flavor for Append {
    type Output = Vec<u8>;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.push(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// How many bytes postcard encodes `value` in (a walk that copies
/// nothing).
pub(crate) fn encoded_len<T: Serialize>(value: &T) -> Result<usize, postcard::Error> {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
}

/// The call number and the message of one frame.
pub(crate) fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<(u64, T), postcard::Error> {
    let (call, body) = frame
        .split_first_chunk::<8>()
        .ok_or(postcard::Error::DeserializeUnexpectedEnd)?;
    Ok((u64::from_be_bytes(*call), postcard::from_bytes(body)?))
}
