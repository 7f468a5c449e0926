#pragma once
// The Redis engine's protocol: key names, the Lua scripts and what their
// replies and the live PUBLISH payloads mean, as plain functions over
// hiredis reply trees (no connection, no nginx), so they can be tested
// with hand-built replies.
//
// Keys of one channel share the hash tag "{channel:<group/id>}" (a `}` or
// `%` in the key is percent-escaped), so they live in one cluster slot:
//   <tag>          hash: lt, lg (last id), n (published), lp, ls (seen), g (limited)
//   <tag>:ids      list of stored message ids, oldest first
//   <tag>:m:<id>   hash: p (prev id), c (content type), e (event), d (data)
//   <tag>:subs     hash: instance id -> "count:expires" (unix seconds)
//   <tag>:ps       the pubsub channel ("M..." messages, "D" deleted)

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/memory/shm_store.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"
#include "pubsub/store.h"
#include "pubsub/store_model.h"

namespace pubsub::redis {

// "<prefix><text>}" with `}` and `%` of the text percent-escaped (so that
// the text never ends the hash tag early).
std::string hashTag(std::string_view prefix, std::string_view text);
// "{channel:<escaped key>}"
std::string channelTag(std::string_view key);
// The pubsub channel of a key: channelTag(key) + ":ps".
std::string pubsubName(std::string_view key);
// The channel key back from a pubsub channel name; false if it is not one.
bool keyFromPubsubName(std::string_view name, std::string* key);

struct Script {
    const char* name;
    std::string text;
    std::string sha;  // hex SHA1 of text (what EVALSHA takes)
};

// publish and delete send the live payload with SPUBLISH when their last
// ARGV is "S" (sharded pub/sub in a cluster), else with PUBLISH.
// publish: KEYS[1]=tag; ARGV data, content type, event, max messages, ttl, "S"|"",
//   optional flags: "G" marks the channel as limited (field g), "B" adds the
//   stored messages' sizes (redis_groups.h).
//   -> {id, prev, messages, subscribers, lastSeen[, sizes]}
const Script& publishScript();
// fetch: KEYS[1]=tag; ARGV after id ("" for everything stored).
//   -> {found, lastId, published, skipped, id1, prev1, ct1, ev1, data1, ...}
const Script& fetchScript();
// info: KEYS[1]=tag -> {found, lastId, messages, subscribers, lastSeen, presence members}
const Script& infoScript();
// delete: KEYS[1]=tag; ARGV "S"|"" -> like info (found 0: nothing deleted), then 0 and
//   whether field g was set; publishes "D".
const Script& deleteScript();
// subs: KEYS[1]=tag; ARGV instance id, count, seconds to live -> 1
const Script& subsScript();

// Lua that the channel and group scripts start with, over a hash of
// instance id -> "count:valid-until" (<tag>:subs, <gtag>:subs):
//   setcount(k, inst, c, valid, now): records instance inst's count c for
//     `valid` more seconds (a number or its text) and keeps the hash
//     120 s; a count of 0 removes the instance.
//   sumcounts(k, now, inst) -> the sum of the live counts, and inst's
//     (0 when it has none or inst is nil); expired entries are removed.
extern const char* const kLuaInstanceCounts;

std::string sha1Hex(std::string_view text);
// A script of `text` with its SHA1.
Script scriptFrom(const char* name, std::string text);

// What a channel holds (the fetch script's reply).
struct Snapshot {
    bool found = false;
    MsgId lastId;
    uint64_t published = 0;
    bool skipped = false;              // stored messages at or before the `after` id exist
    std::vector<MessagePtr> messages;  // ascending ids
    // The channel's presence log (redis_presence.h): its newest number
    // when it was read (0: none yet), and the numbered events after the
    // number the fetch asked from, oldest first.
    bool presenceKnown = false;
    uint64_t presenceSeq = 0;
    std::vector<std::string> presenceLog;
};

// Each parser returns false, with a reason, for a reply it cannot read
// (error replies included: the reason is the error's text).
bool parseSnapshot(const redisReply* r, Snapshot* out, std::string* reason);
bool parseInfo(const redisReply* r, ChannelInfo* out, std::string* reason);
bool parsePublish(const redisReply* r, PublishReply* out, std::string* reason);

// A live message from the channel's pubsub channel.
struct Live {
    bool deleted = false;
    MessagePtr msg;
};
bool parseLive(std::string_view payload, Live* out, std::string* reason);

// Where a subscriber starts in a snapshot (as ShmStore::start does in shared
// memory): `first` indexes snap.messages (== size(): nothing owed yet).
struct SnapshotStart {
    size_t first = 0;
    MsgId cursor;
    bool gap = false;
};
SnapshotStart startIn(const Snapshot& snap, const StartSpec& spec);

// Reply helpers.  replyInt() takes an integer or a decimal string;
// replyArray() fails, with a reason, unless `r` is an array of at least
// `min` elements (an error reply's reason is its text).
std::string_view replyText(const redisReply* r);
bool replyIsText(const redisReply* r);
bool replyInt(const redisReply* r, long long* v);
bool replyArray(const redisReply* r, size_t min, std::string* reason);

// Parses "time:tag" as the scripts write it; false otherwise.
bool parseId(std::string_view s, MsgId* id);

}  // namespace pubsub::redis
