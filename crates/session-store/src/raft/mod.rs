//! The replicated backend (feature `raft`): sessions replicated across
//! processes by openraft, the Mnesia equivalent without split brain (a
//! minority refuses writes).
//!
//! - [`RaftNode`] is one member: it applies the replicated log to an
//!   in-memory session engine, keeps its log and vote in sled, and serves
//!   peers and clients on one TCP port ([`wire`]: a shared secret proven
//!   both ways, every frame authenticated).
//! - [`RaftSessionStore`] is the client: a [`SessionStore`](crate::SessionStore)
//!   that finds the leader, follows redirects and retries leader changes
//!   with keel-retry.

mod client;
mod command;
mod gather;
mod log;
mod machine;
mod mux;
mod network;
mod node;
mod rpc;
pub mod wire;

pub use client::{Consistency, RaftClientConfig, RaftSessionStore, RaftStoreBuilder};
pub use node::{NodeConfig, NodeError, RaftNode};
pub use rpc::Status;

openraft::declare_raft_types!(
    /// The raft types of the session store.
    pub(crate) SessionRaft:
        D = command::Batch,
        R = command::Replies,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<SessionRaft>,
        SnapshotData = tokio::fs::File,
        Responder = openraft::impls::OneshotResponder<SessionRaft>,
        AsyncRuntime = openraft::TokioRuntime,
);

#[cfg(test)]
mod tests {
    mod log;
    mod storage;
}
