//! The backup format every backend writes and reads, so a backup taken
//! from one backend restores into any other.
//!
//! ```text
//! header  "KEELSESS" | version u16 BE | flags u8 | nonce prefix [u8; 7] | crc32 u32 BE
//! frame*  kind u8 | length u32 BE | crc32 u32 BE | body
//! ```
//! Data frames hold sessions as JSON lines, about 1 MiB at a time; one end
//! frame closes the file with the session and frame counts, so a truncated
//! backup is told apart from a short one. Each body is LZ4-compressed when
//! flag 1 is set and sealed with AES-256-GCM when flag 2 is set, under the
//! nonce `prefix | frame index u32 BE | last-frame byte` with the header as
//! associated data (the STREAM construction: frames cannot be reordered,
//! dropped or moved between backups). The CRC covers the frame index, kind
//! and stored body: a flipped byte is reported as corruption, while a
//! wrong key, which leaves every CRC intact, is reported as a wrong key.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use zeroize::Zeroize;

use crate::config::StoreConfig;
use crate::error::StoreError;
use crate::journal::{Journal, JournalRecord};
use crate::session::Session;

const MAGIC: &[u8; 8] = b"KEELSESS";
const VERSION: u16 = 1;
const COMPRESSED: u8 = 1;
const ENCRYPTED: u8 = 2;
const HEADER_LEN: usize = 22;
const DATA: u8 = 1;
const END: u8 = 2;
/// Plaintext gathered before a data frame is written.
const FRAME_TARGET: usize = 1 << 20;
/// No frame of ours comes near this; a larger length is corruption, and
/// refusing it bounds what a hostile file can make us allocate.
const MAX_BODY: usize = 64 << 20;

/// A 256-bit key for encrypted backups. `Debug` never shows it, and it is
/// wiped from memory when dropped. Parse one from 64 hex digits.
#[derive(Clone)]
pub struct BackupKey([u8; 32]);

impl BackupKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the OS CSPRNG.
    ///
    /// # Errors
    /// [`BackupError::Io`] if the OS cannot supply randomness.
    pub fn generate() -> Result<Self, BackupError> {
        let mut bytes = [0u8; 32];
        random(&mut bytes)?;
        Ok(Self(bytes))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(self.0))
    }
}

impl Drop for BackupKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BackupKey(<redacted>)")
    }
}

impl FromStr for BackupKey {
    type Err = BackupError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || BackupError::InvalidKey;
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut bytes = [0u8; 32];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(bytes))
    }
}

/// How to write a backup: LZ4-compressed by default, not encrypted.
#[derive(Clone, Debug)]
#[must_use]
pub struct BackupOptions {
    compress: bool,
    key: Option<BackupKey>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            compress: true,
            key: None,
        }
    }
}

impl BackupOptions {
    /// Whether to compress (default: yes).
    pub fn compress(mut self, yes: bool) -> Self {
        self.compress = yes;
        self
    }

    /// Encrypts with `key` (AES-256-GCM); restoring will need the same key.
    pub fn encrypt(mut self, key: BackupKey) -> Self {
        self.key = Some(key);
        self
    }
}

/// What a backup wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupSummary {
    /// Sessions written.
    pub sessions: usize,
    /// Bytes written.
    pub bytes: u64,
}

/// A backup that cannot be written or read. Nothing is restored from a
/// backup that gives any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing failed.
    #[error("backup I/O failed: {0}")]
    Io(#[from] io::Error),
    /// The input does not start like a keel session backup.
    #[error("not a keel session backup (the file does not start with KEELSESS)")]
    NotABackup,
    /// The backup was written by a newer format.
    #[error("backup format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// The backup ends before its end marker.
    #[error("backup is truncated: it ends inside or before frame {frame}, with no end marker")]
    Truncated {
        /// The frame that is missing or cut.
        frame: u32,
    },
    /// A frame fails its checksum or does not decode.
    #[error("backup is corrupt at frame {frame}: {reason}")]
    Corrupt {
        /// The bad frame (0 is the first).
        frame: u32,
        /// What is wrong with it.
        reason: String,
    },
    /// The backup is encrypted and no key was given.
    #[error("backup is encrypted: restoring it needs its key")]
    KeyRequired,
    /// A key was given but the backup is not encrypted, so it is not
    /// authenticated either; refused rather than trusted.
    #[error("a key was given but the backup is not encrypted (refusing an unauthenticated backup)")]
    NotEncrypted,
    /// The checksums hold but the key does not open the backup.
    #[error("wrong key: the backup's checksums are intact but the key does not decrypt it")]
    WrongKey,
    /// A backup key is not 64 hex digits.
    #[error("invalid backup key: expected 64 hex digits (32 bytes)")]
    InvalidKey,
    /// The plaintext could not be sealed (a frame over AES-GCM's limit).
    #[error("backup encryption failed")]
    Encrypt,
}

/// One session with its journal, as backups, exports and snapshots carry it.
/// The session is shared with the store that exported it, so exporting
/// (and backing up) a large store does not copy every session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionDump {
    /// The session.
    pub session: Arc<Session>,
    #[serde(default, skip_serializing_if = "Journal::is_empty")]
    pub(crate) journal: Journal,
}

impl SessionDump {
    /// A session with no journal.
    pub fn new(session: impl Into<Arc<Session>>) -> Self {
        Self {
            session: session.into(),
            journal: Journal::default(),
        }
    }

    /// The journal's records, oldest first.
    pub fn journal(&self) -> Vec<JournalRecord> {
        self.journal.records()
    }
}

/// The dumps an import keeps (live ones, the last of any repeated id),
/// after checking them against the store's limits: an import either fits
/// whole or changes nothing.
pub(crate) fn admit(
    dumps: Vec<SessionDump>,
    config: &StoreConfig,
    now: u64,
) -> Result<Vec<SessionDump>, StoreError> {
    let mut live: Vec<SessionDump> = dumps
        .into_iter()
        .rev()
        .filter(|d| !d.session.is_expired(now))
        .collect();
    let mut seen = std::collections::HashSet::with_capacity(live.len());
    live.retain(|d| seen.insert(d.session.id));
    live.reverse();
    if let Some(limit) = config.max_sessions
        && live.len() > limit
    {
        return Err(StoreError::TooManySessions { limit });
    }
    for dump in &live {
        config.check_size(&dump.session.data)?;
    }
    Ok(live)
}

struct Sealer {
    header: [u8; HEADER_LEN],
    compress: bool,
    cipher: Option<Aes256Gcm>,
}

impl Sealer {
    fn nonce(&self, index: u32, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
        let mut nonce = [0u8; 12];
        nonce[..7].copy_from_slice(&self.header[11..18]);
        nonce[7..11].copy_from_slice(&index.to_be_bytes());
        nonce[11] = u8::from(last);
        Nonce::from(nonce)
    }

    fn seal(&self, index: u32, kind: u8, plain: &[u8]) -> Result<Vec<u8>, BackupError> {
        let packed = if self.compress {
            lz4_flex::compress_prepend_size(plain)
        } else {
            plain.to_vec()
        };
        let body = match &self.cipher {
            None => packed,
            Some(cipher) => cipher
                .encrypt(
                    &self.nonce(index, kind == END),
                    Payload {
                        msg: &packed,
                        aad: &self.header,
                    },
                )
                .map_err(|_| BackupError::Encrypt)?,
        };
        let mut frame = Vec::with_capacity(body.len() + 9);
        frame.push(kind);
        frame.extend_from_slice(&frame_len(&body)?.to_be_bytes());
        frame.extend_from_slice(&crc(index, kind, &body).to_be_bytes());
        frame.extend_from_slice(&body);
        Ok(frame)
    }

    fn open(&self, index: u32, kind: u8, body: &[u8]) -> Result<Vec<u8>, BackupError> {
        let packed = match &self.cipher {
            None => body.to_vec(),
            Some(cipher) => cipher
                .decrypt(
                    &self.nonce(index, kind == END),
                    Payload {
                        msg: body,
                        aad: &self.header,
                    },
                )
                .map_err(|_| BackupError::WrongKey)?,
        };
        if !self.compress {
            return Ok(packed);
        }
        let corrupt = |reason: &str| BackupError::Corrupt {
            frame: index,
            reason: reason.into(),
        };
        let size = packed
            .first_chunk::<4>()
            .map(|b| u32::from_le_bytes(*b) as usize)
            .ok_or_else(|| corrupt("compressed body too short"))?;
        if size > MAX_BODY {
            return Err(corrupt("claims an impossible uncompressed size"));
        }
        lz4_flex::decompress_size_prepended(&packed)
            .map_err(|e| corrupt(&format!("does not decompress: {e}")))
    }
}

fn random(buf: &mut [u8]) -> Result<(), BackupError> {
    getrandom::fill(buf).map_err(|e| BackupError::Io(io::Error::other(e.to_string())))
}

fn frame_len(body: &[u8]) -> Result<u32, BackupError> {
    u32::try_from(body.len()).map_err(|_| BackupError::Encrypt)
}

fn crc(index: u32, kind: u8, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_be_bytes());
    h.update(&[kind]);
    h.update(body);
    h.finalize()
}

/// Writes `dumps` to `out` in the backup format.
pub(crate) async fn write<'a, W>(
    dumps: impl IntoIterator<Item = &'a SessionDump>,
    mut out: W,
    options: &BackupOptions,
) -> Result<BackupSummary, BackupError>
where
    W: AsyncWrite + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_be_bytes());
    header[10] = if options.compress { COMPRESSED } else { 0 }
        | if options.key.is_some() { ENCRYPTED } else { 0 };
    if options.key.is_some() {
        // A fresh prefix per backup keeps nonces unique under one key.
        random(&mut header[11..18])?;
    }
    let sum = crc32fast::hash(&header[..18]);
    header[18..].copy_from_slice(&sum.to_be_bytes());
    let sealer = Sealer {
        header,
        compress: options.compress,
        cipher: options.key.as_ref().map(BackupKey::cipher),
    };
    out.write_all(&header).await?;
    let mut bytes = HEADER_LEN as u64;
    let (mut sessions, mut index) = (0usize, 0u32);
    let mut plain = Vec::with_capacity(FRAME_TARGET + 4096);
    let mut emit = async |index: u32, kind: u8, plain: &[u8]| -> Result<(), BackupError> {
        let frame = sealer.seal(index, kind, plain)?;
        out.write_all(&frame).await?;
        bytes += frame.len() as u64;
        Ok(())
    };
    for dump in dumps {
        serde_json::to_writer(&mut plain, dump).map_err(io::Error::other)?;
        plain.push(b'\n');
        sessions += 1;
        if plain.len() >= FRAME_TARGET {
            emit(index, DATA, &plain).await?;
            plain.clear();
            index += 1;
        }
    }
    if !plain.is_empty() {
        emit(index, DATA, &plain).await?;
        index += 1;
    }
    let trailer = Trailer {
        sessions: sessions as u64,
        data_frames: index,
    };
    emit(index, END, &trailer.to_bytes()).await?;
    out.flush().await?;
    Ok(BackupSummary { sessions, bytes })
}

struct Trailer {
    sessions: u64,
    data_frames: u32,
}

impl Trailer {
    fn to_bytes(&self) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&self.sessions.to_be_bytes());
        b[8..].copy_from_slice(&self.data_frames.to_be_bytes());
        b
    }

    fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; 12] = b.try_into().ok()?;
        let (s, f) = b.split_at(8);
        Some(Self {
            sessions: u64::from_be_bytes(s.try_into().ok()?),
            data_frames: u32::from_be_bytes(f.try_into().ok()?),
        })
    }
}

/// Reads a whole backup and checks all of it before returning anything.
pub(crate) async fn read<R>(
    mut input: R,
    key: Option<&BackupKey>,
) -> Result<Vec<SessionDump>, BackupError>
where
    R: AsyncRead + Unpin,
{
    let mut header = [0u8; HEADER_LEN];
    match input.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(BackupError::NotABackup),
        Err(e) => return Err(e.into()),
    }
    if &header[..8] != MAGIC {
        return Err(BackupError::NotABackup);
    }
    if crc32fast::hash(&header[..18]).to_be_bytes() != header[18..] {
        return Err(BackupError::Corrupt {
            frame: 0,
            reason: "header checksum mismatch".into(),
        });
    }
    let version = u16::from_be_bytes([header[8], header[9]]);
    if version != VERSION {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let flags = header[10];
    if flags & !(COMPRESSED | ENCRYPTED) != 0 {
        return Err(BackupError::Corrupt {
            frame: 0,
            reason: format!("unknown header flags {flags:#04x}"),
        });
    }
    let cipher = match (flags & ENCRYPTED != 0, key) {
        (true, Some(key)) => Some(key.cipher()),
        (true, None) => return Err(BackupError::KeyRequired),
        (false, Some(_)) => return Err(BackupError::NotEncrypted),
        (false, None) => None,
    };
    let sealer = Sealer {
        header,
        compress: flags & COMPRESSED != 0,
        cipher,
    };
    let mut dumps = Vec::new();
    for index in 0u32.. {
        let corrupt = |reason: String| BackupError::Corrupt {
            frame: index,
            reason,
        };
        let truncated = |e: io::Error| match e.kind() {
            io::ErrorKind::UnexpectedEof => BackupError::Truncated { frame: index },
            _ => BackupError::Io(e),
        };
        let mut head = [0u8; 9];
        input.read_exact(&mut head).await.map_err(truncated)?;
        let kind = head[0];
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let sum = u32::from_be_bytes([head[5], head[6], head[7], head[8]]);
        if kind != DATA && kind != END {
            return Err(corrupt(format!("unknown frame kind {kind}")));
        }
        if len > MAX_BODY {
            return Err(corrupt(format!("frame length {len} is impossible")));
        }
        let mut body = vec![0u8; len];
        input.read_exact(&mut body).await.map_err(truncated)?;
        if crc(index, kind, &body) != sum {
            return Err(corrupt("checksum mismatch".into()));
        }
        let plain = sealer.open(index, kind, &body)?;
        if kind == END {
            let trailer =
                Trailer::from_bytes(&plain).ok_or_else(|| corrupt("bad end marker".into()))?;
            if trailer.data_frames != index || trailer.sessions != dumps.len() as u64 {
                return Err(corrupt(format!(
                    "end marker counts {} sessions in {} frames, found {} in {index}",
                    trailer.sessions,
                    trailer.data_frames,
                    dumps.len()
                )));
            }
            if input.read(&mut [0u8; 1]).await? != 0 {
                return Err(corrupt("data after the end marker".into()));
            }
            return Ok(dumps);
        }
        for line in plain.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let dump = serde_json::from_slice(line)
                .map_err(|e| corrupt(format!("a session does not decode: {e}")))?;
            dumps.push(dump);
        }
    }
    Err(BackupError::Corrupt {
        frame: u32::MAX,
        reason: "too many frames".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::session::NewSession;
    use std::time::Duration;

    fn dumps(n: usize) -> Vec<SessionDump> {
        (0..n)
            .map(|i| {
                let blob = serde_json::json!({ "blob": "x".repeat(i % 300) });
                let new = NewSession::new(format!("c{i}"), "http")
                    .with_data(crate::Data::from_value(blob).unwrap());
                SessionDump::new(Session::create(
                    new,
                    SessionId::random().unwrap(),
                    i as u64,
                    Duration::from_secs(60),
                ))
            })
            .collect()
    }

    async fn round_trip(options: BackupOptions, key: Option<&BackupKey>) -> Vec<u8> {
        let input = dumps(10_000);
        let mut out = Vec::new();
        let summary = write(&input, &mut out, &options).await.unwrap();
        assert_eq!(summary.sessions, 10_000);
        assert_eq!(summary.bytes, out.len() as u64);
        assert_eq!(read(&out[..], key).await.unwrap(), input);
        out
    }

    #[tokio::test]
    async fn every_mode_round_trips_over_several_frames() {
        let key = BackupKey::generate().unwrap();
        let plain = round_trip(BackupOptions::default().compress(false), None).await;
        let packed = round_trip(BackupOptions::default(), None).await;
        let sealed = round_trip(BackupOptions::default().encrypt(key.clone()), Some(&key)).await;
        assert!(plain.len() > 2 * FRAME_TARGET, "several frames");
        assert!(packed.len() < plain.len() / 2, "compressed");
        assert!(!sealed.windows(4).any(|w| w == b"blob"), "encrypted");
    }

    #[tokio::test]
    async fn a_flipped_byte_anywhere_is_refused() {
        let key = BackupKey::generate().unwrap();
        for options in [
            BackupOptions::default(),
            BackupOptions::default().encrypt(key.clone()),
        ] {
            let mut out = Vec::new();
            write(&dumps(50), &mut out, &options).await.unwrap();
            let k = options.key.as_ref();
            for at in (0..out.len()).step_by(7) {
                let mut bad = out.clone();
                bad[at] ^= 0x20;
                assert!(read(&bad[..], k).await.is_err(), "flip at {at} accepted");
            }
        }
    }

    #[tokio::test]
    async fn truncation_wrong_keys_and_strangers_get_their_own_errors() {
        let key = BackupKey::generate().unwrap();
        let mut out = Vec::new();
        write(
            &dumps(10),
            &mut out,
            &BackupOptions::default().encrypt(key.clone()),
        )
        .await
        .unwrap();
        for cut in [HEADER_LEN, HEADER_LEN + 5, out.len() - 1] {
            let err = read(&out[..cut], Some(&key)).await.unwrap_err();
            assert!(matches!(err, BackupError::Truncated { .. }), "{cut}: {err}");
        }
        let other = BackupKey::generate().unwrap();
        assert!(matches!(
            read(&out[..], Some(&other)).await,
            Err(BackupError::WrongKey)
        ));
        assert!(matches!(
            read(&out[..], None).await,
            Err(BackupError::KeyRequired)
        ));
        assert!(matches!(
            read(&b"{\"sessions\": []}"[..], None).await,
            Err(BackupError::NotABackup)
        ));
        let mut plain = Vec::new();
        write(&dumps(1), &mut plain, &BackupOptions::default())
            .await
            .unwrap();
        assert!(matches!(
            read(&plain[..], Some(&key)).await,
            Err(BackupError::NotEncrypted)
        ));
    }

    #[test]
    fn keys_parse_from_hex_and_never_print() {
        let hex = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let key: BackupKey = hex.parse().unwrap();
        assert!(!format!("{key:?}").contains("0011"));
        assert!(matches!(
            "abc".parse::<BackupKey>(),
            Err(BackupError::InvalidKey)
        ));
        assert!(hex.replace('0', "g").parse::<BackupKey>().is_err());
    }
}
