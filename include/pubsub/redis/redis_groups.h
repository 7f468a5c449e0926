#pragma once
// Channel-group limits (pubsub_group_max_*) in Redis locations: the group's
// keys, the Lua scripts over them and what their replies mean.
//
// A group's keys share the hash tag "{group:<G>}" (escaped like a channel's
// tag), so in a Redis Cluster they live in the group's slot, never in a
// channel's: a group script and a channel script are separate commands, and
// the checks are approximate under concurrency (docs/redis.md "Group
// limits").
//   <gtag>:channels  sorted set: channel id -> unix second it expires
//   <gtag>:subs      hash: instance id -> "count:valid-until" (unix seconds)
//   <gtag>:mem       hash: channel id -> "e:s,e:s,..." per stored message,
//                    oldest first (e: unix second it expires, 0 never;
//                    s: data + content type + event name bytes)
//   <gtag>:memz      sorted set: channel id -> its earliest nonzero e
//   <gtag>:memt      string: the sum of every s in <gtag>:mem
//   <gtag>:occ       sorted set: channel id -> unix second until which an
//                    instance said it has subscribers (indexed groups only,
//                    RedisStore::indexGroups; what lists occupied channels)
//   <gtag>:limits    hash: c, s, b -> the limits stored with the group
//                    (pubsub_group_location POST)
//
// Counting: a limit argument of -1 means "none of the location's own": the
// stored one applies, and the group is counted (channels, subscribers,
// sizes) even when none is stored.  0 means neither.

#include <hiredis/hiredis.h>

#include <string>
#include <string_view>
#include <vector>

#include "pubsub/redis/redis_proto.h"
#include "pubsub/store.h"

namespace pubsub::redis {

// "{group:<escaped group>}"
std::string groupTag(std::string_view group);
// "G/ID" -> G and ID; false for a key without a group (no '/', or an
// empty G), which no limit applies to (as with shared memory).
bool splitGroupKey(std::string_view key, std::string_view* group, std::string_view* id);

// check: KEYS[1]=gtag; ARGV channel id, max channels, max subscribers,
//   instance id, max bytes, new message bytes, buffer length, count ttl.
//   Each limit that is 0 is not checked.  When the subscriber and memory
//   checks pass, reserves one subscriber for the instance; when all pass
//   and the channel is new to the group, reserves it for 30 s.
//   -> {subscribers refused, channels refused, memory refused} (0/1 each)
const Script& groupCheckScript();
// update: KEYS[1]=gtag; ARGV channel id, seconds the channel lives (0:
//   forever), "1" to record the channel, sizes ("e:s,..." or "-": none).
//   -> 1
const Script& groupUpdateScript();
// subs: KEYS[1]=gtag; ARGV instance id, count, seconds valid, then channel
//   ids whose expiry moves to at least 120 s from now.  -> 1
const Script& groupSubsScript();
// delete: KEYS[1]=gtag; ARGV channel id.  -> 1
const Script& groupDeleteScript();

// info: KEYS[1]=gtag -> {channels, subscribers, messages, bytes, stored
//   max channels, max subscribers, max bytes}
const Script& groupInfoScript();
// limits: KEYS[1]=gtag; ARGV pairs of field (c, s, b) and value (0: removed).
//   -> 1
const Script& groupLimitsScript();
// channels: KEYS[1]=gtag -> the ids the group lists
const Script& groupChannelsScript();
bool parseGroupInfo(const redisReply* r, GroupInfo* out, std::string* reason);
// occupied: KEYS[1]=gtag; ARGV channel id, seconds the entry is valid.  -> 1
const Script& groupOccupiedScript();
// list: KEYS[1]=gtag; ARGV id prefix, max.  Drops expired entries.
//   -> {1 if more than max, id, ...}
const Script& groupListScript();
bool parseGroupList(const redisReply* r, std::vector<std::string>* ids, bool* truncated,
                    std::string* reason);

struct GroupVerdict {
    bool subscribers = false;  // refused: the group has its maximum
    bool channels = false;     // refused if the channel does not exist
    bool memory = false;
};
bool parseGroupVerdict(const redisReply* r, GroupVerdict* out, std::string* reason);

// The publish script's 6th element when asked for sizes ("B" flag): the
// channel's stored messages as "e:s,...".  False when absent or malformed.
bool publishedSizes(const redisReply* r, std::string* sizes);
// The delete script's 7th element: the channel was published to by a
// location with group limits.
bool deletedGroupFlag(const redisReply* r);

}  // namespace pubsub::redis
