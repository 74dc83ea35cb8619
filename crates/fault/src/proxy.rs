//! The proxy: an accept loop, and two copy loops per connection that obey
//! the fault set now.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does to traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Pass everything through.
    #[default]
    None,
    /// Hold every chunk this long before passing it on, each way.
    Latency(Duration),
    /// Close new connections at once, before any byte (the server is
    /// down); open ones keep working.
    Refuse,
    /// Accept new connections and pass nothing, either way, until the
    /// fault changes (a half-open connection: no answer, no error); open
    /// connections go silent too.
    Blackhole,
    /// Close each new connection once this many bytes have gone to the
    /// server.
    CutAfter(u64),
}

/// An in-process TCP fault proxy on 127.0.0.1: see the crate docs.
/// Dropping it stops it and closes every connection.
#[derive(Debug)]
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    fault: watch::Sender<Fault>,
    /// Bumped by `drop_connections`: every connection of an older
    /// generation closes.
    generation: watch::Sender<u64>,
    attempts: AtomicU64,
    open: AtomicUsize,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    ///
    /// # Errors
    /// The listener cannot bind.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            fault: watch::Sender::new(Fault::None),
            generation: watch::Sender::new(0),
            attempts: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            address,
            shared,
            accept,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Sets the fault, for new connections and (latency, black-hole) for
    /// open ones.
    pub fn set(&self, fault: Fault) {
        self.shared.fault.send_replace(fault);
    }

    /// The fault now.
    pub fn fault(&self) -> Fault {
        *self.shared.fault.borrow()
    }

    /// Closes every open connection now; new ones are served as the fault
    /// says.
    pub fn drop_connections(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Connection attempts seen since the start (refused ones included).
    pub fn attempts(&self) -> u64 {
        self.shared.attempts.load(Ordering::Relaxed)
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::Relaxed)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        let tasks = std::mem::take(
            &mut *self
                .shared
                .tasks
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for task in tasks {
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        shared.attempts.fetch_add(1, Ordering::Relaxed);
        let fault = *shared.fault.borrow();
        if fault == Fault::Refuse {
            drop(client);
            continue;
        }
        let task = tokio::spawn(serve(client, Arc::clone(&shared), fault));
        let mut tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

/// One client connection, until either side closes, the connection's
/// generation is dropped, or its byte budget runs out.
async fn serve(client: TcpStream, shared: Arc<Shared>, fault: Fault) {
    let mut generation = shared.generation.subscribe();
    let born = *generation.borrow_and_update();
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    shared.open.fetch_add(1, Ordering::Relaxed);
    let budget = match fault {
        Fault::CutAfter(bytes) => Some(bytes),
        _ => None,
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pump(client_read, server_write, shared.fault.subscribe(), budget);
    let down = pump(server_read, client_write, shared.fault.subscribe(), None);
    tokio::select! {
        _ = up => {}
        _ = down => {}
        _ = generation.wait_for(|g| *g != born) => {}
    }
    shared.open.fetch_sub(1, Ordering::Relaxed);
}

/// Copies one direction, obeying latency and black-hole as they change;
/// stops at end of stream, an error, or the budget.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut fault: watch::Receiver<Fault>,
    mut budget: Option<u64>,
) -> io::Result<()> {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return Ok(());
        }
        let mut chunk = &buffer[..n];
        loop {
            let now = *fault.borrow_and_update();
            match now {
                Fault::Blackhole => {
                    // Hold the bytes until the fault changes.
                    let _ = fault.changed().await;
                }
                Fault::Latency(delay) => {
                    tokio::time::sleep(delay).await;
                    break;
                }
                _ => break,
            }
        }
        if let Some(left) = budget.as_mut() {
            let allowed = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            chunk = &chunk[..allowed];
            *left -= allowed as u64;
        }
        to.write_all(chunk).await?;
        if budget == Some(0) {
            return Ok(());
        }
    }
}
