//! The Lua scripts every operation runs: each is atomic on the server (no
//! WATCH/MULTI retry loop, one round trip), and each first checks the
//! store's epoch marker, so a server that lost its data is noticed on the
//! next call rather than served as if nothing happened.
//!
//! (A read of one session is a pipeline instead: see `RedisStore::get`.)
//! Keys: `KEYS[1]` is always the epoch marker; then the session hash
//! (`c`lient, `t`ransport, `ca`/`ua`/`la` created/updated/last activity,
//! `ttl`, `v`ersion, `e`xpiry on the store's clock, `js` journal sequence,
//! `d`ata), the expiry index (a sorted set of ids by expiry) and the
//! journal hash (`<seq>` the record, `<seq>:s` its status 0/1/2).

use redis::Script;

/// The marker check: `KEYS[1]` against the store's epoch in `ARGV[1]`.
macro_rules! marker_check {
    () => {
        "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('KEEL_LOST') end\n"
    };
}

/// A script that checks the marker first.
macro_rules! script {
    ($body:literal) => {
        concat!(marker_check!(), $body)
    };
}

/// The scripts, loaded once per store.
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) update: Script,
    pub(super) touch: Script,
    pub(super) delete: Script,
    pub(super) len: Script,
    pub(super) by_client: Script,
    pub(super) cleanup: Script,
    pub(super) journal_append: Script,
    pub(super) journal_mark: Script,
    pub(super) journal: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            // KEYS: marker, session, expiry index, client set.
            // ARGV: epoch, id, client, transport, now, ttl, data, limit
            // (-1: none), expires, redis ttl.
            // Returns 1 created, 0 at the limit, -1 the id is taken.
            create: Script::new(script!(
                "if tonumber(ARGV[8]) >= 0 and redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[5], '+inf') >= tonumber(ARGV[8]) then return 0 end
                 if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
                 redis.call('HSET', KEYS[2], 'c', ARGV[3], 't', ARGV[4], 'ca', ARGV[5], 'ua', ARGV[5], 'la', ARGV[5], 'ttl', ARGV[6], 'v', '1', 'e', ARGV[9], 'js', '0', 'd', ARGV[7])
                 redis.call('PEXPIRE', KEYS[2], ARGV[10])
                 redis.call('ZADD', KEYS[3], ARGV[9], ARGV[2])
                 redis.call('SADD', KEYS[4], ARGV[2])
                 redis.call('PEXPIRE', KEYS[4], ARGV[10], 'GT')
                 return 1"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // expected version, data, now, ttl ('' keeps it), id, slack,
            // client-set key prefix. Returns {0} absent, {1, version}
            // conflict, {2, version, client, transport, created, ttl}
            // written, {3} expired (and removed now).
            update: Script::new(concat!(
                "local f = redis.call('HMGET', KEYS[2], 'v', 'e', 'ttl', 'c', 't', 'ca', 'js')
                 if not f[1] then\n",
                marker_check!(),
                "  return {0}
                 end
                 if tonumber(f[2]) <= tonumber(ARGV[4]) then
                   redis.call('DEL', KEYS[2], KEYS[4])
                   redis.call('ZREM', KEYS[3], ARGV[6])
                   redis.call('SREM', ARGV[8] .. f[4], ARGV[6])
                   return {3}
                 end
                 if f[1] ~= ARGV[2] then return {1, f[1]} end
                 local ttl = ARGV[5]
                 if ttl == '' then ttl = f[3] end
                 local e = string.format('%d', tonumber(ARGV[4]) + tonumber(ttl))
                 local v = tostring(tonumber(f[1]) + 1)
                 redis.call('HSET', KEYS[2], 'd', ARGV[3], 'v', v, 'ua', ARGV[4], 'la', ARGV[4], 'ttl', ttl, 'e', e)
                 local keep = tonumber(ttl) + tonumber(ARGV[7])
                 redis.call('PEXPIRE', KEYS[2], keep)
                 if f[7] ~= '0' then redis.call('PEXPIRE', KEYS[4], keep) end
                 redis.call('ZADD', KEYS[3], e, ARGV[6])
                 return {2, v, f[4], f[5], f[6], ttl}"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now, id, slack, client-set key prefix. Returns the session's
            // fields (c, t, ca, ua, la, ttl, v, d, e), nil when absent, {}
            // when expired (removed now).
            touch: Script::new(concat!(
                "local f = redis.call('HMGET', KEYS[2], 'e', 'ttl', 'c', 'js')
                 if not f[1] then\n",
                marker_check!(),
                "  return false
                 end
                 if tonumber(f[1]) <= tonumber(ARGV[2]) then
                   redis.call('DEL', KEYS[2], KEYS[4])
                   redis.call('ZREM', KEYS[3], ARGV[3])
                   redis.call('SREM', ARGV[5] .. f[3], ARGV[3])
                   return {}
                 end
                 local e = string.format('%d', tonumber(ARGV[2]) + tonumber(f[2]))
                 redis.call('HSET', KEYS[2], 'la', ARGV[2], 'e', e)
                 local keep = tonumber(f[2]) + tonumber(ARGV[4])
                 redis.call('PEXPIRE', KEYS[2], keep)
                 if f[4] ~= '0' then redis.call('PEXPIRE', KEYS[4], keep) end
                 redis.call('ZADD', KEYS[3], e, ARGV[3])
                 return redis.call('HMGET', KEYS[2], 'c', 't', 'ca', 'ua', 'la', 'ttl', 'v', 'd', 'e')"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch, id,
            // client-set key prefix. Returns 1 if it was there.
            delete: Script::new(script!(
                "local c = redis.call('HGET', KEYS[2], 'c')
                 redis.call('ZREM', KEYS[3], ARGV[2])
                 redis.call('DEL', KEYS[4])
                 if not c then return 0 end
                 redis.call('SREM', ARGV[3] .. c, ARGV[2])
                 return redis.call('DEL', KEYS[2])"
            )),
            // KEYS: marker, expiry index.
            len: Script::new(script!("return redis.call('ZCARD', KEYS[2])")),
            // KEYS: marker, client set. ARGV: epoch, now, session key
            // prefix. Returns the live sessions' fields, each after its
            // id; forgets ids whose session is gone.
            by_client: Script::new(script!(
                "local out = {}
                 for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
                   local f = redis.call('HMGET', ARGV[3] .. id, 'c', 't', 'ca', 'ua', 'la', 'ttl', 'v', 'd', 'e')
                   if not f[1] then
                     redis.call('SREM', KEYS[2], id)
                   elseif tonumber(f[9]) > tonumber(ARGV[2]) then
                     table.insert(out, id)
                     table.insert(out, f)
                   end
                 end
                 return out"
            )),
            // KEYS: marker, expiry index. ARGV: epoch, now, batch, key
            // prefix. Removes up to `batch` expired sessions; returns how
            // many.
            cleanup: Script::new(script!(
                "local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
                 for _, id in ipairs(ids) do
                   local s = ARGV[4] .. 's:' .. id
                   local c = redis.call('HGET', s, 'c')
                   if c then redis.call('SREM', ARGV[4] .. 'c:' .. c, id) end
                   redis.call('DEL', s, ARGV[4] .. 'j:' .. id)
                   redis.call('ZREM', KEYS[2], id)
                 end
                 return #ids"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now, limit,
            // record (JSON, without seq and status), slack.
            // Returns {0} absent, {-1} full, {1, seq} appended.
            journal_append: Script::new(script!(
                "local f = redis.call('HMGET', KEYS[2], 'e', 'ttl')
                 if not f[1] or tonumber(f[1]) <= tonumber(ARGV[2]) then return {0} end
                 if redis.call('HLEN', KEYS[4]) / 2 >= tonumber(ARGV[3]) then
                   local oldest = nil
                   local all = redis.call('HGETALL', KEYS[4])
                   for i = 1, #all, 2 do
                     local seq = string.match(all[i], '^(%d+):s$')
                     if seq and all[i + 1] ~= '0' and (oldest == nil or tonumber(seq) < oldest) then
                       oldest = tonumber(seq)
                     end
                   end
                   if oldest == nil then return {-1} end
                   redis.call('HDEL', KEYS[4], tostring(oldest), tostring(oldest) .. ':s')
                 end
                 local seq = redis.call('HINCRBY', KEYS[2], 'js', 1)
                 redis.call('HSET', KEYS[4], tostring(seq), ARGV[4], tostring(seq) .. ':s', '0')
                 redis.call('PEXPIRE', KEYS[4], redis.call('PTTL', KEYS[2]))
                 return {1, seq}"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now, seq,
            // status. Returns {0} absent, {1} no record, {2, status}
            // already finished, {3} marked.
            journal_mark: Script::new(script!(
                "local e = redis.call('HGET', KEYS[2], 'e')
                 if not e or tonumber(e) <= tonumber(ARGV[2]) then return {0} end
                 local s = redis.call('HGET', KEYS[4], ARGV[3] .. ':s')
                 if not s then return {1} end
                 if s ~= '0' then return {2, s} end
                 redis.call('HSET', KEYS[4], ARGV[3] .. ':s', ARGV[4])
                 return {3}"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now. Returns
            // nil when the session is absent, else the journal hash.
            journal: Script::new(script!(
                "local e = redis.call('HGET', KEYS[2], 'e')
                 if not e or tonumber(e) <= tonumber(ARGV[2]) then return false end
                 return redis.call('HGETALL', KEYS[4])"
            )),
        }
    }
}
