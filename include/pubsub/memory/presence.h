#pragma once
// Presence: who is in each channel, in a shared-memory zone.
//
// Same rules as ShmStore: everything lives in memory from a ShmAllocator,
// holds only plain data and pointers into that memory, and the caller holds
// the zone's lock around every call (and around any use of a pointer it
// returns).
//
// Model.  A connection (one subscriber request in one channel) belongs to a
// worker slot.  Connections with a presence id make that id a member of the
// channel; one member may have many connections, on any worker.  Connections
// without an id are anonymous: only counted.  A member whose last connection
// goes becomes "leaving" for the connection's leave delay; a connection of
// the same id within the delay cancels the leave (no leave/join pair).  When
// the delay passes, expire() removes the member and produces `leave` (and
// `offline` when that was the user's last channel).  A user is online while
// it is a member (joined or leaving) of at least one channel.
//
// Events are returned in a vector the caller handles after unlocking.  Join
// and leave of members whose options ask for it (kOptEvents) are also
// written to a ring in the zone that every worker reads, so that each can
// hand them to its own subscribers of the channel.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/memory/shm_store.h"

namespace pubsub {

// kInfoRequest is no presence event: the ring also carries
// pubsub_subscriber_info's question to every worker's subscribers of a
// channel (`id` is the reply key; see signal()).
enum class PresenceEventType : uint8_t {
    kJoin = 0,
    kLeave = 1,
    kOnline = 2,
    kOffline = 3,
    kInfoRequest = 4,
};

const char* presenceEventName(PresenceEventType t);  // "join", "leave", ...

struct PresenceEvent {
    PresenceEventType type = PresenceEventType::kJoin;
    std::string channel;  // channel key; empty for online / offline
    std::string id;       // presence id
    std::string info;     // raw JSON, may be empty
    uint32_t opts = 0;    // the member's options when the event happened
};

// Member options (set by the connection that joined last).
constexpr uint32_t kPresenceOptEvents = 1;   // deliver join/leave to subscribers
constexpr uint32_t kPresenceOptWebhook = 2;  // join/leave go to a Pusher webhook
constexpr uint32_t kPresenceRedisShift = 2;  // bits 2..7: Redis upstream index + 1
constexpr uint32_t kPresenceRedisMask = 0x3f;
constexpr uint32_t kPresenceHookShift = 8;  // bits 8..: hook index + 1 (0: none)
inline uint32_t presenceHookIndex(uint32_t opts) {
    return opts >> kPresenceHookShift;
}
// 0: the channel's presence is this instance's only (memory store); else the
// index + 1 of the Redis upstream that holds it cluster-wide.
inline uint32_t presenceRedisIndex(uint32_t opts) {
    return (opts >> kPresenceRedisShift) & kPresenceRedisMask;
}

// Redis mode.  The registry still counts this instance's connections and
// runs the leave delays, but a channel joined from a Redis location
// (presenceRedisIndex(opts) != 0) produces no join/leave/online/offline
// events of its own: every change of this instance's part of the channel is
// a delta, numbered from one counter of the whole zone, that the glue sends
// to Redis, where the instances' parts are merged and the cluster-wide
// events are made (redis_proto.h).
struct PresenceDelta {
    std::string channel;
    uint32_t redis = 0;        // upstream index + 1
    uint32_t ttlMs = 0;        // pubsub_presence_ttl of the location that joined last
    uint64_t version = 0;      // from PresenceRoot::redisVersion
    uint64_t connections = 0;  // the channel's connections on this instance, after
    uint64_t anonymous = 0;
    bool member = false;  // false: only the counts changed (an anonymous connection)
    std::string id;
    int64_t memberConnections = -1;  // this instance's; 0: in its leave delay; -1: gone
    std::string info;
    uint32_t opts = 0;
};
using PresenceDeltas = std::vector<PresenceDelta>;

struct PresenceSnapshotMember {
    std::string id;
    std::string info;
    uint64_t connections = 0;
    uint32_t opts = 0;
};

// This instance's whole part of one Redis channel, as of `version`.
struct PresenceChannelSnapshot {
    std::string channel;
    uint32_t redis = 0;
    uint32_t ttlMs = 0;
    uint64_t version = 0;
    uint64_t connections = 0;
    uint64_t anonymous = 0;
    std::vector<PresenceSnapshotMember> members;
};

struct PresenceNode {
    PresenceNode* hnext;
    uint64_t hash;
};

struct PresenceTable {
    PresenceNode** buckets;
    uint64_t nbuckets;
    uint64_t count;
};

struct PresenceUser;
struct PresenceChannel;

struct PresenceMember {
    PresenceNode node;
    PresenceChannel* channel;
    PresenceUser* user;
    PresenceMember* prev;  // channel's list, in join order
    PresenceMember* next;
    PresenceMember* uprev;  // user's list
    PresenceMember* unext;
    PresenceMember* lprev;  // leaving list (only while connections == 0)
    PresenceMember* lnext;
    char* info;
    uint64_t seq;  // position in the channel's list, for cursors
    uint64_t connections;
    int64_t joinedAt;  // unix ms
    int64_t leaveAt;   // unix ms; 0 while connected
    uint32_t opts;
    uint32_t idLen;
    uint32_t infoLen;
    // followed by the id

    std::string_view id() const { return {reinterpret_cast<const char*>(this + 1), idLen}; }
    std::string_view infoJson() const { return {info, infoLen}; }
    bool leaving() const { return connections == 0; }
};

struct PresenceChannel {
    PresenceNode node;
    PresenceMember* head;
    PresenceMember* tail;
    uint64_t members;      // joined or leaving
    uint64_t connections;  // all, anonymous included
    uint64_t anonymous;
    uint64_t nextSeq;
    uint32_t keyLen;
    uint32_t redis;  // presenceRedisIndex() of the connection that made it
    uint32_t ttlMs;
    // followed by the key

    std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), keyLen}; }
};

struct PresenceUser {
    PresenceNode node;
    PresenceMember* head;  // memberships
    uint64_t channels;
    int64_t onlineSince;  // unix ms
    uint32_t idLen;

    std::string_view id() const { return {reinterpret_cast<const char*>(this + 1), idLen}; }
};

// One subscriber connection in one channel.  The glue keeps the pointer and
// gives it back to leave(); removeWorkerConnections() frees those of a slot.
struct PresenceConn {
    PresenceConn* sprev;  // the slot's list
    PresenceConn* snext;
    PresenceChannel* channel;
    PresenceMember* member;  // nullptr: anonymous
    uint32_t slot;
    uint32_t delayMs;
};

struct PresenceEventRec {
    uint64_t seq;
    uint32_t opts;
    uint8_t type;
    uint32_t keyLen;
    uint32_t idLen;
    uint32_t infoLen;
    // followed by key, id, info
    const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
};

struct PresenceRoot {
    static constexpr uint32_t kMaxSlots = 1024;  // nginx's NGX_MAX_PROCESSES
    static constexpr uint32_t kRing = 4096;
    static constexpr size_t kInstanceLen = 24;
    uint32_t magic;
    uint32_t version;
    HashKey hashKey;  // keys the three tables' hash; random, made with the zone
    // Redis mode: this instance's name in Redis (made with the zone, kept
    // over reloads), the delta counter, and when the next refresh is due.
    char instance[kInstanceLen + 1];
    uint64_t redisVersion;
    int64_t redisRefreshAt;  // unix ms
    PresenceTable channels;
    PresenceTable members;
    PresenceTable users;
    PresenceMember* leavingHead;
    uint64_t leavingCount;
    uint64_t totalMembers;
    uint64_t totalConnections;
    uint64_t events;            // events produced, all kinds
    uint64_t eventsDropped;     // could not be recorded (memory)
    volatile uint64_t ringSeq;  // ring entries written (read without the lock)
    PresenceEventRec* ring[kRing];
    int64_t slotPid[kMaxSlots];
    uint64_t slotConns[kMaxSlots];
    PresenceConn* slotHead[kMaxSlots];
};

struct PresenceStats {
    bool found = false;
    uint64_t members = 0;
    uint64_t connections = 0;
    uint64_t anonymous = 0;
};

struct PresenceMemberView {
    std::string id;
    std::string info;
    uint64_t connections = 0;
    int64_t joinedAt = 0;  // unix ms
    bool leaving = false;
};

enum class PresenceStatus { kOk, kNoMemory, kBadCursor, kBadArgument };

struct PresencePage {
    PresenceStatus status = PresenceStatus::kOk;
    std::vector<PresenceMemberView> members;
    std::string nextCursor;  // empty: this was the last page
    PresenceStats stats;
};

struct PresenceUserState {
    PresenceStatus status = PresenceStatus::kOk;
    bool online = false;
    int64_t onlineSince = 0;            // unix ms
    std::vector<std::string> channels;  // keys
};

using PresenceEvents = std::vector<PresenceEvent>;

class PresenceRegistry {
public:
    static constexpr uint32_t kMagic = 0x50525331;  // "PRS1"
    static constexpr uint32_t kVersion = 3;
    static constexpr size_t kMaxIdLength = 1024;
    static constexpr size_t kMaxInfoLength = 16384;
    static constexpr size_t kMaxPage = 1000;

    PresenceRegistry(PresenceRoot* root, const ShmAllocator& alloc) : root_(root), alloc_(alloc) {}

    static PresenceRoot* createRoot(const ShmAllocator& alloc, uint64_t buckets = 256);
    static bool compatible(const PresenceRoot* root) {
        return root != nullptr && root->magic == kMagic && root->version == kVersion;
    }
    // Frees the root and everything in it.
    static void destroyRoot(PresenceRoot* root, const ShmAllocator& alloc);

    PresenceRoot* root() const { return root_; }

    // With `on`, an event that nobody receives (its member's options have
    // neither kPresenceOptEvents nor kPresenceOptWebhook, for join/leave,
    // nor a hook index) is only
    // counted, not copied into the caller's `events`: a channel with
    // presence but no events and no hook builds no event strings.  Off by
    // default (every event is returned).
    void setRoutedOnly(bool on) { routedOnly_ = on; }

    // Where the deltas of Redis channels go (nullptr: they are only counted
    // in the version; the glue always sets it).
    void setDeltaSink(PresenceDeltas* sink) { deltas_ = sink; }

    // This instance's part of every Redis channel, for the periodic refresh
    // (false when memory ran out: `out` is then incomplete).
    bool redisSnapshot(std::vector<PresenceChannelSnapshot>* out) const;

    // Adds a connection of `id` (empty: anonymous) to channel `key`, held by
    // the worker in `slot`.  nullptr when memory is exhausted (or the slot,
    // id or info is out of range): nothing changed.
    // `ttlMs` matters in Redis mode only (see PresenceDelta).
    PresenceConn* join(std::string_view key, std::string_view id, std::string_view info,
                       uint32_t slot, uint32_t opts, uint32_t leaveDelayMs, int64_t nowMs,
                       PresenceEvents* events, uint32_t ttlMs = 0);

    // Removes a connection.  The member's last connection starts its leave
    // delay (a delay of 0 leaves at once).
    void leave(PresenceConn* conn, int64_t nowMs, PresenceEvents* events);

    // Removes every connection of a slot (its worker exited or died).
    // Returns how many.
    uint64_t removeWorkerConnections(uint32_t slot, int64_t nowMs, PresenceEvents* events);

    // The worker `pid` starts in `slot`: what a previous owner left behind
    // is removed.  Returns the number of connections removed.
    uint64_t claimSlot(uint32_t slot, int64_t pid, int64_t nowMs, PresenceEvents* events);

    // Members whose leave delay has passed leave now.
    void expire(int64_t nowMs, PresenceEvents* events);

    PresenceStats stats(std::string_view key) const;
    // Members in join order, `limit` at most, after `cursor` (empty: from
    // the first).
    PresencePage page(std::string_view key, size_t limit, std::string_view cursor) const;
    PresenceUserState user(std::string_view id) const;

    // Ring reading: entries after *last are copied out (at most `max`) and
    // *last advanced; *missed counts entries overwritten before they could
    // be read.
    size_t readRing(uint64_t* last, size_t max, PresenceEvents* out, uint64_t* missed) const;
    uint64_t ringSeq() const { return root_->ringSeq; }
    // Writes a record to the ring that is not a member's event (every
    // worker's reader gets it); false when the zone has no memory.
    bool signal(PresenceEventType type, std::string_view key, std::string_view id);

    // Removes everything (a channel's members when the zone is reset).
    void clear();

private:
    PresenceNode* lookup(const PresenceTable& t, uint64_t h, std::string_view a, std::string_view b,
                         int kind) const;
    bool insert(PresenceTable* t, PresenceNode* n);
    void unlink(PresenceTable* t, PresenceNode* n);
    void grow(PresenceTable* t);

    PresenceChannel* findChannel(std::string_view key) const;
    PresenceMember* findMember(std::string_view key, std::string_view id) const;
    PresenceUser* findUser(std::string_view id) const;

    void removeMember(PresenceMember* m, PresenceEvents* events);
    void unlinkLeaving(PresenceMember* m);
    void maybeFreeChannel(PresenceChannel* ch);
    void removeConn(PresenceConn* conn, int64_t nowMs, PresenceEvents* events);
    bool ringWrite(PresenceEventType type, std::string_view key, std::string_view id,
                   std::string_view info, uint32_t opts);
    void emit(PresenceEventType type, std::string_view key, std::string_view id,
              std::string_view info, uint32_t opts, PresenceEvents* events);
    bool setInfo(PresenceMember* m, std::string_view info);
    void delta(PresenceChannel* ch, const PresenceMember* m, int64_t memberConns);

    PresenceRoot* root_;
    ShmAllocator alloc_;
    bool routedOnly_ = false;
    PresenceDeltas* deltas_ = nullptr;
};

// Cursor text of a member position: "<seq>.<hash>" (decimal, hex).
std::string presenceCursor(uint64_t seq, uint64_t hash);
bool parsePresenceCursor(std::string_view s, uint64_t* seq, uint64_t* hash);

// {"event":"join","channel":"...","member":{"id":"...","info":...}}
// `channelId` is what clients know (the id, not the group/id key).
std::string presenceEventJson(const PresenceEvent& ev, std::string_view channelId);

}  // namespace pubsub
