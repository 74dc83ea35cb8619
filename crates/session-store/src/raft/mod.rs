//! The replicated backend's parts (feature `raft`). So far the wire
//! between nodes ([`wire`]): peers authenticated on a shared secret,
//! frames bounded and integrity-checked. The replicated store and the
//! `keel session-node` process are built on it.

pub mod wire;
