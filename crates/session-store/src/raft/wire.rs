//! The wire between raft nodes: TCP, a mutual challenge-response on a
//! shared secret (the secret never crosses the wire), then length-prefixed
//! frames, each tagged under a key that handshake derived and numbered, so
//! a frame cannot be forged, altered, replayed or reordered by anyone
//! without the secret. Frames are not encrypted: run nodes on a network
//! you trust with the data, or under a tunnel.
//!
//! ```text
//! client -> server   "KEELRFT2" | client id (u64) | client nonce (32)
//! server -> client   "KEELRFT2" | server id (u64) | server nonce (32) | HMAC(secret, "server" | transcript)
//! client -> server   HMAC(secret, "client" | transcript)
//! either way         length (u32, big-endian) | payload | GMAC(key, direction | sequence, payload)
//! ```
//!
//! The transcript is the magic, both ids and both nonces; the frame key is
//! HMAC(secret, "frames" | transcript), fresh for every connection. A
//! frame's tag is GMAC: AES-256-GCM over an empty message with the payload
//! as associated data (which covers its length), under the nonce
//! `direction (0 from the connecting side, 1 from the accepting side) |
//! 0 0 0 | sequence (u64)`, never repeated under one key. GMAC rather than
//! HMAC-SHA256 per frame: with the CPU's AES and carry-less multiply it
//! tags 3 to 4 times the bytes per second here, and every write crosses
//! the wire three times. A frame longer than the limit is refused before
//! anything is allocated for it.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

const MAGIC: &[u8; 8] = b"KEELRFT2";
const NONCE: usize = 32;
const MAC: usize = 32;
const TAG: usize = 16;
const HELLO: usize = MAGIC.len() + 8 + NONCE;

/// The secret every node of a cluster shares. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// The fewest bytes a secret may have.
    pub const MIN_LEN: usize = 16;

    /// A secret of these bytes.
    ///
    /// # Errors
    /// [`WireError::WeakSecret`] when it is shorter than [`Self::MIN_LEN`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, WireError> {
        let bytes = Zeroizing::new(bytes.into());
        if bytes.len() < Self::MIN_LEN {
            return Err(WireError::WeakSecret {
                len: bytes.len(),
                file: None,
            });
        }
        Ok(Self(bytes))
    }

    /// The secret in a file (`--secret-file`), without surrounding
    /// whitespace.
    ///
    /// # Errors
    /// [`WireError::SecretFile`] naming the file when it cannot be read,
    /// [`WireError::WeakSecret`] when what it holds is too short.
    pub fn from_file(path: &Path) -> Result<Self, WireError> {
        let raw = Zeroizing::new(std::fs::read(path).map_err(|source| WireError::SecretFile {
            path: path.display().to_string(),
            source,
        })?);
        let text = raw.trim_ascii();
        Self::new(text.to_vec()).map_err(|e| match e {
            WireError::WeakSecret { len, .. } => WireError::WeakSecret {
                len,
                file: Some(path.display().to_string()),
            },
            other => other,
        })
    }

    fn mac(&self, label: &[u8], transcript: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(label);
        mac.update(transcript);
        mac
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// How a node speaks to its peers.
#[derive(Clone, Debug)]
pub struct WireConfig {
    /// This node's id, sent to the peer.
    pub node_id: u64,
    /// The cluster's shared secret.
    pub secret: Secret,
    /// The longest frame accepted (default 16 MiB); a snapshot travels in
    /// chunks below it.
    pub max_frame: u32,
    /// How long the handshake may take (default 5 s).
    pub handshake_timeout: Duration,
}

impl WireConfig {
    /// The defaults for `node_id` and `secret`.
    pub fn new(node_id: u64, secret: Secret) -> Self {
        Self {
            node_id,
            secret,
            max_frame: 16 << 20,
            handshake_timeout: Duration::from_secs(5),
        }
    }
}

/// Why a peer connection failed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The socket failed, or closed between frames.
    #[error("peer connection: {0}")]
    Io(#[from] io::Error),
    /// The peer proved no knowledge of the secret (or holds another one).
    #[error("the peer does not hold this cluster's secret")]
    WrongSecret,
    /// The peer does not speak this protocol.
    #[error("not a keel raft peer: {0}")]
    NotAPeer(&'static str),
    /// A frame longer than `max_frame`.
    #[error("a frame of {len} bytes passes the limit of {max}")]
    TooLarge {
        /// The length the peer announced.
        len: u32,
        /// The limit.
        max: u32,
    },
    /// The connection ended inside a frame.
    #[error("the connection ended inside a frame")]
    Truncated,
    /// A frame whose tag does not match: altered, replayed or forged.
    #[error("a frame failed its integrity check")]
    BadTag,
    /// The handshake took longer than `handshake_timeout`.
    #[error("the handshake took longer than {0:?}")]
    HandshakeTimeout(Duration),
    /// The secret is too short.
    #[error("the secret{} has {len} bytes; at least {min} are needed", .file.as_ref().map(|p| format!(" in {p}")).unwrap_or_default(), min = Secret::MIN_LEN)]
    WeakSecret {
        /// Its length.
        len: usize,
        /// The file it came from.
        file: Option<String>,
    },
    /// The secret file cannot be read.
    #[error("secret file {path}: {source}")]
    SecretFile {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
}

/// An authenticated connection to one peer: a [`FrameReader`] and a
/// [`FrameWriter`], used together or split apart (one task reading while
/// another writes).
#[derive(Debug)]
pub struct PeerStream {
    peer_id: u64,
    peer_addr: SocketAddr,
    reader: FrameReader,
    writer: FrameWriter,
}

/// The frame tags of one direction of a connection.
struct FrameMac {
    /// AES-256-GCM under the connection's frame key (wiped on drop).
    cipher: Aes256Gcm,
    /// 0 for frames from the connecting side, 1 from the accepting side.
    direction: u8,
}

impl FrameMac {
    /// The tag of frame `sequence`: GMAC over the payload.
    fn tag(&self, sequence: u64, payload: &[u8]) -> [u8; TAG] {
        let mut nonce = [0; 12];
        nonce[0] = self.direction;
        nonce[4..].copy_from_slice(&sequence.to_be_bytes());
        // Detached, over an empty buffer: nothing is allocated per frame.
        let sealed =
            self.cipher
                .encrypt_inout_detached(&Nonce::from(nonce), payload, (&mut [][..]).into());
        let mut out = [0; TAG];
        // Sealing fails only past GCM's limit on associated data (2^61
        // bytes), far above the frame limit checked before any tag.
        if let Ok(tag) = sealed {
            out.copy_from_slice(&tag[..TAG]);
        }
        out
    }
}

/// The receiving half of a [`PeerStream`].
pub struct FrameReader {
    reader: BufReader<OwnedReadHalf>,
    mac: FrameMac,
    received: u64,
    max_frame: u32,
}

/// The sending half of a [`PeerStream`]. Frames queued with
/// [`queue`](Self::queue) leave together on [`flush`](Self::flush), in one
/// vectored write: small frames gathered into one buffer, large payloads
/// (a batch of entries) sent from their own buffers, not copied.
pub struct FrameWriter {
    writer: OwnedWriteHalf,
    mac: FrameMac,
    sent: u64,
    max_frame: u32,
    /// Lengths, tags and small payloads, in order.
    gathered: Vec<u8>,
    /// What the next write sends: spans of `gathered` and large payloads.
    parts: Vec<Part>,
}

/// A piece of what a [`FrameWriter`] sends next.
enum Part {
    /// These bytes of the writer's gathered buffer.
    Gathered(Range<usize>),
    /// A large payload, sent from its own buffer.
    Payload(Vec<u8>),
}

/// Payloads from this size on are sent from their own buffers; smaller
/// ones are copied beside their length and tag (a buffer each would cost
/// the kernel more than the copy).
const SEPARATE_FROM: usize = 16 << 10;

impl fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameReader")
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FrameWriter")
            .field("sent", &self.sent)
            .finish_non_exhaustive()
    }
}

fn nonce() -> io::Result<[u8; NONCE]> {
    let mut n = [0; NONCE];
    getrandom::fill(&mut n).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(n)
}

fn hello(id: u64, nonce: &[u8; NONCE]) -> [u8; HELLO] {
    let mut out = [0; HELLO];
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&id.to_be_bytes());
    out[16..].copy_from_slice(nonce);
    out
}

fn parse_hello(bytes: &[u8; HELLO]) -> Result<(u64, [u8; NONCE]), WireError> {
    if &bytes[..8] != MAGIC {
        return Err(WireError::NotAPeer("no keel raft greeting"));
    }
    let mut id = [0; 8];
    id.copy_from_slice(&bytes[8..16]);
    let mut nonce = [0; NONCE];
    nonce.copy_from_slice(&bytes[16..]);
    Ok((u64::from_be_bytes(id), nonce))
}

/// What both sides sign: the magic, both ids and both nonces.
fn transcript(client: &[u8; HELLO], server_id: u64, server_nonce: &[u8; NONCE]) -> Vec<u8> {
    let mut t = Vec::with_capacity(HELLO + 8 + NONCE);
    t.extend_from_slice(client);
    t.extend_from_slice(&server_id.to_be_bytes());
    t.extend_from_slice(server_nonce);
    t
}

/// Reads exactly `buf`, telling a peer that hung up from other failures.
async fn read_all(reader: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> Result<(), WireError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(WireError::Truncated),
        Err(e) => Err(e.into()),
    }
}

impl PeerStream {
    /// Connects to the node at `addr` and proves both sides hold the
    /// secret.
    ///
    /// # Errors
    /// [`WireError::WrongSecret`] when the server cannot prove it holds
    /// the secret; I/O, protocol and timeout errors.
    pub async fn connect(addr: SocketAddr, config: &WireConfig) -> Result<Self, WireError> {
        let limit = config.handshake_timeout;
        tokio::time::timeout(limit, async {
            let stream = TcpStream::connect(addr).await?;
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer) = stream.into_split();
            let client = hello(config.node_id, &nonce()?);
            writer.write_all(&client).await?;
            let mut server = [0; HELLO + MAC];
            read_all(&mut reader, &mut server).await?;
            let mut server_hello = [0; HELLO];
            server_hello.copy_from_slice(&server[..HELLO]);
            let (server_id, server_nonce) = parse_hello(&server_hello)?;
            let t = transcript(&client, server_id, &server_nonce);
            config
                .secret
                .mac(b"server", &t)
                .verify_slice(&server[HELLO..])
                .map_err(|_| WireError::WrongSecret)?;
            let proof = config.secret.mac(b"client", &t).finalize().into_bytes();
            writer.write_all(&proof).await?;
            Ok(Self::ready(
                server_id,
                addr,
                (reader, writer),
                config,
                &t,
                0,
            ))
        })
        .await
        .map_err(|_| WireError::HandshakeTimeout(limit))?
    }

    /// Takes a connection a listener accepted and has the peer prove it
    /// holds the secret. A refused peer is logged (its address and why)
    /// here, so the node's accept loop only moves on.
    ///
    /// # Errors
    /// [`WireError::WrongSecret`] when the peer's proof does not verify;
    /// I/O, protocol and timeout errors.
    pub async fn accept(stream: TcpStream, config: &WireConfig) -> Result<Self, WireError> {
        let peer = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let limit = config.handshake_timeout;
        let result = tokio::time::timeout(limit, async {
            let _ = stream.set_nodelay(true);
            let (mut reader, mut writer) = stream.into_split();
            let mut client = [0; HELLO];
            read_all(&mut reader, &mut client).await?;
            let (client_id, _) = parse_hello(&client)?;
            let server_nonce = nonce()?;
            let t = transcript(&client, config.node_id, &server_nonce);
            let mut reply = Vec::with_capacity(HELLO + MAC);
            reply.extend_from_slice(&hello(config.node_id, &server_nonce));
            reply.extend_from_slice(&config.secret.mac(b"server", &t).finalize().into_bytes());
            writer.write_all(&reply).await?;
            let mut proof = [0; MAC];
            // A client that found our proof wrong hangs up here.
            read_all(&mut reader, &mut proof)
                .await
                .map_err(|e| match e {
                    WireError::Truncated => WireError::WrongSecret,
                    other => other,
                })?;
            config
                .secret
                .mac(b"client", &t)
                .verify_slice(&proof)
                .map_err(|_| WireError::WrongSecret)?;
            Ok(Self::ready(
                client_id,
                peer,
                (reader, writer),
                config,
                &t,
                1,
            ))
        })
        .await
        .unwrap_or(Err(WireError::HandshakeTimeout(limit)));
        if let Err(e) = &result {
            tracing::warn!(peer = %peer, reason = %e, "refused a raft peer");
        }
        result
    }

    /// The stream after the handshake; `direction` is this side's (0: it
    /// connected, 1: it accepted).
    fn ready(
        peer_id: u64,
        peer_addr: SocketAddr,
        (reader, writer): (OwnedReadHalf, OwnedWriteHalf),
        config: &WireConfig,
        transcript: &[u8],
        direction: u8,
    ) -> Self {
        let key = Zeroizing::new(
            config
                .secret
                .mac(b"frames", transcript)
                .finalize()
                .into_bytes()
                .to_vec(),
        );
        let mac = |direction| FrameMac {
            cipher: Aes256Gcm::new_from_slice(&key[..])
                .unwrap_or_else(|_| unreachable!("an HMAC-SHA256 output is an AES-256 key")),
            direction,
        };
        Self {
            peer_id,
            peer_addr,
            reader: FrameReader {
                reader: BufReader::with_capacity(64 << 10, reader),
                mac: mac(1 - direction),
                received: 0,
                max_frame: config.max_frame,
            },
            writer: FrameWriter {
                writer,
                mac: mac(direction),
                sent: 0,
                max_frame: config.max_frame,
                gathered: Vec::new(),
                parts: Vec::new(),
            },
        }
    }

    /// The peer's node id.
    pub fn peer_id(&self) -> u64 {
        self.peer_id
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Splits the stream into its halves.
    pub fn into_split(self) -> (FrameReader, FrameWriter) {
        (self.reader, self.writer)
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// As [`FrameWriter::send`].
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), WireError> {
        self.writer.send(payload).await
    }

    /// Receives one frame; `None` when the peer closed between frames.
    ///
    /// # Errors
    /// As [`FrameReader::recv`].
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        self.reader.recv().await
    }
}

impl FrameWriter {
    /// Queues one frame, to leave on the next [`flush`](Self::flush).
    ///
    /// # Errors
    /// [`WireError::TooLarge`] for a payload past this side's limit
    /// (nothing is queued).
    pub fn queue(&mut self, payload: Vec<u8>) -> Result<(), WireError> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= self.max_frame)
            .ok_or(WireError::TooLarge {
                len: u32::try_from(payload.len()).unwrap_or(u32::MAX),
                max: self.max_frame,
            })?;
        let tag = self.mac.tag(self.sent, &payload);
        self.sent += 1;
        self.gather(&len.to_be_bytes());
        if payload.len() < SEPARATE_FROM {
            self.gather(&payload);
        } else {
            self.parts.push(Part::Payload(payload));
        }
        self.gather(&tag);
        Ok(())
    }

    /// Appends `bytes` to the gathered buffer, as part of the last span
    /// when that ends there.
    fn gather(&mut self, bytes: &[u8]) {
        let from = self.gathered.len();
        self.gathered.extend_from_slice(bytes);
        let to = self.gathered.len();
        match self.parts.last_mut() {
            Some(Part::Gathered(span)) if span.end == from => span.end = to,
            _ => self.parts.push(Part::Gathered(from..to)),
        }
    }

    /// Writes every queued frame.
    ///
    /// # Errors
    /// I/O errors; the stream is not to be used again.
    pub async fn flush(&mut self) -> Result<(), WireError> {
        let gathered = &self.gathered;
        let mut slices: Vec<IoSlice<'_>> = self
            .parts
            .iter()
            .map(|part| match part {
                Part::Gathered(span) => IoSlice::new(&gathered[span.clone()]),
                Part::Payload(payload) => IoSlice::new(payload),
            })
            .collect();
        // Past `IOV_MAX` buffers the standard library writes the first
        // ones: a short write like any other.
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            let written = self.writer.write_vectored(rest).await?;
            if written == 0 {
                return Err(io::Error::from(io::ErrorKind::WriteZero).into());
            }
            IoSlice::advance_slices(&mut rest, written);
        }
        drop(slices);
        self.parts.clear();
        self.gathered.clear();
        // A burst's buffer is not kept for the heartbeats after it.
        self.gathered.shrink_to(64 << 10);
        Ok(())
    }

    /// Sends one frame.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] for a payload past this side's limit; I/O
    /// errors.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), WireError> {
        self.queue(payload.to_vec())?;
        self.flush().await
    }
}

impl FrameReader {
    /// Receives one frame; `None` when the peer closed between frames.
    ///
    /// # Errors
    /// [`WireError::TooLarge`] (nothing is read past the length),
    /// [`WireError::Truncated`], [`WireError::BadTag`], I/O errors. After
    /// an error the stream is not to be used again.
    pub async fn recv(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        let mut len = [0; 4];
        match self.reader.read(&mut len[..1]).await? {
            0 => return Ok(None),
            _ => read_all(&mut self.reader, &mut len[1..]).await?,
        }
        let len = u32::from_be_bytes(len);
        if len > self.max_frame {
            return Err(WireError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        // Read into spare capacity: a frame's bytes are not zeroed first.
        let mut payload = Vec::with_capacity(len as usize);
        let mut body = (&mut self.reader).take(u64::from(len));
        while payload.len() < len as usize {
            if body.read_buf(&mut payload).await? == 0 {
                return Err(WireError::Truncated);
            }
        }
        let mut got = [0; TAG];
        read_all(&mut self.reader, &mut got).await?;
        let expected = self.mac.tag(self.received, &payload);
        // Constant time: a forger learns nothing from how long it took.
        if !constant_time_eq(&expected, &got) {
            return Err(WireError::BadTag);
        }
        self.received += 1;
        Ok(Some(payload))
    }
}

fn constant_time_eq(a: &[u8; TAG], b: &[u8; TAG]) -> bool {
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
