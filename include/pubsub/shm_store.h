#pragma once
// Channels and their message buffers, laid out for a shared-memory zone.
//
// Everything here lives in memory handed out by a ShmAllocator (nginx's slab
// allocator in production, malloc in unit tests) and holds only plain data
// and pointers into that same memory: no vtables, no std containers, no
// pointers into a process's own memory.  nginx maps the zone at one address
// in every worker and keeps it across reloads, so these pointers stay valid
// for every process and for the next configuration.
//
// The accessor (ShmStore) takes no locks: the caller holds the zone's lock
// around every call and around any use of the ShmChannel / ShmMessage
// pointers it returns.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pubsub/msgid.h"

namespace pubsub {

struct ShmAllocator {
    void* ctx = nullptr;
    void* (*alloc)(void* ctx, size_t size) = nullptr;  // nullptr when full
    void (*free)(void* ctx, void* p) = nullptr;
};

struct ShmMessage {
    ShmMessage* next;  // the next newer message
    MsgId id;
    MsgId prev;
    int64_t expires;  // unix seconds
    uint32_t flags;
    uint32_t ctLen;
    uint32_t evLen;
    uint32_t dataLen;
    // followed by content type, event name, data

    static constexpr uint32_t kTransient = 1;  // kept for delivery only, never replayed

    const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
    std::string_view contentType() const { return {bytes(), ctLen}; }
    std::string_view eventName() const { return {bytes() + ctLen, evLen}; }
    std::string_view data() const { return {bytes() + ctLen + evLen, dataLen}; }
    bool transient() const { return (flags & kTransient) != 0; }
    size_t allocSize() const { return sizeof(ShmMessage) + ctLen + evLen + dataLen; }
};

struct ShmChannel {
    ShmChannel* hnext;  // hash chain
    uint64_t hash;
    ShmMessage* oldest;
    ShmMessage* newest;
    MsgId lastId;          // id of the newest message ever published (kept when trimmed)
    uint64_t messages;     // stored, replayable messages
    uint64_t transients;   // kept for delivery only
    uint64_t bytes;        // memory of stored messages
    uint64_t published;    // total ever published
    uint64_t subscribers;  // across all workers
    int64_t created;
    int64_t lastSeen;      // last time a subscriber came or went; -1 never
    int64_t lastPublish;
    uint32_t keyLen;
    uint32_t flags;
    // followed by the key

    static constexpr uint32_t kDeleted = 1;

    std::string_view key() const {
        return {reinterpret_cast<const char*>(this + 1), keyLen};
    }
};

struct StoreRoot {
    uint32_t magic;
    uint32_t version;
    ShmChannel** buckets;
    uint64_t nbuckets;
    uint64_t channels;
    uint64_t messages;
    uint64_t messageBytes;
    uint64_t published;
    uint64_t subscribers;
    uint64_t sweepCursor;
    uint64_t generation;  // bumped by every configuration that adopts the zone
    void* presence;       // PresenceRoot (pubsub/presence.h), made by the glue
};

enum class StoreStatus {
    kOk,
    kNoMemory,
    kNotFound,
};

struct PublishInput {
    std::string_view data;
    std::string_view contentType;
    std::string_view eventName;
    uint64_t maxMessages = 10;  // 0: deliver only, never replay
    int64_t ttl = 3600;         // seconds; 0 never expires
};

struct PublishOutcome {
    StoreStatus status = StoreStatus::kOk;
    ShmChannel* channel = nullptr;
    ShmMessage* message = nullptr;
};

// Where a subscriber without a resume id starts.
struct StartSpec {
    enum Kind { kOldest, kNewest, kFromOldest, kFromNewest, kAfter };
    Kind kind = kOldest;
    int64_t n = 0;  // kFromOldest: start at the n-th oldest (1 = oldest);
                    // kFromNewest: start n messages back from the newest
    MsgId after;    // kAfter
};

// What a subscriber is owed at the moment it subscribes.
struct StartPosition {
    ShmMessage* first = nullptr;  // first replayable message owed (nullptr: none yet)
    MsgId cursor;                 // the subscriber has seen everything up to this id
    bool gap = false;             // messages after the resume id were already dropped
};

class ShmStore {
public:
    static constexpr uint32_t kMagic = 0x50534231;  // "PSB1"
    static constexpr uint32_t kVersion = 1;
    // Transient messages (buffer length 0) stay this long so that every
    // worker can deliver them, and at most this many per channel.
    static constexpr int64_t kTransientTtl = 10;
    static constexpr uint64_t kMaxTransients = 64;

    ShmStore(StoreRoot* root, const ShmAllocator& alloc) : root_(root), alloc_(alloc) {}

    // Allocates and initialises a root; nullptr when memory is exhausted.
    static StoreRoot* createRoot(const ShmAllocator& alloc, uint64_t buckets = 1024);
    // True when `root` was made by this version of the code.
    static bool compatible(const StoreRoot* root) {
        return root != nullptr && root->magic == kMagic && root->version == kVersion;
    }

    StoreRoot* root() const { return root_; }

    ShmChannel* find(std::string_view key) const;
    // Finds or creates; nullptr when memory is exhausted.
    ShmChannel* findOrCreate(std::string_view key, int64_t now);

    // Stores a message.  When memory is exhausted it first drops expired
    // messages of every channel, then gives up with kNoMemory.
    PublishOutcome publish(std::string_view key, const PublishInput& in, int64_t now);

    // Drops the channel's expired messages (oldest first).
    void expire(ShmChannel* ch, int64_t now);

    // Where a new subscriber starts.  Expired messages are dropped first.
    StartPosition start(ShmChannel* ch, const StartSpec& spec, int64_t now);

    // The first message newer than `after` (transient ones included when
    // `withTransient`); sets *gap when messages newer than `after` were
    // already dropped.
    ShmMessage* firstAfter(const ShmChannel* ch, const MsgId& after, bool withTransient,
                           bool* gap) const;

    void addSubscriber(ShmChannel* ch, int64_t now);
    void removeSubscriber(ShmChannel* ch, int64_t now);

    // Deletes the channel and its messages.
    void remove(ShmChannel* ch);

    // Incremental maintenance: expires messages and removes channels that
    // have neither messages nor subscribers and were idle for `idleGrace`
    // seconds.  Visits at most `maxBuckets` hash buckets per call.
    void sweep(int64_t now, uint64_t maxBuckets, int64_t idleGrace);

    // Releases everything (used when a zone cannot be reused).
    void clear();

private:
    void unlinkOldest(ShmChannel* ch);
    void freeChannel(ShmChannel* ch);
    void maybeGrow();
    bool expireAll(int64_t now);

    StoreRoot* root_;
    ShmAllocator alloc_;
};

uint64_t hashKey(std::string_view key);

}  // namespace pubsub
