#include "pubsub/redis/redis_presence.h"

#include <charconv>
#include <new>
#include <utility>

namespace pubsub::redis {

namespace {

// Shared by the presence scripts.  pset() is the one place a member's
// state changes: this instance's part of it, then the cluster-wide
// aggregate, and the join or leave when the aggregate appears or goes.
const char* const kLuaPresence = R"LUA(
local function pnow()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function pevent(tag, out, kind, id, info, opts, sharded)
  out[#out + 1] = kind
  out[#out + 1] = id
  out[#out + 1] = info
  out[#out + 1] = string.format('%d', opts)
  if opts % 2 == 1 then
    -- numbered (a new counter starts at the time in microseconds, so the
    -- numbers only grow), published and kept in a short log that a worker
    -- reads once its SUBSCRIBE is confirmed: what happened while it was on
    -- its way
    local pv = tag .. ':pv'
    local seq = redis.call('INCR', pv)
    if seq == 1 then
      seq = pnow() * 1000
      redis.call('SET', pv, string.format('%d', seq))
    end
    local ev = string.lower(kind) .. string.format('%d', seq) .. ' ' .. #id .. ' ' .. id .. info
    local pl = tag .. ':pl'
    redis.call('RPUSH', pl, ev)
    redis.call('LTRIM', pl, -32, -1)
    redis.call('PEXPIRE', pl, 30000)
    redis.call(sharded == 'S' and 'SPUBLISH' or 'PUBLISH', tag .. ':ps', ev)
  end
end
-- The digest of an instance's part: the XOR of a 32-bit hash of each
-- member's "id:connections" (presenceDigest() in C++ makes the same), so
-- that a refresh of an unchanged part is compared, not rewritten.
local function phash(id, c)
  return tonumber(string.sub(redis.sha1hex(id .. ':' .. c), 1, 8), 16)
end
local function pdigest(d, id, oc, c)
  if oc >= 0 then d = bit.bxor(d, phash(id, oc)) end
  if c >= 0 then d = bit.bxor(d, phash(id, c)) end
  if d < 0 then d = d + 4294967296 end
  return d
end
local function pset(tag, inst, id, c, ver, info, opts, now, out, sharded, snap, st)
  local pm = tag .. ':pm:' .. inst
  local old = redis.call('HGET', pm, id)
  local oc, ov = -1, 0
  if old then
    local a, b = string.match(old, '^(-?%d+):(%d+)$')
    oc, ov = tonumber(a) or -1, tonumber(b) or 0
  end
  if ov >= ver or (snap and oc == c) then
    -- (a snapshot leaves an unchanged member as it is: deltas older than
    -- the snapshot are refused by the instance's snapshot version anyway)
    return
  end
  redis.call('HSET', pm, id, string.format('%d:%d', c, ver))
  if oc < 0 and c < 0 then
    return
  end
  if st and oc ~= c then
    st.d = pdigest(st.d, id, oc, c)
  end
  local pu, pf = tag .. ':pu', tag .. ':pf'
  local agg = redis.call('HGET', pu, id)
  local n, tc, joined, o = 0, 0, now, opts
  if agg then
    local a, b, d, e = string.match(agg, '^(%d+):(%d+):(%d+):(%d+)$')
    n, tc, joined, o = tonumber(a) or 0, tonumber(b) or 0, tonumber(d) or now, tonumber(e) or 0
  end
  if oc >= 0 then tc = tc - oc end
  if c >= 0 then tc = tc + c end
  if tc < 0 then tc = 0 end
  if oc < 0 and c >= 0 then
    n = n + 1
  elseif oc >= 0 and c < 0 then
    n = n - 1
  end
  if c >= 0 then
    o = opts
    if info ~= '' then
      redis.call('HSET', pf, id, info)
    end
  end
  if n > 0 then
    redis.call('HSET', pu, id, string.format('%d:%d:%d:%d', n, tc, joined, o))
    if not agg then
      redis.call('ZADD', tag .. ':pz', redis.call('INCR', tag .. ':pq'), id)
      pevent(tag, out, 'J', id, redis.call('HGET', pf, id) or '', o, sharded)
    end
  elseif agg then
    local inf = redis.call('HGET', pf, id) or ''
    redis.call('HDEL', pu, id)
    redis.call('HDEL', pf, id)
    redis.call('ZREM', tag .. ':pz', id)
    pevent(tag, out, 'L', id, inf, o, sharded)
  end
end
local function preap(tag, now, out, sharded)
  local pi = tag .. ':pi'
  local all = redis.call('HGETALL', pi)
  local conns, anon = 0, 0
  for i = 1, #all, 2 do
    local c, a, v = string.match(all[i + 1], '^%d+:%d+:(%d+):(%d+):(%d+):%d+$')
    if v and tonumber(v) >= now then
      conns, anon = conns + tonumber(c), anon + tonumber(a)
    else
      local pm = tag .. ':pm:' .. all[i]
      local fields = redis.call('HGETALL', pm)
      for j = 1, #fields, 2 do
        pset(tag, all[i], fields[j], -1, 9007199254740992, '', 0, now, out, sharded)
      end
      redis.call('DEL', pm)
      redis.call('HDEL', pi, all[i])
    end
  end
  return conns, anon
end
)LUA";

const char* const kLuaUpdate = R"LUA(
local tag, inst, mode = KEYS[1], ARGV[1], ARGV[2]
local ver, valid = tonumber(ARGV[3]), tonumber(ARGV[4])
local sharded = ARGV[7]
local now = pnow()
local out = {}
preap(tag, now, out, sharded)
local pi = tag .. ':pi'
local pm = tag .. ':pm:' .. inst
local rec = redis.call('HGET', pi, inst)
local sv, cv, c0, a0 = 0, 0, 0, 0
local st = {d = 0}
local resync = 0
if rec then
  local a, b, c, d, e = string.match(rec, '^(%d+):(%d+):(%d+):(%d+):%d+:(%d+)$')
  sv, cv, c0, a0 = tonumber(a) or 0, tonumber(b) or 0, tonumber(c) or 0, tonumber(d) or 0
  st.d = tonumber(e) or 0
end
if mode == 'd' then
  -- deltas, oldest first, each with its own version
  for i = 8, #ARGV - 4, 5 do
    local v = tonumber(ARGV[i + 4])
    if v > sv then
      pset(tag, inst, ARGV[i], tonumber(ARGV[i + 1]), v, ARGV[i + 2], tonumber(ARGV[i + 3]),
           now, out, sharded, false, st)
    end
  end
elseif ver > sv then
  if mode == 'b' then
    -- a refresh: the same part as the instance's (by digest) is kept as
    -- it is, another one is asked for whole
    if rec and st.d == tonumber(ARGV[8]) then
      sv = ver
    else
      resync = 1
    end
  elseif mode == 's' then
    local seen = {}
    for i = 8, #ARGV - 3, 4 do
      seen[ARGV[i]] = true
      pset(tag, inst, ARGV[i], tonumber(ARGV[i + 1]), ver, ARGV[i + 2], tonumber(ARGV[i + 3]),
           now, out, sharded, true, st)
    end
    local fields = redis.call('HGETALL', pm)
    for i = 1, #fields, 2 do
      local v = tonumber(string.match(fields[i + 1], ':(%d+)$')) or 0
      if not seen[fields[i]] and v <= ver then
        pset(tag, inst, fields[i], -1, ver, '', 0, now, out, sharded, false, st)
        redis.call('HDEL', pm, fields[i])
      end
    end
    sv = ver
  end
end
if ver > cv then
  cv, c0, a0 = ver, tonumber(ARGV[5]), tonumber(ARGV[6])
end
redis.call('HSET', pi, inst,
           string.format('%d:%d:%d:%d:%d:%d', sv, cv, c0, a0, now + valid, st.d))
local keep = valid * 4 + 60000
for _, k in ipairs({pi, pm, tag .. ':pu', tag .. ':pz', tag .. ':pf', tag .. ':pq',
                      tag .. ':pv'}) do
  redis.call('PEXPIRE', k, keep)
end
return {out, resync}
)LUA";

const char* const kLuaReap = R"LUA(
local out = {}
preap(KEYS[1], pnow(), out, ARGV[1])
return {out}
)LUA";

const char* const kLuaStats = R"LUA(
local tag = KEYS[1]
local out = {}
local conns, anon = preap(tag, pnow(), out, ARGV[1])
return {out, redis.call('ZCARD', tag .. ':pz'), conns, anon}
)LUA";

const char* const kLuaList = R"LUA(
local tag = KEYS[1]
local out = {}
local conns, anon = preap(tag, pnow(), out, ARGV[1])
local limit = tonumber(ARGV[3])
local from = ARGV[2] == '' and '-inf' or '(' .. ARGV[2]
local rows = redis.call('ZRANGEBYSCORE', tag .. ':pz', from, '+inf', 'WITHSCORES', 'LIMIT', 0,
                        limit + 1)
local reply = {out, redis.call('ZCARD', tag .. ':pz'), conns, anon,
               #rows > limit * 2 and 1 or 0}
for i = 1, math.min(#rows, limit * 2), 2 do
  reply[#reply + 1] = rows[i]
  reply[#reply + 1] = rows[i + 1]
  reply[#reply + 1] = redis.call('HGET', tag .. ':pu', rows[i]) or ''
  reply[#reply + 1] = redis.call('HGET', tag .. ':pf', rows[i]) or ''
end
return reply
)LUA";

const char* const kLuaUser = R"LUA(
local k, ch = KEYS[1], ARGV[2]
if ARGV[1] == '+' then
  local was = redis.call('HLEN', k)
  redis.call('HSET', k, ch, '1')
  if was == 0 then
    local t = redis.call('TIME')
    redis.call('SET', k .. ':s', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
    return 1
  end
  return 0
end
if redis.call('HDEL', k, ch) == 1 and redis.call('HLEN', k) == 0 then
  redis.call('DEL', k .. ':s')
  return 1
end
return 0
)LUA";

const char* const kLuaUserGet = R"LUA(
local out = {redis.call('GET', KEYS[1] .. ':s') or ''}
for _, ch in ipairs(redis.call('HKEYS', KEYS[1])) do
  out[#out + 1] = ch
end
return out
)LUA";

const char* const kLuaBeat = R"LUA(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4 + 60000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[3])), 'LIMIT', 0,
                  tonumber(ARGV[4]))
)LUA";

const char* const kLuaChannels = R"LUA(
if ARGV[2] == 'replace' then
  redis.call('DEL', KEYS[1])
end
for i = 3, #ARGV do
  redis.call('SADD', KEYS[1], ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
)LUA";

Script presenceScript(const char* name, const char* body) {
    return scriptFrom(name, std::string(kLuaPresence) + body);
}

template <typename T>
bool number(std::string_view s, T* v) {
    auto res = std::from_chars(s.data(), s.data() + s.size(), *v);
    return !s.empty() && res.ec == std::errc() && res.ptr == s.data() + s.size();
}

bool counts(const redisReply* r, PresenceStats* out, std::string* reason) {
    long long v[3];
    for (size_t i = 0; i < 3; i++) {
        if (!replyInt(r->element[i + 1], &v[i]) || v[i] < 0) {
            *reason = "unexpected reply from Redis";
            return false;
        }
    }
    out->members = static_cast<uint64_t>(v[0]);
    out->connections = static_cast<uint64_t>(v[1]);
    out->anonymous = static_cast<uint64_t>(v[2]);
    out->found = out->members != 0 || out->connections != 0;
    return true;
}

}  // namespace

const Script& presenceUpdateScript() {
    static const Script s = presenceScript("pupdate", kLuaUpdate);
    return s;
}

const Script& presenceReapScript() {
    static const Script s = presenceScript("preap", kLuaReap);
    return s;
}

const Script& presenceStatsScript() {
    static const Script s = presenceScript("pstats", kLuaStats);
    return s;
}

const Script& presenceListScript() {
    static const Script s = presenceScript("plist", kLuaList);
    return s;
}

const Script& presenceUserScript() {
    static const Script s = scriptFrom("puser", kLuaUser);
    return s;
}

const Script& presenceUserGetScript() {
    static const Script s = scriptFrom("puserget", kLuaUserGet);
    return s;
}

const Script& presenceBeatScript() {
    static const Script s = scriptFrom("pbeat", kLuaBeat);
    return s;
}

const Script& presenceChannelsScript() {
    static const Script s = scriptFrom("pchans", kLuaChannels);
    return s;
}

std::string userKey(std::string_view id) {
    return hashTag("{user:", id);
}

std::string instancesKey() {
    return "{pubsub:presence}:instances";
}

std::string instanceChannelsKey(std::string_view instance) {
    return hashTag("{pubsub:presence:", instance) + ":channels";
}

bool parsePresenceEvents(const redisReply* r, std::string_view key, PresenceEvents* out,
                         std::string* reason) {
    if (!replyArray(r, 1, reason)) {
        return false;
    }
    const redisReply* evs = r->element[0];
    if (evs == nullptr || evs->type != REDIS_REPLY_ARRAY || evs->elements % 4 != 0) {
        *reason = "unexpected reply from Redis";
        return false;
    }
    try {
        for (size_t i = 0; i + 4 <= evs->elements; i += 4) {
            long long opts = 0;
            if (!replyIsText(evs->element[i]) || !replyIsText(evs->element[i + 1]) ||
                !replyIsText(evs->element[i + 2]) || !replyInt(evs->element[i + 3], &opts) ||
                opts < 0 || opts > UINT32_MAX) {
                *reason = "unexpected reply from Redis";
                return false;
            }
            std::string_view kind = replyText(evs->element[i]);
            PresenceEvent ev;
            if (kind == "J") {
                ev.type = PresenceEventType::kJoin;
            } else if (kind == "L") {
                ev.type = PresenceEventType::kLeave;
            } else {
                *reason = "unknown presence event from Redis";
                return false;
            }
            ev.channel.assign(key);
            ev.id.assign(replyText(evs->element[i + 1]));
            ev.info.assign(replyText(evs->element[i + 2]));
            ev.opts = static_cast<uint32_t>(opts);
            out->push_back(std::move(ev));
        }
    } catch (const std::bad_alloc&) {
        *reason = "out of worker memory";
        return false;
    }
    return true;
}

bool parsePresenceLive(std::string_view p, std::string_view key, PresenceEvent* out,
                       std::string* reason, uint64_t* seq) {
    if (p.empty() || (p[0] != 'J' && p[0] != 'L' && p[0] != 'j' && p[0] != 'l')) {
        *reason = "unknown live message";
        return false;
    }
    out->type = (p[0] == 'J' || p[0] == 'j') ? PresenceEventType::kJoin : PresenceEventType::kLeave;
    bool numbered = p[0] == 'j' || p[0] == 'l';
    p.remove_prefix(1);
    size_t sp = p.find(' ');
    uint64_t n = 0;
    if (numbered) {
        if (sp == std::string_view::npos || !number(p.substr(0, sp), &n) || n == 0) {
            *reason = "malformed presence event";
            return false;
        }
        p.remove_prefix(sp + 1);
        sp = p.find(' ');
    }
    if (seq != nullptr) {
        *seq = n;
    }
    size_t len = 0;
    if (sp == std::string_view::npos || !number(p.substr(0, sp), &len) || len > p.size() - sp - 1) {
        *reason = "malformed presence event";
        return false;
    }
    try {
        out->channel.assign(key);
        out->id.assign(p.substr(sp + 1, len));
        out->info.assign(p.substr(sp + 1 + len));
    } catch (const std::bad_alloc&) {
        *reason = "out of worker memory";
        return false;
    }
    out->opts = kPresenceOptEvents;
    return true;
}

bool parsePresenceStats(const redisReply* r, PresenceStats* out, std::string* reason) {
    return replyArray(r, 4, reason) && counts(r, out, reason);
}

bool parsePresenceList(const redisReply* r, PresencePage* out, std::string* reason) {
    long long more = 0;
    if (!replyArray(r, 5, reason) || !counts(r, &out->stats, reason) ||
        !replyInt(r->element[4], &more) || (r->elements - 5) % 4 != 0) {
        if (reason->empty()) {
            *reason = "unexpected reply from Redis";
        }
        return false;
    }
    try {
        uint64_t lastSeq = 0;
        for (size_t i = 5; i + 4 <= r->elements; i += 4) {
            for (size_t j = 0; j < 4; j++) {
                if (!replyIsText(r->element[i + j])) {
                    *reason = "unexpected reply from Redis";
                    return false;
                }
            }
            PresenceMemberView v;
            v.id.assign(replyText(r->element[i]));
            if (!number(replyText(r->element[i + 1]), &lastSeq)) {
                *reason = "unexpected reply from Redis";
                return false;
            }
            // "instances:conns:joinedAtMs:opts"; empty: it left meanwhile
            std::string_view agg = replyText(r->element[i + 2]);
            uint64_t fields[4] = {0, 0, 0, 0};
            for (uint64_t& f : fields) {
                size_t colon = agg.find(':');
                if (!number(agg.substr(0, colon), &f)) {
                    break;
                }
                agg = colon == std::string_view::npos ? std::string_view() : agg.substr(colon + 1);
            }
            v.connections = fields[1];
            v.joinedAt = static_cast<int64_t>(fields[2]);
            v.leaving = fields[1] == 0;
            v.info.assign(replyText(r->element[i + 3]));
            out->members.push_back(std::move(v));
        }
        if (more != 0 && !out->members.empty()) {
            out->nextCursor = presenceListCursor(lastSeq);
        }
    } catch (const std::bad_alloc&) {
        out->members.clear();
        *reason = "out of worker memory";
        return false;
    }
    return true;
}

bool parsePresenceUser(const redisReply* r, PresenceUserState* out, std::string* reason) {
    if (!replyArray(r, 1, reason)) {
        return false;
    }
    for (size_t i = 0; i < r->elements; i++) {
        if (!replyIsText(r->element[i])) {
            *reason = "unexpected reply from Redis";
            return false;
        }
    }
    long long since = 0;
    out->online = r->elements > 1;
    if (out->online && number(replyText(r->element[0]), &since)) {
        out->onlineSince = since;
    }
    try {
        for (size_t i = 1; i < r->elements; i++) {
            out->channels.emplace_back(replyText(r->element[i]));
        }
    } catch (const std::bad_alloc&) {
        out->channels.clear();
        *reason = "out of worker memory";
        return false;
    }
    return true;
}

uint32_t presenceDigest(const std::vector<PresenceSnapshotMember>& members) {
    uint32_t d = 0;
    for (const PresenceSnapshotMember& m : members) {
        std::string text = m.id + ":" + std::to_string(m.connections);
        std::string hex = sha1Hex(text);
        uint32_t h = 0;
        (void)std::from_chars(hex.data(), hex.data() + 8, h, 16);
        d ^= h;
    }
    return d;
}

std::string presenceListCursor(uint64_t seq) {
    return "r" + std::to_string(seq);
}

bool parsePresenceListCursor(std::string_view s, uint64_t* seq) {
    if (s.size() < 2 || s[0] != 'r' || s.size() > 21) {
        return false;
    }
    return number(s.substr(1), seq);
}

}  // namespace pubsub::redis
