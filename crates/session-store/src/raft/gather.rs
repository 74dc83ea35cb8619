//! Gathering concurrent client calls on the leader. Writes that arrive
//! while earlier ones are on their way become one log entry (openraft 0.9
//! appends and flushes one entry per proposal, so 256 writers proposing
//! one by one would queue for 256 fsyncs); linearizable reads waiting
//! together share one leadership check.

use std::sync::Arc;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, Raft};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::SessionRaft;
use super::command::{Batch, Command, Op, Reply};
use super::rpc::Bounce;

type NodeId = u64;
type Waiter<T> = oneshot::Sender<Result<T, Bounce>>;

/// Batches proposed at once: while one is being replicated the next is
/// appended and flushed.
const IN_FLIGHT: usize = 2;
/// Commands in one entry at most.
const MAX_COMMANDS: usize = 4096;
/// About this many bytes in one entry at most, so a few entries fit in a
/// frame to a follower.
const MAX_BYTES: usize = 1 << 20;

fn gone() -> Bounce {
    Bounce::Unavailable("the node is shutting down".into())
}

/// The redirect for raft's `ForwardToLeader`.
pub(crate) fn not_leader(f: ForwardToLeader<NodeId, BasicNode>) -> Bounce {
    Bounce::NotLeader {
        leader: f.leader_id.zip(f.leader_node.map(|n| n.addr)),
    }
}

/// What a failed proposal tells the client.
pub(crate) fn write_bounce(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Bounce {
    match e {
        // Raft never proposed it, or truncated it unapplied.
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(f),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Bounce::Invalid(e.to_string())
        }
        RaftError::Fatal(e) => Bounce::Unavailable(e.to_string()),
    }
}

/// Writes waiting to be proposed.
pub(crate) struct Writes(mpsc::UnboundedSender<(Command, Waiter<Reply>)>);

impl Writes {
    /// The gatherer, and its task (to abort on shutdown).
    pub(crate) fn start(raft: Raft<SessionRaft>) -> (Self, JoinHandle<()>) {
        let (send, waiting) = mpsc::unbounded_channel();
        (Self(send), tokio::spawn(gather_writes(raft, waiting)))
    }

    /// Proposes `command` with the writes around it; its reply once the
    /// entry is committed and applied.
    pub(crate) async fn propose(&self, command: Command) -> Result<Reply, Bounce> {
        let (done, reply) = oneshot::channel();
        self.0.send((command, done)).map_err(|_| gone())?;
        reply.await.map_err(|_| gone())?
    }
}

async fn gather_writes(
    raft: Raft<SessionRaft>,
    mut waiting: mpsc::UnboundedReceiver<(Command, Waiter<Reply>)>,
) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut gathered = Vec::new();
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        if waiting.recv_many(&mut gathered, MAX_COMMANDS).await == 0 {
            return;
        }
        let raft = raft.clone();
        let batch = std::mem::take(&mut gathered);
        tokio::spawn(async move {
            for entry in by_size(batch) {
                propose(&raft, entry).await;
            }
            drop(slot);
        });
    }
}

/// About how many bytes `command` takes in an entry.
fn size(command: &Command) -> usize {
    128 + match &command.op {
        Op::Create { data, .. } | Op::Update { data, .. } => data.len(),
        Op::Import(dumps) => dumps.iter().map(|d| 256 + d.session.data.len()).sum(),
        _ => 0,
    }
}

/// `batch` cut into entries of at most about [`MAX_BYTES`], in order.
fn by_size<T>(batch: Vec<(Command, T)>) -> Vec<Vec<(Command, T)>> {
    let mut entries = vec![Vec::new()];
    let mut bytes = 0;
    for (command, waiter) in batch {
        let n = size(&command);
        if bytes + n > MAX_BYTES && entries.last().is_some_and(|e| !e.is_empty()) {
            entries.push(Vec::new());
            bytes = 0;
        }
        bytes += n;
        if let Some(entry) = entries.last_mut() {
            entry.push((command, waiter));
        }
    }
    entries
}

async fn propose(raft: &Raft<SessionRaft>, entry: Vec<(Command, Waiter<Reply>)>) {
    let (commands, waiters): (Vec<_>, Vec<_>) = entry.into_iter().unzip();
    match raft.client_write(Batch(Arc::new(commands))).await {
        Ok(written) => {
            for (waiter, reply) in waiters.into_iter().zip(written.data.0) {
                let _ = waiter.send(Ok(reply));
            }
        }
        Err(e) => {
            let bounce = write_bounce(e);
            for waiter in waiters {
                let _ = waiter.send(Err(bounce.clone()));
            }
        }
    }
}

/// Linearizable reads waiting for a leadership check.
pub(crate) struct Reads(mpsc::UnboundedSender<Waiter<()>>);

impl Reads {
    /// The gatherer, and its task (to abort on shutdown).
    pub(crate) fn start(raft: Raft<SessionRaft>) -> (Self, JoinHandle<()>) {
        let (send, waiting) = mpsc::unbounded_channel();
        (Self(send), tokio::spawn(read_barriers(raft, waiting)))
    }

    /// Returns once this node has confirmed it still leads and has
    /// applied everything committed before the call: a read of its state
    /// then is linearizable.
    pub(crate) async fn barrier(&self) -> Result<(), Bounce> {
        let (done, checked) = oneshot::channel();
        self.0.send(done).map_err(|_| gone())?;
        checked.await.map_err(|_| gone())?
    }
}

/// One leadership check (raft's read index) for every read waiting when
/// it starts: a check that began after a read arrived is as good for it
/// as one of its own, so 256 concurrent reads cost a few rounds to the
/// followers, not 256.
async fn read_barriers(raft: Raft<SessionRaft>, mut waiting: mpsc::UnboundedReceiver<Waiter<()>>) {
    use openraft::error::CheckIsLeaderError;
    let mut batch = Vec::new();
    while waiting.recv_many(&mut batch, MAX_COMMANDS).await > 0 {
        let checked = raft
            .ensure_linearizable()
            .await
            .map(drop)
            .map_err(|e| match e {
                RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => not_leader(f),
                other => Bounce::Unavailable(other.to_string()),
            });
        for read in batch.drain(..) {
            let _ = read.send(checked.clone());
        }
    }
}
