// Replies from Redis: bytes are turned into reply trees by hiredis' own
// RESP reader (as the engine's connection does), then given to every reply
// parser of the Redis engine (snapshots, channel info, publish results, group
// verdicts and sizes), and
// the raw bytes are also parsed as a live pub/sub payload (messages and
// presence events). A reply the
// parsers accept must satisfy what the engine relies on: ids ascending in a
// snapshot, a start position inside it.
#include <hiredis/hiredis.h>

#include <string>

#include "fuzz_util.h"
#include "pubsub/redis/redis_cluster.h"
#include "pubsub/redis/redis_groups.h"
#include "pubsub/redis/redis_presence.h"
#include "pubsub/redis/redis_proto.h"

using namespace pubsub;
using pubsub::fuzz::check;

namespace {

void checkPresence(const redisReply* r) {
    std::string reason;
    PresenceEvents evs;
    if (redis::parsePresenceEvents(r, "g/a", &evs, &reason)) {
        for (const PresenceEvent& ev : evs) {
            check(ev.type == PresenceEventType::kJoin || ev.type == PresenceEventType::kLeave,
                  "scripts make join and leave only");
        }
    }
    PresenceStats st;
    (void)redis::parsePresenceStats(r, &st, &reason);
    PresencePage page;
    if (redis::parsePresenceList(r, &page, &reason)) {
        uint64_t seq = 0;
        check(page.nextCursor.empty() || redis::parsePresenceListCursor(page.nextCursor, &seq),
              "a next cursor the API takes back");
    }
    PresenceUserState user;
    if (redis::parsePresenceUser(r, &user, &reason)) {
        check(user.online == !user.channels.empty(), "online means some channel");
    }
}

void checkReply(const redisReply* r) {
    std::string reason;
    checkPresence(r);

    redis::Snapshot snap;
    if (redis::parseSnapshot(r, &snap, &reason)) {
        for (size_t i = 1; i < snap.messages.size(); i++) {
            check(snap.messages[i - 1]->id() < snap.messages[i]->id(), "snapshot ids ascend");
        }
        for (int k = 0; k < 5; k++) {
            StartSpec spec;
            spec.kind = static_cast<StartSpec::Kind>(k);
            spec.n = 2;
            spec.after = snap.messages.empty() ? MsgId{} : snap.messages.front()->id();
            redis::SnapshotStart st = redis::startIn(snap, spec);
            check(st.first <= snap.messages.size(), "start inside the snapshot");
        }
    } else {
        check(!reason.empty(), "a refused snapshot says why");
    }

    ChannelInfo info;
    reason.clear();
    if (!redis::parseInfo(r, &info, &reason)) {
        check(!reason.empty(), "a refused info reply says why");
    }

    PublishReply pub;
    reason.clear();
    if (!redis::parsePublish(r, &pub, &reason)) {
        check(!reason.empty(), "a refused publish reply says why");
    }

    redis::GroupVerdict verdict;
    reason.clear();
    if (!redis::parseGroupVerdict(r, &verdict, &reason)) {
        check(!reason.empty() && !verdict.subscribers && !verdict.channels && !verdict.memory,
              "a refused group verdict says why and refuses nothing");
    }
    std::string sizes;
    if (redis::publishedSizes(r, &sizes)) {
        check(sizes.find_first_not_of("0123456789:,") == std::string::npos,
              "published sizes are digits, colons and commas");
    }
    (void)redis::deletedGroupFlag(r);

    std::vector<redis::SlotRange> ranges;
    reason.clear();
    if (redis::parseClusterSlots(r, &ranges, &reason)) {
        check(!ranges.empty(), "a slot map has masters");
        for (const redis::SlotRange& sr : ranges) {
            check(sr.first <= sr.last && sr.last < redis::kClusterSlots, "slot range in bounds");
            check(sr.port >= 1 && sr.port <= 65535 && !sr.host.empty(), "a usable node address");
        }
    } else {
        check(!reason.empty() && ranges.empty(), "a refused slot map says why, has no ranges");
    }

    redis::Redirect rd = redis::parseRedirect(r);
    if (rd.kind != redis::Redirect::kNone) {
        check(rd.slot >= 0 && rd.slot < redis::kClusterSlots, "redirect slot in bounds");
        check(rd.port >= 1 && rd.port <= 65535 && !rd.host.empty(), "a usable redirect target");
    }
}

// hiredis 0.14's reader allocates a multi-bulk reply's declared element
// count up front (it has no limit on it before hiredis 1.0): "*795683054"
// asks for 6 GB. Redis is a trusted peer, and that is hiredis' code, not
// ours: such inputs are left out so that the run exercises our parsers.
bool declaresHugeArray(std::string_view b) {
    for (size_t i = 0; i < b.size(); i++) {
        if (b[i] != '*' && b[i] != '$') {
            continue;
        }
        uint64_t n = 0;
        size_t j = i + 1;
        while (j < b.size() && b[j] >= '0' && b[j] <= '9' && n < 100000000) {
            n = n * 10 + static_cast<uint64_t>(b[j] - '0');
            j++;
        }
        if (n > 100000) {
            return true;
        }
    }
    return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string_view bytes(reinterpret_cast<const char*>(data), size);

    redis::Live live;
    std::string reason;
    if (redis::parseLive(bytes, &live, &reason)) {
        check(live.deleted || live.msg, "a live message or a delete");
    }
    PresenceEvent pev;
    if (redis::parsePresenceLive(bytes, "g/a", &pev, &reason)) {
        check(pev.id.size() < bytes.size(), "the id is inside the payload");
    }

    check(redis::keySlot(bytes) < redis::kClusterSlots, "key slot in bounds");

    if (declaresHugeArray(bytes)) {
        return 0;
    }

    redisReader* reader = redisReaderCreate();
    if (reader == nullptr) {
        return 0;
    }
    if (redisReaderFeed(reader, reinterpret_cast<const char*>(data), size) == REDIS_OK) {
        for (int n = 0; n < 64; n++) {
            void* reply = nullptr;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK || reply == nullptr) {
                break;
            }
            checkReply(static_cast<redisReply*>(reply));
            freeReplyObject(reply);
        }
    }
    redisReaderFree(reader);
    return 0;
}
