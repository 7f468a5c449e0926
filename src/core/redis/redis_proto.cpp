#include "pubsub/redis/redis_proto.h"

#include <openssl/sha.h>

#include <charconv>
#include <new>

#include "pubsub/codec/hex.h"

namespace pubsub::redis {

extern const char* const kLuaInstanceCounts = R"LUA(
local function setcount(k, inst, c, valid, now)
  if c > 0 then
    redis.call('HSET', k, inst, string.format('%d:%d', c, now + tonumber(valid)))
    redis.call('EXPIRE', k, 120)
  else
    redis.call('HDEL', k, inst)
  end
end
local function sumcounts(k, now, inst)
  local all = redis.call('HGETALL', k)
  local total, mine = 0, 0
  for i = 1, #all, 2 do
    local c, e = string.match(all[i + 1], '^(%d+):(%d+)$')
    if c and tonumber(e) >= now then
      total = total + tonumber(c)
      if all[i] == inst then
        mine = tonumber(c)
      end
    else
      redis.call('HDEL', k, all[i])
    end
  end
  return total, mine
end
)LUA";

namespace {

constexpr std::string_view kTagPrefix = "{channel:";
constexpr std::string_view kPubsubSuffix = "}:ps";

// Shared by every script: expired messages at the head of the id list go,
// and a channel's subscriber count is the sum of live instances' counts.
const char* const kLuaCommon = R"LUA(
local function prune(tag)
  local ids = tag .. ':ids'
  for i = 1, 64 do
    local head = redis.call('LINDEX', ids, 0)
    if not head or redis.call('EXISTS', tag .. ':m:' .. head) == 1 then
      return
    end
    redis.call('LPOP', ids)
  end
end
local function subcount(tag, now)
  return (sumcounts(tag .. ':subs', now))
end
local function lastid(a, b)
  return (a or '0') .. ':' .. (b or '0')
end
-- a channel's info: {1, last id, messages, subscribers, last seen}, or nil
-- when Redis does not have the channel
local function chaninfo(tag)
  local now = tonumber(redis.call('TIME')[1])
  if redis.call('EXISTS', tag) == 0 then
    return nil
  end
  prune(tag)
  local h = redis.call('HMGET', tag, 'lt', 'lg', 'ls')
  return {1, lastid(h[1], h[2]), redis.call('LLEN', tag .. ':ids'), subcount(tag, now),
          tonumber(h[3]) or -1}
end
)LUA";

const char* const kLuaPublish = R"LUA(
local tag = KEYS[1]
local data, ct, ev = ARGV[1], ARGV[2], ARGV[3]
local origin = ARGV[8] or ''
local max = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1])
local h = redis.call('HMGET', tag, 'lt', 'lg', 'n', 'ls')
local lt = tonumber(h[1]) or 0
local lg = tonumber(h[2]) or 0
local t, g = now, 0
if lt >= now then
  t, g = lt, lg + 1
elseif lt == 0 then
  -- a channel Redis does not know (new, or lost with a restart): its tag
  -- starts at the microsecond, so that it follows any id handed out
  -- earlier in this second by a Redis that has since lost its data
  g = tonumber(clock[2])
end
local id = string.format('%d:%d', t, g)
local prev = string.format('%d:%d', lt, lg)
redis.call('HSET', tag, 'lt', string.format('%d', t), 'lg', string.format('%d', g),
           'n', string.format('%d', (tonumber(h[3]) or 0) + 1),
           'lp', string.format('%d', now))
local flags = ARGV[7] or ''
if string.find(flags, 'G', 1, true) then
  redis.call('HSET', tag, 'g', '1')  -- published with group limits
end
local ids = tag .. ':ids'
if max > 0 then
  local mk = tag .. ':m:' .. id
  redis.call('HSET', mk, 'p', prev, 'c', ct, 'e', ev, 'd', data)
  if origin ~= '' then
    redis.call('HSET', mk, 'o', origin)
  end
  if ttl > 0 then
    redis.call('EXPIRE', mk, ttl)
  end
  redis.call('RPUSH', ids, id)
  local len = redis.call('LLEN', ids)
  while len > max do
    local old = redis.call('LPOP', ids)
    redis.call('DEL', tag .. ':m:' .. old)
    len = len - 1
  end
else
  for _, old in ipairs(redis.call('LRANGE', ids, 0, -1)) do
    redis.call('DEL', tag .. ':m:' .. old)
  end
  redis.call('DEL', ids)
end
prune(tag)
if ttl > 0 then
  redis.call('EXPIRE', tag, ttl + 60)
  redis.call('EXPIRE', ids, ttl + 60)
else
  redis.call('PERSIST', tag)
  redis.call('PERSIST', ids)
end
-- 'M' without an origin; 'O' adds its length and puts it after the data
if origin == '' then
  redis.call(ARGV[6] == 'S' and 'SPUBLISH' or 'PUBLISH', tag .. ':ps',
             'M' .. id .. ' ' .. prev .. ' ' .. #ct .. ' ' .. #ev .. ' ' .. ct .. ev .. data)
else
  redis.call(ARGV[6] == 'S' and 'SPUBLISH' or 'PUBLISH', tag .. ':ps',
             'O' .. id .. ' ' .. prev .. ' ' .. #ct .. ' ' .. #ev .. ' ' .. #origin .. ' ' ..
             ct .. ev .. data .. origin)
end
local sizes = nil
if string.find(flags, 'B', 1, true) then
  -- each stored message's expiry and size, for the group's memory limit
  local parts = {}
  for _, mid in ipairs(redis.call('LRANGE', ids, 0, -1)) do
    local mk = tag .. ':m:' .. mid
    local left = redis.call('TTL', mk)
    if left ~= -2 then
      local size = redis.call('HSTRLEN', mk, 'd') + redis.call('HSTRLEN', mk, 'c') +
                   redis.call('HSTRLEN', mk, 'e')
      parts[#parts + 1] = string.format('%d:%d', left >= 0 and now + left or 0, size)
    end
  end
  sizes = table.concat(parts, ',')
end
return {id, prev, redis.call('LLEN', ids), subcount(tag, now), tonumber(h[4]) or -1, sizes}
)LUA";

const char* const kLuaFetch = R"LUA(
local tag = KEYS[1]
local h = redis.call('HMGET', tag, 'lt', 'lg', 'n')
local at, ag = -1, -1
if ARGV[1] ~= '' then
  local a, b = string.match(ARGV[1], '^(%d+):(%d+)$')
  at, ag = tonumber(a), tonumber(b)
end
local out = {redis.call('EXISTS', tag), lastid(h[1], h[2]), tonumber(h[3]) or 0, 0}
for _, id in ipairs(redis.call('LRANGE', tag .. ':ids', 0, -1)) do
  local m = redis.call('HMGET', tag .. ':m:' .. id, 'p', 'c', 'e', 'd', 'o')
  if m[1] then
    local a, b = string.match(id, '^(%d+):(%d+)$')
    a, b = tonumber(a), tonumber(b)
    if a > at or (a == at and b > ag) then
      out[#out + 1] = id
      out[#out + 1] = m[1]
      out[#out + 1] = m[2] or ''
      out[#out + 1] = m[3] or ''
      out[#out + 1] = m[4] or ''
      out[#out + 1] = m[5] or ''
    else
      out[4] = 1
    end
  end
end
-- the presence log: its newest number, then (asked with ARGV[2]) the
-- events numbered after ARGV[2]
local plog = {tonumber(redis.call('GET', tag .. ':pv')) or 0}
if ARGV[2] and ARGV[2] ~= '' then
  local from = tonumber(ARGV[2]) or 0
  for _, e in ipairs(redis.call('LRANGE', tag .. ':pl', 0, -1)) do
    local n = tonumber(string.match(e, '^[jl](%d+) '))
    if n and n > from then
      plog[#plog + 1] = e
    end
  end
end
out[#out + 1] = plog
return out
)LUA";

// The start of a script about one existing channel: {0} when there is
// none, else its chaninfo() in `out`.
const char* const kLuaChannelHead = R"LUA(
local tag = KEYS[1]
local out = chaninfo(tag)
if not out then
  return {0}
end
)LUA";

const char* const kLuaInfo = R"LUA(
out[#out + 1] = redis.call('ZCARD', tag .. ':pz')
return out
)LUA";

const char* const kLuaDelete = R"LUA(
local ids = tag .. ':ids'
out[#out + 1] = 0
out[#out + 1] = redis.call('HEXISTS', tag, 'g')
for _, id in ipairs(redis.call('LRANGE', ids, 0, -1)) do
  redis.call('DEL', tag .. ':m:' .. id)
end
redis.call('DEL', tag, ids, tag .. ':subs')
redis.call(ARGV[1] == 'S' and 'SPUBLISH' or 'PUBLISH', tag .. ':ps', 'D')
return out
)LUA";

const char* const kLuaSubs = R"LUA(
local tag = KEYS[1]
local now = tonumber(redis.call('TIME')[1])
local before = subcount(tag, now)
setcount(tag .. ':subs', ARGV[1], tonumber(ARGV[2]), ARGV[3], now)
local after = subcount(tag, now)
redis.call('HSET', tag, 'ls', string.format('%d', now))
local ttl = redis.call('TTL', tag)
if (ttl >= 0 and ttl < 120) or (ttl == -1 and redis.call('HEXISTS', tag, 'lt') == 0) then
  redis.call('EXPIRE', tag, 120)
end
return {before, after}
)LUA";

Script makeScript(const char* name, const char* body, const char* head = "") {
    return scriptFrom(name, std::string(kLuaInstanceCounts) + kLuaCommon + head + body);
}

bool idAt(const redisReply* r, MsgId* id) {
    return replyIsText(r) && parseId(replyText(r), id);
}

// {found, lastId, messages, subscribers, lastSeen}
bool parseInfoArray(const redisReply* r, size_t at, ChannelInfo* out, std::string* reason) {
    long long v[3];
    if (r->elements < at + 4 || !idAt(r->element[at], &out->lastId) ||
        !replyInt(r->element[at + 1], &v[0]) || !replyInt(r->element[at + 2], &v[1]) ||
        !replyInt(r->element[at + 3], &v[2]) || v[0] < 0 || v[1] < 0) {
        *reason = "unexpected reply from Redis";
        return false;
    }
    out->found = true;
    out->messages = static_cast<uint64_t>(v[0]);
    out->subscribers = static_cast<uint64_t>(v[1]);
    out->lastSeen = v[2];
    return true;
}

}  // namespace

std::string_view replyText(const redisReply* r) {
    return std::string_view(r->str, r->len);
}

bool replyIsText(const redisReply* r) {
    return r != nullptr && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

bool replyInt(const redisReply* r, long long* v) {
    if (r == nullptr) {
        return false;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        *v = r->integer;
        return true;
    }
    if (replyIsText(r)) {
        std::string_view s = replyText(r);
        auto res = std::from_chars(s.data(), s.data() + s.size(), *v);
        return res.ec == std::errc() && res.ptr == s.data() + s.size();
    }
    return false;
}

bool replyArray(const redisReply* r, size_t min, std::string* reason) {
    if (r == nullptr) {
        *reason = "no reply from Redis";
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        *reason = "Redis error: " + std::string(replyText(r));
        return false;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements < min) {
        *reason = "unexpected reply from Redis";
        return false;
    }
    return true;
}

std::string hashTag(std::string_view prefix, std::string_view text) {
    std::string out;
    out.reserve(prefix.size() + text.size() + 1);
    out += prefix;
    for (char c : text) {
        if (c == '}') {
            out += "%7D";
        } else if (c == '%') {
            out += "%25";
        } else {
            out += c;
        }
    }
    out += '}';
    return out;
}

std::string channelTag(std::string_view key) {
    return hashTag(kTagPrefix, key);
}

std::string pubsubName(std::string_view key) {
    return channelTag(key) + ":ps";
}

bool keyFromPubsubName(std::string_view name, std::string* key) {
    if (name.size() < kTagPrefix.size() + kPubsubSuffix.size() ||
        name.substr(0, kTagPrefix.size()) != kTagPrefix ||
        name.substr(name.size() - kPubsubSuffix.size()) != kPubsubSuffix) {
        return false;
    }
    std::string_view body =
        name.substr(kTagPrefix.size(), name.size() - kTagPrefix.size() - kPubsubSuffix.size());
    key->clear();
    for (size_t i = 0; i < body.size(); i++) {
        char c = body[i];
        if (c == '}') {
            return false;
        }
        if (c != '%') {
            key->push_back(c);
            continue;
        }
        std::string_view esc = body.substr(i, 3);
        if (esc == "%7D") {
            key->push_back('}');
        } else if (esc == "%25") {
            key->push_back('%');
        } else {
            return false;
        }
        i += 2;
    }
    return true;
}

Script scriptFrom(const char* name, std::string text) {
    Script s;
    s.name = name;
    s.text = std::move(text);
    s.sha = sha1Hex(s.text);
    return s;
}

std::string sha1Hex(std::string_view text) {
    unsigned char md[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(text.data()), text.size(), md);
    return toHex(md, SHA_DIGEST_LENGTH);
}

const Script& publishScript() {
    static const Script s = makeScript("publish", kLuaPublish);
    return s;
}

const Script& fetchScript() {
    static const Script s = makeScript("fetch", kLuaFetch);
    return s;
}

const Script& infoScript() {
    static const Script s = makeScript("info", kLuaInfo, kLuaChannelHead);
    return s;
}

const Script& deleteScript() {
    static const Script s = makeScript("delete", kLuaDelete, kLuaChannelHead);
    return s;
}

const Script& subsScript() {
    static const Script s = makeScript("subs", kLuaSubs);
    return s;
}

bool parseId(std::string_view s, MsgId* id) {
    size_t colon = s.find(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == s.size()) {
        return false;
    }
    int64_t t = 0;
    int32_t g = 0;
    auto r1 = std::from_chars(s.data(), s.data() + colon, t);
    auto r2 = std::from_chars(s.data() + colon + 1, s.data() + s.size(), g);
    if (r1.ec != std::errc() || r1.ptr != s.data() + colon || r2.ec != std::errc() ||
        r2.ptr != s.data() + s.size()) {
        return false;
    }
    id->time = t;
    id->tag = g;
    return true;
}

bool parseSnapshot(const redisReply* r, Snapshot* out, std::string* reason) {
    if (!replyArray(r, 4, reason)) {
        return false;
    }
    long long found = 0, published = 0, skipped = 0;
    // a trailing array is the presence log (older scripts had none)
    const redisReply* plog = r->element[r->elements - 1];
    bool hasLog = r->elements > 4 && plog->type == REDIS_REPLY_ARRAY;
    size_t end = hasLog ? r->elements - 1 : r->elements;
    if (!replyInt(r->element[0], &found) || !idAt(r->element[1], &out->lastId) ||
        !replyInt(r->element[2], &published) || !replyInt(r->element[3], &skipped) ||
        published < 0 || (end - 4) % 6 != 0) {
        *reason = "unexpected reply from Redis";
        return false;
    }
    out->found = found != 0;
    out->published = static_cast<uint64_t>(published);
    out->skipped = skipped != 0;
    out->messages.clear();
    out->presenceKnown = false;
    out->presenceSeq = 0;
    out->presenceLog.clear();
    if (hasLog) {
        long long seq = 0;
        if (plog->elements < 1 || !replyInt(plog->element[0], &seq) || seq < 0) {
            *reason = "unexpected reply from Redis";
            return false;
        }
        for (size_t i = 1; i < plog->elements; i++) {
            if (!replyIsText(plog->element[i])) {
                *reason = "unexpected reply from Redis";
                return false;
            }
        }
        out->presenceKnown = true;
        out->presenceSeq = static_cast<uint64_t>(seq);
    }
    try {
        if (hasLog) {
            for (size_t i = 1; i < plog->elements; i++) {
                out->presenceLog.emplace_back(replyText(plog->element[i]));
            }
        }
        out->messages.reserve((end - 4) / 6);
        for (size_t i = 4; i + 6 <= end; i += 6) {
            MsgId id, prev;
            for (size_t j = 0; j < 6; j++) {
                if (!replyIsText(r->element[i + j])) {
                    *reason = "unexpected reply from Redis";
                    return false;
                }
            }
            if (!idAt(r->element[i], &id) || !idAt(r->element[i + 1], &prev)) {
                *reason = "unexpected message id from Redis";
                return false;
            }
            if (!out->messages.empty() && !(out->messages.back()->id() < id)) {
                *reason = "message ids from Redis out of order";
                return false;
            }
            Message* m = Message::create(id, prev, replyText(r->element[i + 2]),
                                         replyText(r->element[i + 3]), replyText(r->element[i + 4]),
                                         replyText(r->element[i + 5]));
            if (m == nullptr) {
                *reason = "out of worker memory";
                return false;
            }
            out->messages.push_back(MessagePtr::adopt(m));
        }
    } catch (const std::bad_alloc&) {
        *reason = "out of worker memory";
        return false;
    }
    return true;
}

bool parseInfo(const redisReply* r, ChannelInfo* out, std::string* reason) {
    if (!replyArray(r, 1, reason)) {
        return false;
    }
    long long found = 0;
    if (!replyInt(r->element[0], &found)) {
        *reason = "unexpected reply from Redis";
        return false;
    }
    *out = ChannelInfo();
    if (found == 0) {
        return true;
    }
    if (!parseInfoArray(r, 1, out, reason)) {
        return false;
    }
    long long members = 0;
    if (r->elements > 5 && replyInt(r->element[5], &members) && members > 0) {
        out->presence = static_cast<uint64_t>(members);  // Redis presence members
    }
    return true;
}

bool parsePublish(const redisReply* r, PublishReply* out, std::string* reason) {
    if (!replyArray(r, 5, reason)) {
        return false;
    }
    MsgId prev;
    if (!idAt(r->element[0], &out->id) || !idAt(r->element[1], &prev)) {
        *reason = "unexpected message id from Redis";
        return false;
    }
    // {id, prev, messages, subscribers, lastSeen}: parsed as an info
    // array whose "last id" column is prev, then corrected
    if (!parseInfoArray(r, 1, &out->info, reason)) {
        return false;
    }
    out->info.lastId = out->id;
    return true;
}

bool parseLive(std::string_view p, Live* out, std::string* reason) {
    *out = Live();
    if (p == "D") {
        out->deleted = true;
        return true;
    }
    if (p.empty() || (p[0] != 'M' && p[0] != 'O')) {
        *reason = "unknown live message";
        return false;
    }
    bool hasOrigin = p[0] == 'O';
    p.remove_prefix(1);
    std::string_view fields[5];
    for (size_t i = 0; i < (hasOrigin ? 5u : 4u); i++) {
        std::string_view& f = fields[i];
        size_t sp = p.find(' ');
        if (sp == std::string_view::npos) {
            *reason = "truncated live message";
            return false;
        }
        f = p.substr(0, sp);
        p.remove_prefix(sp + 1);
    }
    MsgId id, prev;
    size_t ctLen = 0, evLen = 0, oLen = 0;
    auto num = [](std::string_view s, size_t* v) {
        auto r = std::from_chars(s.data(), s.data() + s.size(), *v);
        return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
    };
    if (!parseId(fields[0], &id) || !parseId(fields[1], &prev) || !num(fields[2], &ctLen) ||
        !num(fields[3], &evLen) || (hasOrigin && !num(fields[4], &oLen)) || ctLen > p.size() ||
        evLen > p.size() - ctLen || oLen > p.size() - ctLen - evLen) {
        *reason = "malformed live message";
        return false;
    }
    size_t dataLen = p.size() - ctLen - evLen - oLen;
    Message* m =
        Message::create(id, prev, p.substr(0, ctLen), p.substr(ctLen, evLen),
                        p.substr(ctLen + evLen, dataLen), p.substr(ctLen + evLen + dataLen));
    if (m == nullptr) {
        *reason = "out of worker memory";
        return false;
    }
    out->msg = MessagePtr::adopt(m);
    return true;
}

SnapshotStart startIn(const Snapshot& snap, const StartSpec& spec) {
    SnapshotStart pos;
    size_t size = snap.messages.size();
    pos.first = size;
    pos.cursor = snap.lastId;
    switch (spec.kind) {
        case StartSpec::kNewest:
            break;
        case StartSpec::kOldest:
            pos.first = 0;
            break;
        case StartSpec::kFromOldest: {
            uint64_t i = spec.n > 1 ? static_cast<uint64_t>(spec.n - 1) : 0;
            pos.first = i < size ? static_cast<size_t>(i) : size;
            break;
        }
        case StartSpec::kFromNewest: {
            uint64_t n = spec.n > 0 ? static_cast<uint64_t>(spec.n) : 0;
            if (n > 0) {
                pos.first = size > n ? static_cast<size_t>(size - n) : 0;
            }
            break;
        }
        case StartSpec::kAfter: {
            size_t i = 0;
            while (i < size && snap.messages[i]->id() <= spec.after) {
                i++;
            }
            pos.first = i;
            if (i == size) {
                pos.gap = size == 0 && spec.after < snap.lastId && snap.published > 0;
                if (spec.after > snap.lastId) {
                    pos.cursor = spec.after;  // a future id waits for newer messages
                }
            } else if (i == 0 && !snap.skipped && !snap.messages[0]->prev().isNull() &&
                       spec.after < snap.messages[0]->prev()) {
                pos.gap = true;
            }
            break;
        }
    }
    if (pos.first < size) {
        pos.cursor = snap.messages[pos.first]->prev();
        if (spec.kind == StartSpec::kAfter && spec.after > pos.cursor) {
            pos.cursor = spec.after;
        }
    }
    return pos;
}

}  // namespace pubsub::redis
