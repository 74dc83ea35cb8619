//! Many calls over one authenticated connection: each request carries a
//! call number and its answer comes back under it, in whatever order the
//! node finishes them. Both sides gather what is ready into one write
//! (a burst of 256 clients' calls costs a few syscalls, not 256).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};

use super::rpc::{self, Request, Response};
use super::wire::{FrameWriter, PeerStream, WireConfig, WireError};

/// Calls a node may run at once for one connection; past it, the node
/// stops reading that connection until some finish.
const MAX_IN_FLIGHT: usize = 4096;
/// Frames waiting for the writer.
const OUTBOX: usize = 1024;

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The connection was down before the call left: it had no effect.
    #[error("not connected: {0}")]
    Unsent(String),
    /// The connection broke after the call left: it may have taken effect.
    #[error("the connection was lost while the call was in flight")]
    Lost,
    /// No answer in time: it may have taken effect.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    /// The call is larger than a frame may be; it was not sent.
    #[error("a call of {len} bytes passes the frame limit of {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: u32,
    },
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>;

struct Shared {
    outbox: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    next: AtomicU64,
    alive: AtomicBool,
}

impl Shared {
    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Vec<u8>>>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection dead and fails every call waiting on it.
    fn close(&self) {
        self.alive.store(false, Ordering::SeqCst);
        self.pending().clear();
    }
}

/// The calling side of a connection; clones share it.
#[derive(Clone)]
pub(crate) struct Caller {
    shared: Arc<Shared>,
    peer_id: u64,
    max_frame: u32,
}

impl Caller {
    /// Connects to `addr` and starts the connection's reader and writer.
    pub(crate) async fn connect(addr: SocketAddr, wire: &WireConfig) -> Result<Self, WireError> {
        let stream = PeerStream::connect(addr, wire).await?;
        let peer_id = stream.peer_id();
        let (mut reader, writer) = stream.into_split();
        let (outbox, frames) = mpsc::channel(OUTBOX);
        let shared = Arc::new(Shared {
            outbox,
            pending: Mutex::default(),
            next: AtomicU64::new(0),
            alive: AtomicBool::new(true),
        });
        let writing = Arc::clone(&shared);
        tokio::spawn(async move {
            write_all(frames, writer).await;
            writing.close();
        });
        let reading = Arc::clone(&shared);
        tokio::spawn(async move {
            while reading.alive.load(Ordering::SeqCst) {
                let Ok(Some(frame)) = reader.recv().await else {
                    break;
                };
                let Some(call) = frame.first_chunk::<8>().map(|c| u64::from_be_bytes(*c)) else {
                    break;
                };
                if let Some(waiting) = reading.pending().remove(&call) {
                    let _ = waiting.send(frame);
                }
            }
            reading.close();
        });
        Ok(Self {
            shared,
            peer_id,
            max_frame: wire.max_frame,
        })
    }

    /// The node at the other end.
    pub(crate) fn peer_id(&self) -> u64 {
        self.peer_id
    }

    /// Whether the connection still works.
    pub(crate) fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Sends `request` and waits up to `timeout` for its answer.
    pub(crate) async fn call(
        &self,
        request: &Request,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let call = self.shared.next.fetch_add(1, Ordering::Relaxed);
        let frame = rpc::encode(call, request).map_err(|e| CallError::Unsent(e.to_string()))?;
        if frame.len() > self.max_frame as usize {
            return Err(CallError::TooLarge {
                len: frame.len(),
                max: self.max_frame,
            });
        }
        let (answer, answered) = oneshot::channel();
        self.shared.pending().insert(call, answer);
        // Forget the call however this ends (answered, timed out, dropped).
        let _forget = Forget(&self.shared, call);
        if !self.is_alive() {
            return Err(CallError::Unsent("the connection is closed".into()));
        }
        if self.shared.outbox.send(frame).await.is_err() {
            return Err(CallError::Unsent("the connection is closed".into()));
        }
        let frame = match tokio::time::timeout(timeout, answered).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(_)) => return Err(CallError::Lost),
            Err(_) => return Err(CallError::TimedOut(timeout)),
        };
        match rpc::decode::<Response>(&frame) {
            Ok((_, response)) => Ok(response),
            // A node that answers nonsense is treated as a lost connection.
            Err(_) => {
                self.shared.close();
                Err(CallError::Lost)
            }
        }
    }
}

struct Forget<'a>(&'a Shared, u64);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.pending().remove(&self.1);
    }
}

/// Writes frames as they come, everything ready at once. A frame past the
/// size limit is dropped (its caller times out), not the connection.
async fn write_all(mut frames: mpsc::Receiver<Vec<u8>>, mut writer: FrameWriter) {
    while let Some(frame) = frames.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if let Err(e) = writer.queue(frame) {
                tracing::warn!(reason = %e, "dropped a raft message too large to send");
            }
            next = frames.try_recv().ok();
        }
        if writer.flush().await.is_err() {
            return;
        }
    }
}

/// Serves one accepted connection: every request runs as its own task
/// (at most [`MAX_IN_FLIGHT`] at once), and answers leave as they finish.
/// A frame that fails its check or does not decode ends the connection,
/// logged with the peer's address and why; the node serves on.
pub(crate) async fn serve<F, Fut>(stream: PeerStream, handle: F)
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let peer: SocketAddr = stream.peer_addr();
    let (mut reader, writer) = stream.into_split();
    let (replies, frames) = mpsc::channel(OUTBOX);
    tokio::spawn(write_all(frames, writer));
    let handle = Arc::new(handle);
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let frame = match reader.recv().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(peer = %peer, reason = %e, "refused a frame from a raft peer; closing its connection");
                return;
            }
        };
        let (call, request) = match rpc::decode::<Request>(&frame) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(peer = %peer, reason = %e, "a raft peer sent a message that does not decode; closing its connection");
                return;
            }
        };
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let handle = Arc::clone(&handle);
        let replies = replies.clone();
        tokio::spawn(async move {
            let response = handle(request).await;
            drop(slot);
            match rpc::encode(call, &response) {
                Ok(frame) => {
                    let _ = replies.send(frame).await;
                }
                Err(e) => tracing::error!(reason = %e, "a raft answer could not be encoded"),
            }
        });
    }
}
