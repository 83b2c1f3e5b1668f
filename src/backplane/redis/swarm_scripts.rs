//! The Lua scripts of the swarm registry: each operation is one atomic
//! round trip.
//!
//! Keys (under the backplane's prefix `P`, always `ARGV[1]`):
//! - `P:sg:{swarm}`: a hash, the swarm: `i` its initiator's cid, `c` its
//!   peer count, and per peer `p:{cid}` the instance that holds it, `k:{cid}`
//!   its token's hash, `t:{hash}` the cid of a token's hash. Its TTL (three
//!   leases) is renewed by the instances that hold its peers, so a swarm
//!   whose instances all died goes away by itself.
//! - `P:sgn:{instance}`: a set of `{swarm} {cid}`, the peers an instance
//!   holds (what a sweeper removes when it dies).
//! - `P:sgi`: a sorted set, each live instance by the end of its lease (ms).
//! - `P:sgs`: a sorted set of the open swarms (by the end of their TTL), for
//!   `max_swarms`.
//!
//! Topics (pub/sub channels `P:t:{name}`, see `topic.rs`): `sg:s:{swarm}`
//! the swarm's events (`j {cid}`, `l {cid}`, `c`, `s {from}\n{data}`), to
//! every instance that holds one of its peers; `sg:i:{instance}` an
//! instance's inbox (`d {swarm} {from} {to}\n{data}`, a direct signal).

use redis::Script;

/// The functions every script shares: removing a peer, ending a swarm,
/// sweeping an instance.
const LIB: &str = r"
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function swarm_key(s) return P .. ':sg:' .. s end
local function held_key(i) return P .. ':sgn:' .. i end
local function topic(s) return P .. ':t:sg:s:' .. s end
local function end_swarm(s)
  local h = swarm_key(s)
  local all = redis.call('HGETALL', h)
  for n = 1, #all, 2 do
    if string.sub(all[n], 1, 2) == 'p:' then
      redis.call('SREM', held_key(all[n + 1]), s .. ' ' .. string.sub(all[n], 3))
    end
  end
  redis.call('DEL', h)
  redis.call('ZREM', P .. ':sgs', s)
  redis.call('PUBLISH', topic(s), 'c')
end
-- 0: not there (or not held by i), 1: it left, 2: it was the initiator and
-- the swarm ended.
local function remove_peer(s, cid, i)
  redis.call('SREM', held_key(i), s .. ' ' .. cid)
  local h = swarm_key(s)
  if redis.call('HGET', h, 'p:' .. cid) ~= i then return 0 end
  if redis.call('HGET', h, 'i') == cid then
    end_swarm(s)
    return 2
  end
  local tok = redis.call('HGET', h, 'k:' .. cid)
  redis.call('HDEL', h, 'p:' .. cid, 'k:' .. cid)
  if tok then redis.call('HDEL', h, 't:' .. tok) end
  redis.call('HINCRBY', h, 'c', -1)
  redis.call('PUBLISH', topic(s), 'l ' .. cid)
  return 1
end
local function sweep_instance(i)
  for _, m in ipairs(redis.call('SMEMBERS', held_key(i))) do
    remove_peer(string.sub(m, 1, 32), string.sub(m, 34), i)
  end
  redis.call('DEL', held_key(i))
end
";

fn script(body: &str) -> Script {
    Script::new(&format!("{LIB}{body}"))
}

/// ARGV prefix, swarm, cid, token hash, instance, ttl ms, max swarms (0:
/// none). Returns 1, or 0 at `max_swarms`.
pub(super) fn create() -> Script {
    script(
        r"
local s, cid, tok, inst = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, max = tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
local all = P .. ':sgs'
redis.call('ZREMRANGEBYSCORE', all, '-inf', now)
if max > 0 and redis.call('ZCARD', all) >= max then return 0 end
local h = swarm_key(s)
redis.call('HSET', h, 'i', cid, 'c', 1, 'p:' .. cid, inst, 'k:' .. cid, tok, 't:' .. tok, cid)
redis.call('PEXPIRE', h, ttl)
redis.call('ZADD', all, now + ttl, s)
redis.call('PEXPIRE', all, ttl)
redis.call('SADD', held_key(inst), s .. ' ' .. cid)
redis.call('PEXPIRE', held_key(inst), ttl)
return 1
",
    )
}

/// ARGV prefix, swarm, cid, token hash, instance, ttl ms, max peers (0:
/// none). Returns 1 joined, 0 no such swarm, -1 full.
pub(super) fn join() -> Script {
    script(
        r"
local s, cid, tok, inst = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, max = tonumber(ARGV[6]), tonumber(ARGV[7])
local h = swarm_key(s)
if redis.call('EXISTS', h) == 0 then return 0 end
if max > 0 and tonumber(redis.call('HGET', h, 'c') or '0') >= max then return -1 end
redis.call('HSET', h, 'p:' .. cid, inst, 'k:' .. cid, tok, 't:' .. tok, cid)
redis.call('HINCRBY', h, 'c', 1)
redis.call('SADD', held_key(inst), s .. ' ' .. cid)
redis.call('PEXPIRE', held_key(inst), ttl)
redis.call('PUBLISH', topic(s), 'j ' .. cid)
return 1
",
    )
}

/// ARGV prefix, swarm, cid, instance. Returns what `remove_peer` does.
pub(super) fn leave() -> Script {
    script("return remove_peer(ARGV[2], ARGV[3], ARGV[4])")
}

/// ARGV prefix, swarm, token hash, target cid (`''`: every peer), data,
/// mode (`c`: check only, `s`: send). Returns 0 no swarm, 1 bad token, 2
/// checked, 3 sent, 4 no such target.
pub(super) fn signal() -> Script {
    script(
        r"
local s, tok, to, data, mode = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local h = swarm_key(s)
if redis.call('EXISTS', h) == 0 then return 0 end
local from = redis.call('HGET', h, 't:' .. tok)
if not from then return 1 end
if mode == 'c' then return 2 end
if to == '' then
  redis.call('PUBLISH', topic(s), 's ' .. from .. '\n' .. data)
  return 3
end
local inst = redis.call('HGET', h, 'p:' .. to)
if not inst then return 4 end
redis.call('PUBLISH', P .. ':t:sg:i:' .. inst, 'd ' .. s .. ' ' .. from .. ' ' .. to .. '\n' .. data)
return 3
",
    )
}

/// An instance's tick: renews its lease and its swarms' TTLs, then sweeps
/// up to 16 instances whose lease ran out (`ZREM` answers 1 to one sweeper
/// only, and the script is atomic: each is swept exactly once). ARGV
/// prefix, instance, lease ms, ttl ms, reset (`1`: this instance declared
/// itself lost; remove its peers first). Returns {1 renewed | 0 it had been
/// swept (or the store lost its data, or reset) and starts afresh, swept}.
pub(super) fn tick() -> Script {
    script(
        r"
local inst, lease, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
local live, all = P .. ':sgi', P .. ':sgs'
local renewed = 1
if (not redis.call('ZSCORE', live, inst)) or ARGV[5] == '1' then
  sweep_instance(inst)
  renewed = 0
else
  local seen = {}
  for _, m in ipairs(redis.call('SMEMBERS', held_key(inst))) do
    local s = string.sub(m, 1, 32)
    if not seen[s] then
      seen[s] = true
      redis.call('PEXPIRE', swarm_key(s), ttl)
      redis.call('ZADD', all, 'XX', now + ttl, s)
    end
  end
  redis.call('PEXPIRE', held_key(inst), ttl)
end
redis.call('ZADD', live, now + lease, inst)
redis.call('PEXPIRE', live, ttl)
redis.call('PEXPIRE', all, ttl)
local swept = 0
for _, d in ipairs(redis.call('ZRANGEBYSCORE', live, '-inf', now, 'LIMIT', 0, 16)) do
  if redis.call('ZREM', live, d) == 1 then
    sweep_instance(d)
    swept = swept + 1
  end
end
return {renewed, swept}
",
    )
}
