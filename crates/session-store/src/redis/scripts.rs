//! The Lua scripts every write runs: each is atomic on the server (no
//! WATCH/MULTI retry loop, one round trip), and each checks the store's
//! epoch marker, so a server that lost its data is noticed on the next
//! call rather than served as if nothing happened.
//!
//! A session is one string (see `codec`): its data, client id, transport
//! and a fixed-width block of metadata at the end. The scripts read only
//! that tail (`GETRANGE`) and never the data: Lua copies every string it
//! touches, and a 2 KB argument costs this Redis more through Lua than the
//! whole native write. New data goes in by a native `SET` of a staging key
//! in the same MULTI/EXEC as the script, which then renames it over the
//! session (or deletes it when the compare-and-swap fails); a touch
//! rewrites its few bytes in place (`SETRANGE`), and the session comes
//! back by a `GET` in the same transaction.
//!
//! Keys: `KEYS[1]` is always the epoch marker; then the session, the
//! expiry index (a sorted set of ids by a lower bound of their expiry: see
//! `settle`), the journal hash (`n` the
//! last sequence number, `<seq>` the record, `<seq>:s` its status 0/1/2)
//! and, for staged writes, the staging key. Numbers the scripts write into
//! the fixed block come from the client already 20 digits wide.
//! (A read of one session is a plain `GET`: see `RedisStore::get`.)

use redis::Script;

/// The marker check: `KEYS[1]` against the store's epoch in `ARGV[1]`
/// (or the key and epoch the Lua expressions `$key` and `$epoch` name).
macro_rules! marker_check {
    () => {
        marker_check!("KEYS[1]", "ARGV[1]")
    };
    ($key:literal, $epoch:literal) => {
        concat!(
            "if redis.call('GET', ",
            $key,
            ") ~= ",
            $epoch,
            " then return redis.error_reply('KEEL_LOST') end\n"
        )
    };
}

/// `meta(key, read)`: the session at `key` read from its value's tail
/// (`read`, when the caller has it already): `nil`
/// when the key is absent, `false` when it holds another type or a value
/// not in this store's layout, else a table: `tail` (up to its last 400
/// bytes) and `n` (their count), `ttl`, `e` (expiry), `j` (the journal
/// flag). `names(m)` then gives the client id and transport with the
/// fixed block's first 40 bytes after them (what an update keeps), and
/// the client id; `false` when the lengths do not fit. Offsets as in
/// `codec`'s layout.
///
/// `forget(m, prefix, id)`: removes session `id` (read as `m`) with its
/// journal, its place in the expiry index and its client's set.
///
/// `settle(index, now, batch, prefix)`: the expiry index holds a lower bound of
/// each session's expiry (touches and updates that only push it later do
/// not move it, which would cost a `ZADD` on a large sorted set each):
/// this looks at up to `batch` ids due by `now`, removes those whose
/// session did expire (or is gone) and moves the rest to their expiry.
/// Returns how many ids it looked at and how many it removed.
macro_rules! meta {
    () => {
        "local function meta(key, read)
           local tail = read or redis.pcall('GETRANGE', key, -400, -1)
           if type(tail) == 'table' then return false end
           if tail == '' then return nil end
           local n = #tail
           if n < 123 or string.sub(tail, n - 1) ~= 'K1' then return false end
           local la, ttl = tonumber(string.sub(tail, n - 42, n - 23)), tonumber(string.sub(tail, n - 22, n - 3))
           if not (la and ttl) then return false end
           return {key = key, tail = tail, n = n, ttl = ttl, e = la + ttl, j = string.sub(tail, n - 2, n - 2)}
         end
         local function names(m)
           local tail, n = m.tail, m.n
           local cl, tl = tonumber(string.sub(tail, n - 102, n - 93)), tonumber(string.sub(tail, n - 92, n - 83))
           if not (cl and tl) then return false end
           if cl + tl + 123 > n then
             tail = redis.call('GETRANGE', m.key, -(cl + tl + 123), -1)
             n = #tail
             if cl + tl + 123 > n then return false end
           end
           local from = n - 122 - cl - tl
           return string.sub(tail, from, n - 83), string.sub(tail, from, from + cl - 1)
         end
         local function forget(m, prefix, id)
           if m then
             local _, c = names(m)
             if c then redis.call('SREM', prefix .. 'c:' .. c, id) end
           end
           redis.call('DEL', prefix .. 's:' .. id, prefix .. 'j:' .. id)
           redis.call('ZREM', prefix .. 'x', id)
         end
         local function settle(index, now, batch, prefix)
           local ids = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, batch)
           local removed = 0
           for _, id in ipairs(ids) do
             local m = meta(prefix .. 's:' .. id)
             if m and m.e > tonumber(now) then
               redis.call('ZADD', index, string.format('%d', m.e), id)
             else
               forget(m, prefix, id)
               removed = removed + 1
             end
           end
           return #ids, removed
         end\n"
    };
}

/// A script that checks the marker first.
macro_rules! script {
    ($($part:expr),+ $(,)?) => {
        concat!(marker_check!(), $($part),+)
    };
}

/// The error a script returns for a value not in this store's layout.
pub(super) const FORMAT_ERROR: &str = "KEEL_FORMAT";

/// The scripts, loaded once per store.
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) update: Script,
    pub(super) update_known: Script,
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
            // The two hot writes take no keys and three or four
            // arguments, their fixed-width numbers packed into the first,
            // and build their keys from the prefix: each key or argument
            // costs this server about 0.4 µs (a Lua string and a check),
            // as much as slicing ten of them out of one string.
            //
            // ARGV: `now` (20 digits), `limit` (20 digits, or 20 spaces
            // for none), `expires` (20 digits), then the id (32); the key
            // prefix; the epoch; the client id. The value is staged with
            // the session's Redis ttl. Returns {1, settled} created, {0,
            // settled} at the limit, {-1, settled} the id is taken;
            // `settled`: expired sessions removed to make room. (A client
            // set has no expiry of its own: it goes when cleanup, settling
            // and deletes have taken its last id.)
            create: Script::new(concat!(
                marker_check!("ARGV[2] .. 'epoch'", "ARGV[3]"),
                meta!(),
                "local a, prefix = ARGV[1], ARGV[2]
                 local id = string.sub(a, 61, 92)
                 local stage, index = prefix .. 'stage', prefix .. 'x'
                 local settled = 0
                 local limit = tonumber(string.sub(a, 21, 40))
                 if limit and redis.call('ZCARD', index) >= limit then
                   local _, removed = settle(index, string.sub(a, 1, 20), 100, prefix)
                   settled = removed
                   if redis.call('ZCARD', index) >= limit then
                     redis.call('DEL', stage)
                     return {0, settled}
                   end
                 end
                 if redis.call('RENAMENX', stage, prefix .. 's:' .. id) == 0 then
                   redis.call('DEL', stage)
                   return {-1, settled}
                 end
                 redis.call('ZADD', index, string.sub(a, 41, 60), id)
                 redis.call('SADD', prefix .. 'c:' .. ARGV[4], id)
                 return {1, settled}"
            )),
            // ARGV: the expected version, the new version and now twice
            // (60 digits: version, updated, last activity), `1` and the new
            // ttl or `0` and 20 spaces (keep it), the ttl the data was
            // staged with, the slack (20 digits each), then the id (32);
            // the key prefix; the epoch. Returns {0} absent, {1, version}
            // conflict, {2, the value's new tail after the data} written,
            // {3} expired (and removed now). The common case (the version
            // matches, the session is live, no new ttl, no journal, the
            // staged expiry right) goes first, reading the tail once and
            // building no table: each Lua operation costs this server.
            // Anything else falls through to the general path.
            update: Script::new(concat!(
                meta!(),
                "local a, prefix = ARGV[1], ARGV[2]
                 local id = string.sub(a, 142, 173)
                 local key, stage = prefix .. 's:' .. id, prefix .. 'stage'
                 local read = redis.pcall('GETRANGE', key, -400, -1)
                 if type(read) == 'string' then
                   local n = #read
                   if n >= 123 and string.sub(a, 81, 81) == '0' and string.sub(read, n - 2) == '0K1'
                      and string.sub(read, n - 82, n - 63) == string.sub(a, 1, 20) then
                     local la, ttl = tonumber(string.sub(read, n - 42, n - 23)), tonumber(string.sub(read, n - 22, n - 3))
                     local cl, tl = tonumber(string.sub(read, n - 102, n - 93)), tonumber(string.sub(read, n - 92, n - 83))
                     if la and ttl and cl and tl and cl + tl + 123 <= n and la + ttl > tonumber(string.sub(a, 41, 60))
                        and ttl + tonumber(string.sub(a, 122, 141)) == tonumber(string.sub(a, 102, 121)) then
                       local tail = string.sub(read, n - 122 - cl - tl, n - 83) .. string.sub(a, 21, 80) .. string.sub(read, n - 22)
                       redis.call('APPEND', stage, tail)
                       redis.call('RENAME', stage, key)
                       return {2, tail}
                     end
                   end
                 end
                 local now = tonumber(string.sub(a, 41, 60))
                 local m = meta(key, read)
                 if not m then redis.call('DEL', stage) end
                 if m == nil then\n",
                marker_check!("prefix .. 'epoch'", "ARGV[3]"),
                "  return {0}
                 end
                 if not m then return redis.error_reply('KEEL_FORMAT') end
                 local journal = prefix .. 'j:' .. id
                 if m.e <= now then
                   redis.call('DEL', stage)
                   forget(m, prefix, id)
                   return {3}
                 end
                 local v = string.sub(m.tail, m.n - 82, m.n - 63)
                 if v ~= string.sub(a, 1, 20) then
                   redis.call('DEL', stage)
                   return {1, v}
                 end
                 local head = names(m)
                 if not head then
                   redis.call('DEL', stage)
                   return redis.error_reply('KEEL_FORMAT')
                 end
                 local given = string.sub(a, 81, 81) == '1'
                 local ttl = given and string.sub(a, 82, 101) or string.sub(m.tail, m.n - 22, m.n - 3)
                 local tail = head .. string.sub(a, 21, 80) .. ttl .. string.sub(m.tail, m.n - 2)
                 redis.call('APPEND', stage, tail)
                 redis.call('RENAME', stage, key)
                 local keep = tonumber(ttl) + tonumber(string.sub(a, 122, 141))
                 if keep ~= tonumber(string.sub(a, 102, 121)) then
                   redis.call('PEXPIRE', key, string.format('%d', keep))
                 end
                 if m.j ~= '0' then redis.call('PEXPIRE', journal, string.format('%d', keep)) end
                 -- The index holds a lower bound of each expiry: only a
                 -- ttl that ends the session sooner moves its score.
                 if given and now + tonumber(ttl) < m.e then
                   redis.call('ZADD', prefix .. 'x', string.format('%d', now + tonumber(ttl)), id)
                 end
                 return {2, tail}"
            )),
            // An update whose staged value is whole: the data, the head
            // this store remembers for the session, the new block (see
            // `known`). It checks the head, the ttl, that no journal
            // exists and that the session is live, then the version, and
            // renames: two calls. ARGV: the expected version, the new
            // version, updated and last activity, the remembered ttl and
            // `now - ttl` (20 digits each; 20 spaces when now < ttl), the
            // id (32), then `0`, or `1` for a new ttl with the last
            // activity past which it ends the session sooner and the new
            // expiry (20 digits each: the expiry index moves only then);
            // the key prefix; the head. Returns {2} written, {1, version}
            // conflict, {0} not this way (the caller goes the general
            // way, which also notices a lost marker).
            update_known: Script::new(
                "local a, prefix, head = ARGV[1], ARGV[2], ARGV[3]
                 local key, stage = prefix .. 's:' .. string.sub(a, 121, 152), prefix .. 'stage'
                 local read = redis.pcall('GETRANGE', key, -400, -1)
                 if type(read) == 'string' then
                   local n = #read
                   if n >= 83 + #head and string.sub(read, n - 82 - #head, n - 83) == head
                      and string.sub(read, n - 22) == string.sub(a, 81, 100) .. '0K1'
                      and string.sub(read, n - 42, n - 23) > string.sub(a, 101, 120) then
                     local v = string.sub(read, n - 82, n - 63)
                     if v ~= string.sub(a, 1, 20) then
                       redis.call('DEL', stage)
                       return {1, v}
                     end
                     redis.call('RENAME', stage, key)
                     if string.sub(a, 153, 153) == '1' and string.sub(read, n - 42, n - 23) > string.sub(a, 154, 173) then
                       redis.call('ZADD', prefix .. 'x', string.sub(a, 174, 193), string.sub(a, 121, 152))
                     end
                     return {2}
                   end
                 end
                 redis.call('DEL', stage)
                 return {0}",
            ),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now (20 digits), id, slack, key prefix. Returns 1
            // touched (the caller's GET in the same transaction reads it
            // back), 0 absent, -1 expired (removed now).
            touch: Script::new(concat!(
                meta!(),
                "local m = meta(KEYS[2])
                 if m == nil then\n",
                marker_check!(),
                "  return 0
                 end
                 if not m then return redis.error_reply('KEEL_FORMAT') end
                 if m.e <= tonumber(ARGV[2]) then
                   forget(m, ARGV[5], ARGV[3])
                   return -1
                 end
                 redis.call('SETRANGE', KEYS[2], redis.call('STRLEN', KEYS[2]) - 123 + 80, ARGV[2])
                 local keep = string.format('%d', m.ttl + tonumber(ARGV[4]))
                 redis.call('PEXPIRE', KEYS[2], keep)
                 if m.j ~= '0' then redis.call('PEXPIRE', KEYS[4], keep) end
                 return 1"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch, id,
            // key prefix. Returns 1 if it was there (a value
            // not in this store's layout is removed too).
            delete: Script::new(script!(
                meta!(),
                "local m = meta(KEYS[2])
                 forget(m, ARGV[3], ARGV[2])
                 if m == nil then return 0 end
                 return 1"
            )),
            // KEYS: marker, expiry index.
            len: Script::new(script!("return redis.call('ZCARD', KEYS[2])")),
            // KEYS: marker, client set. ARGV: epoch, session key prefix.
            // Returns each session's id and value (the caller drops
            // expired ones); forgets ids whose session is gone.
            by_client: Script::new(script!(
                "local out = {}
                 for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do
                   local value = redis.call('GET', ARGV[2] .. id)
                   if not value then
                     redis.call('SREM', KEYS[2], id)
                   else
                     table.insert(out, id)
                     table.insert(out, value)
                   end
                 end
                 return out"
            )),
            // KEYS: marker, expiry index. ARGV: epoch, now, batch, key
            // prefix. Settles up to `batch` ids due by `now` (see
            // `settle`); returns {looked at, removed}.
            cleanup: Script::new(script!(
                meta!(),
                "local looked, removed = settle(KEYS[2], ARGV[2], ARGV[3], ARGV[4])
                 return {looked, removed}"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now, limit, record (JSON, without seq and status).
            // Returns {0} absent, {-1} full, {1, seq} appended.
            journal_append: Script::new(script!(
                meta!(),
                    "local m = meta(KEYS[2])
                     if m == false then return redis.error_reply('KEEL_FORMAT') end
                     if not m or m.e <= tonumber(ARGV[2]) then return {0} end
                     if math.floor(redis.call('HLEN', KEYS[4]) / 2) >= tonumber(ARGV[3]) then
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
                     local seq = redis.call('HINCRBY', KEYS[4], 'n', 1)
                     redis.call('HSET', KEYS[4], tostring(seq), ARGV[4], tostring(seq) .. ':s', '0')
                     redis.call('PEXPIRE', KEYS[4], redis.call('PTTL', KEYS[2]))
                     if m.j == '0' then
                       redis.call('SETRANGE', KEYS[2], redis.call('STRLEN', KEYS[2]) - 123 + 120, '1')
                     end
                     return {1, seq}"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now, seq, status. Returns {0} absent, {1} no record, {2,
            // status} already finished, {3} marked.
            journal_mark: Script::new(script!(
                meta!(),
                    "local m = meta(KEYS[2])
                     if m == false then return redis.error_reply('KEEL_FORMAT') end
                     if not m or m.e <= tonumber(ARGV[2]) then return {0} end
                     local s = redis.call('HGET', KEYS[4], ARGV[3] .. ':s')
                     if not s then return {1} end
                     if s ~= '0' then return {2, s} end
                     redis.call('HSET', KEYS[4], ARGV[3] .. ':s', ARGV[4])
                     return {3}"
            )),
            // KEYS: marker, session, expiry index, journal. ARGV: epoch,
            // now. Returns nil when the session is absent, else the
            // journal hash.
            journal: Script::new(script!(
                meta!(),
                    "local m = meta(KEYS[2])
                     if m == false then return redis.error_reply('KEEL_FORMAT') end
                     if not m or m.e <= tonumber(ARGV[2]) then return false end
                     return redis.call('HGETALL', KEYS[4])"
            )),
        }
    }
}
