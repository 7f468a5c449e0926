#pragma once
// Presence in Redis mode: keys, Lua scripts and reply parsing (no
// connection, no nginx).  See docs/redis.md "Presence".
//
// Every nginx instance (one shared-memory zone, named by a random instance
// id) keeps its own part of each channel up to date in Redis; the scripts
// merge the parts and make the cluster-wide events, so that each join,
// leave, online and offline happens once, made by the one script run that
// changed it.  Keys of a channel share its hash tag ("{channel:<key>}",
// redis_proto.h) and so its cluster slot:
//   <tag>:pi          hash: instance -> "snapVer:countVer:conns:anon:validUntilMs"
//   <tag>:pm:<inst>   hash: member id -> "conns:ver" (this instance's part;
//                     conns -1: gone at ver, until the next snapshot)
//   <tag>:pu          hash: member id -> "instances:conns:joinedAtMs:opts"
//   <tag>:pz          sorted set: member id by join sequence (the API's order)
//   <tag>:pf          hash: member id -> info JSON
//   <tag>:pq          the join sequence counter
// Join and leave go to the channel's subscribers as "J"/"L" payloads on
// <tag>:ps (next to "M" messages), when the member's options ask for it.
// A user's channels (for ?user= and online/offline) are in
//   {user:<id>}       hash: channel key -> "1";  {user:<id>}:s  online since (ms)
// and the instances with their channels, for the sweep that removes the
// members of an instance that died, in
//   {pubsub:presence}:instances       sorted set: instance -> valid until (ms)
//   {pubsub:presence:<inst>}:channels set of channel keys

#include <hiredis/hiredis.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/memory/presence.h"
#include "pubsub/redis/redis_proto.h"

namespace pubsub::redis {

// The ARGV "S" of scripts that PUBLISH: sharded pub/sub.
// pupdate: KEYS[1]=tag; ARGV instance, "d"|"s"|"b", version, validMs, conns,
//   anon, "S"|"", then for "d"eltas id, conns, info, opts, version per
//   changed member (oldest first; `version` and the counts are the newest
//   delta's), for a "s"napshot id, conns, info, opts of every member of
//   the instance, for a "b"eat (a refresh) the digest of the instance's
//   part.  -> {events, resync}: 1 when a beat's digest differs from
//   Redis' (send the snapshot).
const Script& presenceUpdateScript();
// preap: KEYS[1]=tag; ARGV "S"|"".  Removes the parts of instances whose
// validity passed.  -> {events}
const Script& presenceReapScript();
// pstats: KEYS[1]=tag; ARGV "S"|"".  -> {events, members, conns, anon}
const Script& presenceStatsScript();
// plist: KEYS[1]=tag; ARGV "S"|"", after sequence ("" first), limit.
//   -> {events, members, conns, anon, more, id, seq, "inst:conns:joined:opts", info, ...}
const Script& presenceListScript();
// puser: KEYS[1]=user key; ARGV "+"|"-", channel key.  -> 1 when the user
// came online ("+") / went offline ("-"), else 0.
const Script& presenceUserScript();
// puserget: KEYS[1]=user key.  -> {since ms or "", channel key, ...}
const Script& presenceUserGetScript();
// pbeat: KEYS[1]=instances key; ARGV instance, validMs, graceMs, max.
// -> dead instances (their validity passed more than graceMs ago), `max`
// at most.
const Script& presenceBeatScript();
// pchans: KEYS[1]=an instance's channels key; ARGV keepMs, "replace"|"add",
// channel keys...  -> 1
const Script& presenceChannelsScript();

std::string userKey(std::string_view id);  // "{user:<escaped id>}"
std::string instancesKey();                // "{pubsub:presence}:instances"
std::string instanceChannelsKey(std::string_view instance);

// Events in a presence script's reply: element 0, a flat array of
// kind ("J"|"L"), id, info, opts.
bool parsePresenceEvents(const redisReply* r, std::string_view key, PresenceEvents* out,
                         std::string* reason);

// A live join or leave: "J"/"L" then "<idLen> <id><info>", or numbered,
// "j"/"l" then "<seq> <idLen> <id><info>" (`seq`: its number, 0 for an
// unnumbered one).  The presence log holds the numbered form.
bool parsePresenceLive(std::string_view payload, std::string_view key, PresenceEvent* out,
                       std::string* reason, uint64_t* seq = nullptr);

// pstats / plist replies (events are read by parsePresenceEvents).
bool parsePresenceStats(const redisReply* r, PresenceStats* out, std::string* reason);
bool parsePresenceList(const redisReply* r, PresencePage* out, std::string* reason);
bool parsePresenceUser(const redisReply* r, PresenceUserState* out, std::string* reason);

// The digest a beat carries: the XOR over the members of the first 32 bits
// of SHA1("<id>:<connections>"), as the scripts keep it.
uint32_t presenceDigest(const std::vector<PresenceSnapshotMember>& members);

// Cursors of the Redis presence API: "r<sequence>".
std::string presenceListCursor(uint64_t seq);
bool parsePresenceListCursor(std::string_view s, uint64_t* seq);

}  // namespace pubsub::redis
