//! A three-member etcd on loopback ports (Debian's `etcd`, never the
//! system service: members started here, data in a temp dir), and the
//! least client that speaks its gRPC API: Put and Range over HTTP/2 with
//! the two protobuf messages encoded by hand, on a few shared
//! connections. (etcd-client would bring tonic, prost and protoc for two
//! messages.)

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// The members; dropped, they are killed.
pub(crate) struct Etcd {
    members: Vec<Child>,
    pub(crate) clients: Vec<String>,
}

impl Etcd {
    /// Three members with ports from `base` up (client, peer) in `dir`.
    pub(crate) fn start(dir: &Path, ports: &[(u16, u16); 3]) -> Self {
        let cluster: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let cluster = cluster.join(",");
        let mut members = Vec::new();
        let mut clients = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let client_url = format!("http://127.0.0.1:{client}");
            let peer_url = format!("http://127.0.0.1:{peer}");
            let child = Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.join(format!("m{i}")))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_url])
                .args(["--initial-advertise-peer-urls", &peer_url])
                .args(["--initial-cluster", &cluster])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "keel-bench"])
                .args(["--log-level", "error"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("etcd (Debian's etcd-server package) on the PATH");
            members.push(child);
            clients.push(format!("127.0.0.1:{client}"));
        }
        Self { members, clients }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
    }
}

/// A gRPC client of etcd's KV service over `connections` HTTP/2
/// connections; clones share them.
#[derive(Clone)]
pub(crate) struct Kv {
    connections: std::sync::Arc<Vec<SendRequest<Full<Bytes>>>>,
    turn: std::sync::Arc<AtomicUsize>,
}

/// A protobuf length-delimited field.
fn field(out: &mut BytesMut, number: u8, bytes: &[u8]) {
    out.put_u8(number << 3 | 2);
    let mut len = bytes.len();
    while len >= 0x80 {
        out.put_u8(u8::try_from(len & 0x7f).unwrap_or(0) | 0x80);
        len >>= 7;
    }
    out.put_u8(u8::try_from(len).unwrap_or(0));
    out.put_slice(bytes);
}

/// A gRPC message: uncompressed flag, length, protobuf.
fn grpc(message: &BytesMut) -> Bytes {
    let mut out = BytesMut::with_capacity(5 + message.len());
    out.put_u8(0);
    out.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    out.put_slice(message);
    out.freeze()
}

impl Kv {
    /// Connects to `endpoint` (host:port) `connections` times.
    pub(crate) async fn connect(endpoint: &str, connections: usize) -> Self {
        let mut all = Vec::new();
        for _ in 0..connections {
            let stream = tokio::net::TcpStream::connect(endpoint)
                .await
                .expect("etcd endpoint");
            let _ = stream.set_nodelay(true);
            let (send, conn) =
                hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                    .await
                    .expect("HTTP/2 handshake");
            tokio::spawn(conn);
            all.push(send);
        }
        Self {
            connections: std::sync::Arc::new(all),
            turn: std::sync::Arc::default(),
        }
    }

    async fn call(&self, method: &str, message: &BytesMut) -> Bytes {
        match self.try_call(method, message).await {
            Ok(body) => body,
            Err(e) => panic!("etcd {method}: {e}"),
        }
    }

    async fn try_call(&self, method: &str, message: &BytesMut) -> Result<Bytes, String> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut send = self.connections[turn % self.connections.len()].clone();
        let request = hyper::Request::post(format!("http://etcd/etcdserverpb.KV/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(grpc(message)))
            .expect("request");
        send.ready().await.map_err(|e| e.to_string())?;
        let response = send
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let collected = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .map(|v| v.as_bytes().to_vec());
        if status.as_deref() != Some(&b"0"[..]) {
            return Err(format!("grpc-status {status:?}"));
        }
        Ok(collected.to_bytes())
    }

    /// Put `value` under `key`.
    pub(crate) async fn put(&self, key: &[u8], value: &[u8]) {
        let mut m = BytesMut::with_capacity(key.len() + value.len() + 8);
        field(&mut m, 1, key);
        field(&mut m, 2, value);
        self.call("Put", &m).await;
    }

    /// A linearizable read of `key` (etcd's default: not serializable);
    /// the response's size, to check something came back.
    pub(crate) async fn get(&self, key: &[u8]) -> usize {
        let mut m = BytesMut::with_capacity(key.len() + 4);
        field(&mut m, 1, key);
        self.call("Range", &m).await.len()
    }

    /// Waits (bounded: 30 s) until the cluster takes writes.
    pub(crate) async fn wait_ready(endpoint: &str) -> Self {
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(endpoint).await.is_ok() {
                let kv = Self::connect(endpoint, 1).await;
                let mut m = BytesMut::new();
                field(&mut m, 1, b"probe");
                let probe = tokio::time::timeout(Duration::from_secs(2), kv.try_call("Put", &m));
                if let Ok(Ok(_)) = probe.await {
                    return kv;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("etcd did not come up within 30 s");
    }
}
