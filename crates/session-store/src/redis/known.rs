//! Updates of sessions this store read or wrote lately, in one rename.
//!
//! A session's value ends with its head (client id, transport, creation
//! time and their lengths), which never changes, and a fixed block that
//! every write rewrites. An update that knows the head stages the whole
//! new value, so its script only checks the version, the ttl and the head
//! against the stored ones and renames (two calls on the server, the least
//! a compare-and-swap on Redis makes), where one that does not must have
//! the script append the head it reads (three, and a reply carrying the
//! head back). A request handler reads its session before writing it, so
//! a small cache of the heads read and written lately serves nearly every
//! update. Nothing depends on the cache being right: the script compares
//! what the client staged with what is stored, and anything else (another
//! head, another ttl, a journal, an absent or expired session) sends the
//! update the general way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redis::Value;

use super::codec::{FIXED, MARK, fixed_number};
use super::{Inner, Mode, With, digits};
use crate::data::Data;
use crate::error::StoreError;
use crate::id::SessionId;
use crate::session::Session;

/// Shards of the cache (by the id's first byte), each its own lock.
const SHARDS: usize = 16;
/// Heads a shard holds before it starts over: 4,096 in all, about 0.5 MB
/// for heads of 50 bytes, 1.5 MB for the longest cached.
const PER_SHARD: usize = 256;
/// The bytes of a value's end that a script reads (`GETRANGE -400 -1`):
/// a head longer than this leaves (with the block after it) is not cached.
const READ: usize = 400;
/// What follows the head: version, updated, last activity, ttl (20 digits
/// each), the journal flag and the layout mark.
const AFTER_HEAD: usize = 4 * 20 + 1 + MARK.len();

/// A session's head as its value holds it, and its ttl in milliseconds.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Head {
    bytes: Arc<[u8]>,
    ttl: u64,
}

impl Head {
    /// The head of a value written by `codec::encode` (or of a tail of one
    /// holding the head): `None` when it is not in the layout, carries a
    /// journal (its update must also extend the journal's expiry) or is
    /// too long for the script to see.
    pub(super) fn of(value: &[u8]) -> Option<(&[u8], u64)> {
        let fixed = value.get(value.len().checked_sub(FIXED)?..)?;
        if !fixed.ends_with(MARK.as_bytes()) || fixed[FIXED - MARK.len() - 1] != b'0' {
            return None;
        }
        let number = |at: usize, width: usize| fixed_number(fixed, at, width);
        let names = number(20, 10)?.checked_add(number(30, 10)?)?;
        let len = usize::try_from(names).ok()?.checked_add(40)?;
        if len + AFTER_HEAD > READ {
            return None;
        }
        let end = value.len() - AFTER_HEAD;
        Some((value.get(end.checked_sub(len)?..end)?, number(100, 20)?))
    }
}

/// One shard: heads by session id.
type Shard = HashMap<[u8; 16], Head>;

/// The heads this store read or wrote lately.
pub(super) struct Known(Box<[Mutex<Shard>]>);

impl Known {
    pub(super) fn new() -> Self {
        Self((0..SHARDS).map(|_| Mutex::default()).collect())
    }

    fn shard(&self, id: &SessionId) -> MutexGuard<'_, Shard> {
        self.0[usize::from(id.as_bytes()[0]) % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Remembers the head `value` (a session's value, or a tail of one)
    /// ends with; forgets the session's if it has none this way.
    pub(super) fn remember(&self, id: &SessionId, value: &[u8]) {
        let Some((bytes, ttl)) = Head::of(value) else {
            self.forget(id);
            return;
        };
        let mut shard = self.shard(id);
        if shard
            .get(id.as_bytes())
            .is_some_and(|h| h.ttl == ttl && *h.bytes == *bytes)
        {
            return;
        }
        // Full: start over (a handler's update follows its read within a
        // round trip or two, long before a shard fills again).
        if shard.len() >= PER_SHARD {
            shard.clear();
        }
        let head = Head {
            bytes: Arc::from(bytes),
            ttl,
        };
        shard.insert(*id.as_bytes(), head);
    }

    pub(super) fn get(&self, id: &SessionId) -> Option<Head> {
        self.shard(id).get(id.as_bytes()).cloned()
    }

    pub(super) fn forget(&self, id: &SessionId) {
        self.shard(id).remove(id.as_bytes());
    }
}

/// How an update by a remembered head went.
pub(super) enum Tried {
    /// Written, or refused (a conflict, an error).
    Done(Result<Arc<Session>, StoreError>),
    /// Not this way (the head, ttl or journal differ; absent or expired):
    /// the data back, for the general way.
    Not(Data),
}

impl Inner {
    /// Updates session `id` to `data` staged whole with its remembered
    /// `head`, and to `new_ttl` (milliseconds) when given.
    pub(super) async fn update_known(
        &self,
        id: &SessionId,
        expected_version: u64,
        (data, new_ttl): (Data, Option<u64>),
        head: &Head,
        now: u64,
    ) -> Tried {
        let version = expected_version.saturating_add(1);
        let ttl = new_ttl.unwrap_or(head.ttl);
        let mut value = Vec::with_capacity(data.len() + head.bytes.len() + AFTER_HEAD);
        value.extend_from_slice(data.as_json().as_bytes());
        value.extend_from_slice(&head.bytes);
        value.extend_from_slice(
            format!("{version:020}{now:020}{now:020}{ttl:020}0{MARK}").as_bytes(),
        );
        // Compared as 20 digits, where spaces sort before every digit (a
        // bound below zero): live means last activity + the remembered
        // ttl > now, and a new ttl ends the session sooner when last
        // activity + the remembered ttl > now + the new ttl (the expiry
        // index keeps a lower bound of each expiry: only then does its
        // score move).
        let above = |bound: Option<u64>| bound.map_or_else(|| " ".repeat(20), digits);
        let since = above(now.checked_sub(head.ttl));
        let moved = match new_ttl {
            Some(new) => {
                let sooner = above(now.saturating_add(new).checked_sub(head.ttl));
                format!("1{sooner}{:020}", now.saturating_add(new))
            }
            None => "0".into(),
        };
        let packed = format!(
            "{expected_version:020}{version:020}{now:020}{now:020}{:020}{since}{id}{moved}",
            head.ttl
        );
        let keep = ttl.saturating_add(super::SLACK_MS);
        let reply: Result<(Vec<Value>,), _> = self
            .run(
                Mode::Write,
                Some(*id),
                &self.scripts.update_known,
                With::Staged(&value, keep),
                |_, call| {
                    call.arg(0).arg(&packed).arg(&self.prefix).arg(&*head.bytes);
                },
            )
            .await;
        let reply = match reply {
            Ok((reply,)) => reply,
            Err(e) => return Tried::Done(Err(e)),
        };
        Tried::Done(match reply.first() {
            Some(Value::Int(2)) => {
                super::codec::decode_meta(*id, &value[data.len()..]).map(|(mut session, _)| {
                    session.data = data;
                    Arc::new(session)
                })
            }
            Some(Value::Int(1)) => super::conflict(self, *id, expected_version, reply.get(1)),
            _ => return Tried::Not(data),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::redis::codec::encode;
    use crate::session::NewSession;

    fn session(client: &str) -> Session {
        let new = NewSession::new(client, "http")
            .with_data(Data::from_json(r#"{"k":"v"}"#).unwrap_or_default());
        Session::create(
            new,
            SessionId::from_bytes([7; 16]),
            1_000,
            Duration::from_secs(60),
        )
    }

    #[test]
    fn the_head_is_what_comes_between_the_data_and_the_version() {
        let s = session("client-7");
        let value = encode(&s, false);
        let (head, ttl) = Head::of(&value).unwrap();
        assert_eq!(ttl, 60_000);
        assert!(head.starts_with(b"client-7http00000000000000001000"));
        assert_eq!(head.len(), "client-7http".len() + 40);
        let tail = &value[value.len() - head.len() - AFTER_HEAD..];
        assert_eq!(Head::of(tail), Some((head, ttl)), "a tail is enough");
        assert_eq!(Head::of(&encode(&s, true)), None, "a journal");
        assert_eq!(Head::of(&value[5..value.len() - 1]), None, "no mark");
        assert_eq!(Head::of(b"short"), None);
        let long = encode(&session(&"c".repeat(300)), false);
        assert_eq!(Head::of(&long), None, "past what the script reads");
    }

    #[test]
    fn the_cache_remembers_replaces_forgets_and_stays_bounded() {
        let known = Known::new();
        let s = session("a");
        known.remember(&s.id, &encode(&s, false));
        assert_eq!(known.get(&s.id).map(|h| h.ttl), Some(60_000));
        let mut longer = s.clone();
        longer.ttl = Duration::from_secs(90);
        known.remember(&s.id, &encode(&longer, false));
        assert_eq!(known.get(&s.id).map(|h| h.ttl), Some(90_000));
        known.remember(&s.id, &encode(&s, true));
        assert_eq!(known.get(&s.id), None, "a journal: forgotten");
        for i in 0..=u16::try_from(SHARDS * PER_SHARD * 2).unwrap() {
            let mut bytes = [0; 16];
            bytes[..2].copy_from_slice(&i.to_le_bytes());
            known.remember(&SessionId::from_bytes(bytes), &encode(&s, false));
        }
        let held: usize = known.0.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(held <= SHARDS * PER_SHARD, "{held}");
    }
}
