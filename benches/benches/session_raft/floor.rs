//! The floor under replicated, durable writes on this machine: three
//! processes (this bench started again as each) doing only what any
//! majority-replicated store must do for a put of 2 KB, and nothing else
//! (no consensus state, no authentication, no encoding, no state
//! machine): the leader takes framed values from the clients, appends
//! each batch to a file (past the page cache, as keel's log) and
//! `fdatasync`s it while sending the batch to
//! both followers, which append and `fdatasync` it too, and answers the
//! batch's clients once its own flush and one follower's are done. Batches
//! form while earlier ones are on their way, up to two on their way at
//! once, as keel's leader proposes them.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Set when this bench runs as a floor node: `leader LISTEN DIR FOLLOWER FOLLOWER`
/// or `follower LISTEN DIR`.
pub(crate) const FLOOR: &str = "KEEL_BENCH_RAFT_FLOOR";

async fn read_frame(r: &mut BufReader<OwnedReadHalf>) -> Option<Vec<u8>> {
    let len = r.read_u32().await.ok()?;
    let mut body = vec![0; len as usize];
    r.read_exact(&mut body).await.ok()?;
    Some(body)
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Direct writes fill whole blocks of this size.
const BLOCK: usize = 4096;

/// Appends `bytes` to `file` past the page cache, as keel's log writes
/// (zeros fill the last block: the floor is never read back), and makes
/// them durable.
async fn append(file: &Arc<File>, bytes: Vec<u8>) {
    let file = Arc::clone(file);
    tokio::task::spawn_blocking(move || {
        // One aligned buffer per blocking thread, reused (as keel's writer
        // reuses its own): the floor allocates no more than keel does.
        thread_local! {
            static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUFFER.with_borrow_mut(|buffer| {
            let whole = bytes.len().next_multiple_of(BLOCK);
            if buffer.len() < whole + BLOCK {
                buffer.resize(whole + BLOCK, 0);
            }
            let start = buffer.as_ptr().align_offset(BLOCK);
            buffer[start..start + bytes.len()].copy_from_slice(&bytes);
            buffer[start + bytes.len()..start + whole].fill(0);
            (&*file)
                .write_all(&buffer[start..start + whole])
                .expect("floor append");
        });
        file.sync_data().expect("floor fdatasync");
    })
    .await
    .expect("floor flush");
}

fn log_file(dir: &str) -> Arc<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).expect("floor dir");
    Arc::new(
        File::options()
            .create(true)
            .append(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits().cast_signed())
            .open(format!("{dir}/floor.log"))
            .expect("floor log (direct I/O)"),
    )
}

/// Runs this process as a floor node, until killed.
pub(crate) async fn run(spec: &str) {
    let parts: Vec<&str> = spec.split(' ').collect();
    let listener = TcpListener::bind(parts[1]).await.expect("floor listen");
    let file = log_file(parts[2]);
    println!("listening on {}", parts[1]);
    if parts[0] == "follower" {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            let _ = stream.set_nodelay(true);
            let file = Arc::clone(&file);
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut r = BufReader::new(r);
                while let Some(batch) = read_frame(&mut r).await {
                    append(&file, batch).await;
                    w.write_all(&frame(b"ok")).await.expect("ack");
                }
            });
        }
    }
    let mut followers = Vec::new();
    for addr in &parts[3..] {
        let stream = TcpStream::connect(addr).await.expect("follower");
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        followers.push((BufReader::new(r), w));
    }
    // (client writer, request id, value) from every client connection.
    let (puts, waiting) = mpsc::unbounded_channel::<(mpsc::UnboundedSender<u64>, u64, Vec<u8>)>();
    tokio::spawn(replicate(file, followers, waiting));
    loop {
        let (stream, _) = listener.accept().await.expect("accept");
        let _ = stream.set_nodelay(true);
        let puts = puts.clone();
        tokio::spawn(async move {
            let (r, mut w) = stream.into_split();
            let (acks, mut acked) = mpsc::unbounded_channel::<u64>();
            tokio::spawn(async move {
                while let Some(id) = acked.recv().await {
                    let mut out = frame(&id.to_be_bytes());
                    while let Ok(id) = acked.try_recv() {
                        out.extend_from_slice(&frame(&id.to_be_bytes()));
                    }
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
            let mut r = BufReader::new(r);
            while let Some(put) = read_frame(&mut r).await {
                let id = u64::from_be_bytes(put[..8].try_into().expect("id"));
                let _ = puts.send((acks.clone(), id, put));
            }
        });
    }
}

/// A batch on its way: its clients, and the leader's own flush of it.
type InFlight = (
    Vec<(mpsc::UnboundedSender<u64>, u64, Vec<u8>)>,
    oneshot::Receiver<()>,
);

async fn replicate(
    file: Arc<File>,
    followers: Vec<(BufReader<OwnedReadHalf>, OwnedWriteHalf)>,
    mut waiting: mpsc::UnboundedReceiver<(mpsc::UnboundedSender<u64>, u64, Vec<u8>)>,
) {
    // The leader's own log, flushed in order, one batch after another.
    let (own, mut flushes) = mpsc::unbounded_channel::<(Vec<u8>, oneshot::Sender<()>)>();
    tokio::spawn(async move {
        while let Some((bytes, done)) = flushes.recv().await {
            append(&file, bytes).await;
            let _ = done.send(());
        }
    });
    // Each follower answers its batches in order: count the answers.
    let (answers, mut answered) = mpsc::unbounded_channel::<usize>();
    let count = followers.len();
    let mut writers = Vec::new();
    for (i, (mut r, w)) in followers.into_iter().enumerate() {
        let answers = answers.clone();
        tokio::spawn(async move {
            while read_frame(&mut r).await.is_some() {
                let _ = answers.send(i);
            }
        });
        writers.push(w);
    }
    // Batches are answered in order once the leader and one follower hold
    // them; as many in flight at once as keel's leader proposes.
    let slots = Arc::new(Semaphore::new(2));
    let (sent, mut on_the_way) = mpsc::unbounded_channel::<InFlight>();
    let freed = Arc::clone(&slots);
    tokio::spawn(async move {
        let mut held = vec![0u64; count];
        let mut n = 0u64;
        while let Some((clients, flushed)) = on_the_way.recv().await {
            n += 1;
            while held.iter().max().copied().unwrap_or(0) < n {
                let Some(i) = answered.recv().await else {
                    return;
                };
                held[i] += 1;
            }
            let _ = flushed.await;
            for (client, id, _) in clients {
                let _ = client.send(id);
            }
            freed.add_permits(1);
        }
    });
    let mut batch = Vec::new();
    loop {
        let Ok(slot) = slots.acquire().await else {
            return;
        };
        slot.forget();
        if waiting.recv_many(&mut batch, 4096).await == 0 {
            return;
        }
        let mut bytes = Vec::new();
        for (_, _, value) in &batch {
            bytes.extend_from_slice(value);
        }
        let framed = frame(&bytes);
        for w in &mut writers {
            w.write_all(&framed).await.expect("to follower");
        }
        let (done, flushed) = oneshot::channel();
        let _ = own.send((bytes, done));
        let _ = sent.send((std::mem::take(&mut batch), flushed));
    }
}

/// A client of the floor leader: `connections` connections, calls
/// multiplexed by request id.
#[derive(Clone)]
pub(crate) struct FloorClient {
    writers: Arc<Vec<mpsc::UnboundedSender<Vec<u8>>>>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>>,
    next: Arc<AtomicU64>,
    turn: Arc<AtomicUsize>,
}

impl FloorClient {
    pub(crate) async fn connect(addr: &str, connections: usize) -> Self {
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<()>>>> = Arc::default();
        let mut writers = Vec::new();
        for _ in 0..connections {
            let stream = TcpStream::connect(addr).await.expect("floor leader");
            let _ = stream.set_nodelay(true);
            let (r, mut w) = stream.into_split();
            let (send, mut frames) = mpsc::unbounded_channel::<Vec<u8>>();
            tokio::spawn(async move {
                while let Some(mut out) = frames.recv().await {
                    while let Ok(more) = frames.try_recv() {
                        out.extend_from_slice(&more);
                    }
                    if w.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
            let pending = Arc::clone(&pending);
            tokio::spawn(async move {
                let mut r = BufReader::new(r);
                while let Some(ack) = read_frame(&mut r).await {
                    let id = u64::from_be_bytes(ack[..8].try_into().expect("id"));
                    if let Some(done) = pending.lock().expect("pending").remove(&id) {
                        let _ = done.send(());
                    }
                }
            });
            writers.push(send);
        }
        Self {
            writers: Arc::new(writers),
            pending,
            next: Arc::default(),
            turn: Arc::default(),
        }
    }

    /// Puts `value`; returns once a majority holds it on disk.
    pub(crate) async fn put(&self, value: &[u8]) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (done, acked) = oneshot::channel();
        self.pending.lock().expect("pending").insert(id, done);
        let mut body = id.to_be_bytes().to_vec();
        body.extend_from_slice(value);
        let turn = self.turn.fetch_add(1, Ordering::Relaxed) % self.writers.len();
        self.writers[turn]
            .send(frame(&body))
            .expect("floor connection");
        acked.await.expect("floor ack");
    }
}
