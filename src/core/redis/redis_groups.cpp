#include "pubsub/redis/redis_groups.h"

#include <iterator>

namespace pubsub::redis {

namespace {

// Shared by the group scripts.  memprune() forgets the sizes of messages
// that expired (each channel is looked at once its earliest message is
// due); memset() replaces a channel's sizes and keeps the total exact.
const char* const kLuaGroupCommon = R"LUA(
local FOREVER = 1000000000000
local function fmt(n)
  return string.format('%d', n)
end
local function memset(g, ch, sizes)
  local h, z, t = g .. ':mem', g .. ':memz', g .. ':memt'
  local old = 0
  for _, s in string.gmatch(redis.call('HGET', h, ch) or '', '(%d+):(%d+)') do
    old = old + tonumber(s)
  end
  local new, low = 0, nil
  for e, s in string.gmatch(sizes, '(%d+):(%d+)') do
    new = new + tonumber(s)
    e = tonumber(e)
    if e ~= 0 and (not low or e < low) then
      low = e
    end
  end
  if sizes == '' then
    redis.call('HDEL', h, ch)
  else
    redis.call('HSET', h, ch, sizes)
  end
  if low then
    redis.call('ZADD', z, fmt(low), ch)
  else
    redis.call('ZREM', z, ch)
  end
  if new ~= old then
    if redis.call('INCRBY', t, new - old) <= 0 then
      redis.call('DEL', t)
    end
  end
end
local function memprune(g, now)
  local h = g .. ':mem'
  for _, ch in ipairs(redis.call('ZRANGEBYSCORE', g .. ':memz', '-inf', now, 'LIMIT', 0, 512)) do
    local keep = {}
    for e, s in string.gmatch(redis.call('HGET', h, ch) or '', '(%d+):(%d+)') do
      local te = tonumber(e)
      if te == 0 or te > now then
        keep[#keep + 1] = e .. ':' .. s
      end
    end
    memset(g, ch, table.concat(keep, ','))
  end
end
)LUA";

const char* const kLuaGroupCheck = R"LUA(
local g, ch = KEYS[1], ARGV[1]
local maxc, maxs, inst = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local maxb, size, maxm = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = tonumber(redis.call('TIME')[1])
-- a limit of -1: none of the location's own, the group's stored one applies
-- (and the group is counted even when it has none)
local countc, counts = maxc ~= 0, maxs ~= 0
if maxc < 0 or maxs < 0 or maxb < 0 then
  local lim = redis.call('HMGET', g .. ':limits', 'c', 's', 'b')
  if maxc < 0 then maxc = tonumber(lim[1]) or 0 end
  if maxs < 0 then maxs = tonumber(lim[2]) or 0 end
  if maxb < 0 then maxb = tonumber(lim[3]) or 0 end
end
local sv, cv, mv = 0, 0, 0
local sk, mine = g .. ':subs', 0
if counts then
  local total
  total, mine = sumcounts(sk, now, inst)
  if maxs > 0 and total >= maxs then
    sv = 1
  end
end
if maxb > 0 and size > 0 then
  memprune(g, now)
  local sizes = {}
  for _, s in string.gmatch(redis.call('HGET', g .. ':mem', ch) or '', '(%d+):(%d+)') do
    sizes[#sizes + 1] = tonumber(s)
  end
  -- what the new message pushes out of the channel's buffer does not count
  local out = 0
  if maxm > 0 and #sizes >= maxm then
    for i = 1, #sizes - maxm + 1 do
      out = out + sizes[i]
    end
  end
  local total = tonumber(redis.call('GET', g .. ':memt') or '0')
  if total - out + size > maxb then
    mv = 1
  end
end
local ck = g .. ':channels'
if countc then
  redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. now)
  if maxc > 0 and not redis.call('ZSCORE', ck, ch) and redis.call('ZCARD', ck) >= maxc then
    cv = 1
  end
end
if counts and sv == 0 and mv == 0 then
  setcount(sk, inst, mine + 1, ARGV[8], now)
end
if countc and sv == 0 and mv == 0 and cv == 0 and not redis.call('ZSCORE', ck, ch) then
  redis.call('ZADD', ck, fmt(now + 30), ch)
end
return {sv, cv, mv}
)LUA";

const char* const kLuaGroupUpdate = R"LUA(
local g, ch = KEYS[1], ARGV[1]
local now = tonumber(redis.call('TIME')[1])
local life = tonumber(ARGV[2])
if ARGV[3] == '1' then
  local ck = g .. ':channels'
  redis.call('ZADD', ck, fmt(life > 0 and now + life or FOREVER), ch)
end
if ARGV[4] ~= '-' then
  memprune(g, now)
  memset(g, ch, ARGV[4])
end
return 1
)LUA";

const char* const kLuaGroupSubs = R"LUA(
local g = KEYS[1]
local now = tonumber(redis.call('TIME')[1])
setcount(g .. ':subs', ARGV[1], tonumber(ARGV[2]), ARGV[3], now)
local ck = g .. ':channels'
for i = 4, #ARGV do
  local old = tonumber(redis.call('ZSCORE', ck, ARGV[i]) or '0')
  if old < now + 120 then
    redis.call('ZADD', ck, fmt(now + 120), ARGV[i])
  end
end
return 1
)LUA";

const char* const kLuaGroupDelete = R"LUA(
local g, ch = KEYS[1], ARGV[1]
redis.call('ZREM', g .. ':channels', ch)
memset(g, ch, '')
return 1
)LUA";

// the group's counts and stored limits:
// {channels, subscribers, messages, bytes, max c, max s, max b}
const char* const kLuaGroupInfo = R"LUA(
local g = KEYS[1]
local now = tonumber(redis.call('TIME')[1])
local ck = g .. ':channels'
redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. now)
local subs = sumcounts(g .. ':subs', now, '')
memprune(g, now)
local messages = 0
for _, v in ipairs(redis.call('HVALS', g .. ':mem')) do
  for _ in string.gmatch(v, '(%d+):(%d+)') do
    messages = messages + 1
  end
end
local lim = redis.call('HMGET', g .. ':limits', 'c', 's', 'b')
return {redis.call('ZCARD', ck), subs, messages,
        tonumber(redis.call('GET', g .. ':memt') or '0'),
        tonumber(lim[1]) or 0, tonumber(lim[2]) or 0, tonumber(lim[3]) or 0}
)LUA";

// limits: ARGV pairs field ("c", "s", "b"), value (0 removes it)
const char* const kLuaGroupLimits = R"LUA(
local k = KEYS[1] .. ':limits'
for i = 1, #ARGV, 2 do
  if tonumber(ARGV[i + 1]) > 0 then
    redis.call('HSET', k, ARGV[i], ARGV[i + 1])
  else
    redis.call('HDEL', k, ARGV[i])
  end
end
return 1
)LUA";

// the group's channel ids (those its counting locations recorded)
const char* const kLuaGroupChannels = R"LUA(
local ck = KEYS[1] .. ':channels'
redis.call('ZREMRANGEBYSCORE', ck, '-inf', '(' .. tonumber(redis.call('TIME')[1]))
return redis.call('ZRANGE', ck, 0, -1)
)LUA";

const char* const kLuaGroupOccupied = R"LUA(
local k = KEYS[1] .. ':occ'
local now = tonumber(redis.call('TIME')[1])
local ttl = tonumber(ARGV[2])
redis.call('ZADD', k, now + ttl, ARGV[1])
redis.call('EXPIRE', k, ttl + 120)
return 1
)LUA";

const char* const kLuaGroupList = R"LUA(
local k = KEYS[1] .. ':occ'
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', k, '-inf', '(' .. now)
local prefix, max = ARGV[1], tonumber(ARGV[2])
local out = {0}
for _, id in ipairs(redis.call('ZRANGE', k, 0, -1)) do
  if string.sub(id, 1, #prefix) == prefix then
    if #out > max then
      out[1] = 1
      break
    end
    out[#out + 1] = id
  end
end
return out
)LUA";

Script makeGroupScript(const char* name, const char* body) {
    return scriptFrom(name, std::string(kLuaInstanceCounts) + kLuaGroupCommon + body);
}

bool flagAt(const redisReply* r, size_t i, bool* v) {
    if (r->element[i] == nullptr || r->element[i]->type != REDIS_REPLY_INTEGER) {
        return false;
    }
    *v = r->element[i]->integer != 0;
    return true;
}

}  // namespace

std::string groupTag(std::string_view group) {
    return hashTag("{group:", group);
}

bool splitGroupKey(std::string_view key, std::string_view* group, std::string_view* id) {
    size_t slash = key.find('/');
    if (slash == std::string_view::npos || slash == 0) {
        return false;
    }
    *group = key.substr(0, slash);
    *id = key.substr(slash + 1);
    return true;
}

const Script& groupCheckScript() {
    static const Script s = makeGroupScript("group check", kLuaGroupCheck);
    return s;
}

const Script& groupUpdateScript() {
    static const Script s = makeGroupScript("group update", kLuaGroupUpdate);
    return s;
}

const Script& groupSubsScript() {
    static const Script s = makeGroupScript("group subs", kLuaGroupSubs);
    return s;
}

const Script& groupDeleteScript() {
    static const Script s = makeGroupScript("group delete", kLuaGroupDelete);
    return s;
}

const Script& groupInfoScript() {
    static const Script s = makeGroupScript("group info", kLuaGroupInfo);
    return s;
}

const Script& groupLimitsScript() {
    static const Script s = makeGroupScript("group limits", kLuaGroupLimits);
    return s;
}

const Script& groupChannelsScript() {
    static const Script s = makeGroupScript("group channels", kLuaGroupChannels);
    return s;
}

bool parseGroupInfo(const redisReply* r, GroupInfo* out, std::string* reason) {
    *out = GroupInfo();
    if (r == nullptr) {
        *reason = "no reply from Redis";
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        *reason = "Redis error: " + std::string(r->str, r->len);
        return false;
    }
    uint64_t* fields[] = {
        &out->channels,           &out->subscribers,           &out->messages,       &out->bytes,
        &out->limits.maxChannels, &out->limits.maxSubscribers, &out->limits.maxBytes};
    if (r->type != REDIS_REPLY_ARRAY || r->elements != std::size(fields)) {
        *reason = "unexpected reply from Redis";
        return false;
    }
    for (size_t i = 0; i < std::size(fields); i++) {
        const redisReply* e = r->element[i];
        if (e == nullptr || e->type != REDIS_REPLY_INTEGER || e->integer < 0) {
            *out = GroupInfo();
            *reason = "unexpected reply from Redis";
            return false;
        }
        *fields[i] = static_cast<uint64_t>(e->integer);
        if (e->integer != 0) {
            out->found = true;
        }
    }
    return true;
}

const Script& groupOccupiedScript() {
    static const Script s = makeGroupScript("group occupied", kLuaGroupOccupied);
    return s;
}

const Script& groupListScript() {
    static const Script s = makeGroupScript("group list", kLuaGroupList);
    return s;
}

bool parseGroupList(const redisReply* r, std::vector<std::string>* ids, bool* truncated,
                    std::string* reason) {
    ids->clear();
    *truncated = false;
    if (!replyArray(r, 1, reason)) {
        return false;
    }
    long long t = 0;
    if (!replyInt(r->element[0], &t)) {
        *reason = "unexpected reply to the group list script";
        return false;
    }
    *truncated = t != 0;
    for (size_t i = 1; i < r->elements; i++) {
        if (!replyIsText(r->element[i])) {
            *reason = "unexpected reply to the group list script";
            return false;
        }
        ids->emplace_back(replyText(r->element[i]));
    }
    return true;
}

bool parseGroupVerdict(const redisReply* r, GroupVerdict* out, std::string* reason) {
    *out = GroupVerdict();
    if (r == nullptr) {
        *reason = "no reply from Redis";
        return false;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        *reason = "Redis error: " + std::string(r->str, r->len);
        return false;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || !flagAt(r, 0, &out->subscribers) ||
        !flagAt(r, 1, &out->channels) || !flagAt(r, 2, &out->memory)) {
        *out = GroupVerdict();
        *reason = "unexpected reply from Redis";
        return false;
    }
    return true;
}

bool publishedSizes(const redisReply* r, std::string* sizes) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 6) {
        return false;
    }
    const redisReply* e = r->element[5];
    if (e == nullptr || e->type != REDIS_REPLY_STRING) {
        return false;
    }
    std::string_view s(e->str, e->len);
    // "e:s,e:s,...": digits, one ':' per pair, ',' between pairs
    bool colon = false;
    size_t digits = 0;
    for (char c : s) {
        if (c >= '0' && c <= '9') {
            digits++;
        } else if (c == ':' && !colon && digits > 0) {
            colon = true;
            digits = 0;
        } else if (c == ',' && colon && digits > 0) {
            colon = false;
            digits = 0;
        } else {
            return false;
        }
    }
    if (!s.empty() && !(colon && digits > 0)) {
        return false;
    }
    sizes->assign(s);
    return true;
}

bool deletedGroupFlag(const redisReply* r) {
    if (r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements < 7) {
        return false;
    }
    const redisReply* e = r->element[6];
    return e != nullptr && e->type == REDIS_REPLY_INTEGER && e->integer != 0;
}

}  // namespace pubsub::redis
