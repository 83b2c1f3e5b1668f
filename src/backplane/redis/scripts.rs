//! The Lua scripts: each operation is one atomic round trip.
//!
//! Keys (under the backplane's prefix `P`): `P:m:{ch}` a hash with the
//! channel's `epoch` (set with `HSETNX` at first use, so a Redis that lost
//! its data gives the channel a new one) and `seq` (the last offset);
//! `P:s:{ch}` the history stream, whose entry ids are `0-{offset}`;
//! `P:c:{ch}` the pub/sub channel; `P:pz:{ch}` presence leases (a sorted
//! set of `user\nconnection` by expiry in ms, `user\n` for a grace window);
//! `P:pn:{ch}` entries per user; `P:pi:{ch}` each user's info; `P:pch` the
//! channels with presence; `P:rl:{limit}:{sha1 of the client}` a shared
//! rate limit's bucket.

use redis::Script;

/// Stores and publishes: KEYS meta, stream; ARGV new epoch, max messages,
/// stream ttl ms, meta ttl ms, event, data, pub/sub channel.
pub(super) fn publish() -> Script {
    Script::new(
        r"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local maxlen = tonumber(ARGV[2])
if maxlen > 0 then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '0-' .. seq, 't', ms, 'e', ARGV[5], 'd', ARGV[6])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[7], epoch .. ' ' .. seq .. ' ' .. ARGV[5] .. '\n' .. ARGV[6])
return {epoch, seq}
",
    )
}

/// Reads the head and the entries after an offset: KEYS meta, stream; ARGV
/// new epoch, after offset (`''`: none), meta ttl ms. Returns epoch, seq,
/// now ms, entries.
pub(super) fn history() -> Script {
    Script::new(
        r"
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local entries = {}
if ARGV[2] ~= '' and tonumber(ARGV[2]) < seq then
  entries = redis.call('XRANGE', KEYS[2], '(0-' .. ARGV[2], '+')
end
return {epoch, seq, now, entries}
",
    )
}

const NOW: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

/// A connection joins or renews: KEYS pz, pn, pi, pch; ARGV user,
/// connection, lease ms, has info (`1`/`0`), info, channel. Returns 1 when
/// the user was absent.
pub(super) fn join() -> Script {
    Script::new(&format!(
        r"{NOW}
local user = ARGV[1]
local absent = redis.call('HEXISTS', KEYS[2], user) == 0
if redis.call('ZREM', KEYS[1], user .. '\n') == 1 then redis.call('HINCRBY', KEYS[2], user, -1) end
if redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), user .. '\n' .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], user, 1)
end
if ARGV[4] == '1' then redis.call('HSET', KEYS[3], user, ARGV[5]) end
redis.call('SADD', KEYS[4], ARGV[6])
if absent then return 1 else return 0 end
"
    ))
}

/// A connection leaves: KEYS pz, pn; ARGV user, connection, grace ms. The
/// user's last connection leaves a grace marker.
pub(super) fn leave() -> Script {
    Script::new(&format!(
        r"{NOW}
if redis.call('ZREM', KEYS[1], ARGV[1] .. '\n' .. ARGV[2]) == 1 then
  local c = redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
  if c <= 0 then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1] .. '\n')
    redis.call('HSET', KEYS[2], ARGV[1], 1)
  end
end
return 0
"
    ))
}

/// Removes every expired lease and grace marker, atomically, so each
/// departure is reported by exactly one caller: KEYS pch; ARGV prefix.
/// Returns channel, user, channel, user, …
pub(super) fn expired() -> Script {
    Script::new(&format!(
        r"{NOW}
local out = {{}}
for _, ch in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local pz = ARGV[1] .. ':pz:' .. ch
  local pn = ARGV[1] .. ':pn:' .. ch
  local pi = ARGV[1] .. ':pi:' .. ch
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', pz, '-inf', now)) do
    if redis.call('ZREM', pz, m) == 1 then
      local i = string.find(m, '\n', 1, true)
      local user = string.sub(m, 1, i - 1)
      if redis.call('HINCRBY', pn, user, -1) <= 0 then
        redis.call('HDEL', pn, user)
        redis.call('HDEL', pi, user)
        table.insert(out, ch)
        table.insert(out, user)
      end
    end
  end
  if redis.call('ZCARD', pz) == 0 then
    redis.call('SREM', KEYS[1], ch)
    redis.call('DEL', pn, pi)
  end
end
return out
"
    ))
}

/// Who is present: KEYS pz, pi. Returns now ms, the leases with scores,
/// the infos.
pub(super) fn presence() -> Script {
    Script::new(&format!(
        r"{NOW}
return {{now, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[2])}}
"
    ))
}

/// Renews the leases of connections this node holds: ARGV lease ms, then
/// key, member pairs (only entries still there).
pub(super) fn renew() -> Script {
    Script::new(&format!(
        r"{NOW}
for i = 2, #ARGV, 2 do
  redis.call('ZADD', ARGV[i], 'XX', now + tonumber(ARGV[1]), ARGV[i + 1])
end
return 0
"
    ))
}

/// Takes a token of a rate limit shared by every node (GCRA: the key holds
/// the time, in ms, at which the bucket is full again): KEYS the limit's key
/// prefix; ARGV the client's id (hashed into the key, so an application's
/// secret key never shows in a key name), ms per token, burst. Returns 0
/// when a token was taken, else the µs to wait for one.
pub(super) fn take_token() -> Script {
    Script::new(
        r"
local key = KEYS[1] .. redis.sha1hex(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local full = tonumber(redis.call('GET', key) or '0')
if full < now then full = now end
local allowed_at = full + interval - burst * interval
if allowed_at > now then
  return math.min(math.ceil((allowed_at - now) * 1000), 86400000000)
end
full = full + interval
local ttl = math.min(math.ceil(full - now) + 1, 86400000000)
redis.call('SET', key, string.format('%.3f', full), 'PX', string.format('%d', ttl))
return 0
",
    )
}
