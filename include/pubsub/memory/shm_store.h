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

#include "pubsub/keyed_hash.h"
#include "pubsub/msgid.h"
#include "pubsub/store.h"
#include "pubsub/store_model.h"

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
    uint32_t originLen;
    // The zone's publish count when it was stored (wrapping): orders the
    // messages of different channels as they were published.
    uint32_t seq;
    // followed by content type, event name, data, origin

    static constexpr uint32_t kTransient = 1;  // kept for delivery only, never replayed

    const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
    std::string_view contentType() const { return {bytes(), ctLen}; }
    std::string_view eventName() const { return {bytes() + ctLen, evLen}; }
    std::string_view data() const { return {bytes() + ctLen + evLen, dataLen}; }
    std::string_view origin() const { return {bytes() + ctLen + evLen + dataLen, originLen}; }
    bool transient() const { return (flags & kTransient) != 0; }
    size_t allocSize() const { return sizeof(ShmMessage) + ctLen + evLen + dataLen + originLen; }
};

struct ShmGroup;

struct ShmChannel {
    ShmChannel* hnext;  // hash chain
    uint64_t hash;
    uint64_t serial;    // unique per channel ever created: tells a re-created channel apart
    ShmGroup* group;    // nullptr for a key without a group
    ShmChannel* gprev;  // the group's channels (ShmGroup::first), any order
    ShmChannel* gnext;
    uint32_t* slotSubs;  // subscribers per worker slot (nullptr until the first one)
    uint32_t nslotSubs;
    ShmMessage* oldest;
    ShmMessage* newest;
    MsgId lastId;          // id of the newest message ever published (kept when trimmed)
    uint64_t messages;     // stored, replayable messages
    uint64_t transients;   // kept for delivery only
    uint64_t bytes;        // memory of stored messages
    uint64_t published;    // total ever published
    uint64_t subscribers;  // across all workers
    int64_t created;
    int64_t lastSeen;  // last time a subscriber came or went; -1 never
    int64_t lastPublish;
    uint32_t keyLen;
    uint32_t flags;
    // followed by the key

    static constexpr uint32_t kDeleted = 1;
    static constexpr uint32_t kFresh = 2;  // made for a subscriber, never published to

    std::string_view key() const { return {reinterpret_cast<const char*>(this + 1), keyLen}; }
};

// Per-group accounting (the group is the key's part before the first '/').
// A group lives while it has channels or stored limits.
struct ShmGroup {
    ShmGroup* next;
    uint64_t hash;
    uint64_t channels;
    uint64_t subscribers;
    uint64_t bytes;      // memory of stored messages
    uint64_t messages;   // stored, replayable messages
    GroupLimits limits;  // stored with the group (pubsub_group_location); 0: none
    ShmChannel* first;   // its channels, linked by gnext
    uint32_t nameLen;
    // followed by the name

    std::string_view name() const { return {reinterpret_cast<const char*>(this + 1), nameLen}; }
};

// A worker's mailbox: the channels other workers changed since it last
// looked, as key hashes.  Indexed by the worker's process slot.
struct ShmSlot {
    static constexpr uint32_t kRing = 512;
    int64_t pid;           // the worker that owns the slot (0: none)
    uint64_t subscribers;  // sum of this slot's counts over all channels
    uint32_t head;         // next to read
    uint32_t count;        // entries waiting
    uint32_t pending;      // a wake-up was sent and not yet consumed
    uint32_t overflow;     // entries were lost: re-pull every local channel
    uint64_t delivered;    // notifications consumed (statistics)
    uint64_t ring[kRing];
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
    uint64_t nextSerial;
    static constexpr uint32_t kMaxSlots = 1024;  // nginx's NGX_MAX_PROCESSES
    static constexpr uint32_t kGroupBuckets = 64;
    ShmSlot* slots[kMaxSlots];
    ShmGroup* groups[kGroupBuckets];
    void* presence;     // PresenceRoot (pubsub/presence.h), made by the glue
    MsgId lastRemoved;  // newest id of any deleted channel (ids never repeat)
    HashKey hashKey;    // keys every table hash; random, made with the zone
    // Channels nobody has published to (what subscribers alone can make):
    // their memory, counted as the zone's allocator would round it, is kept
    // under `freshLimit` (0: no limit) so that it never takes the memory
    // publishers need.
    uint64_t freshChannels;
    uint64_t freshBytes;
    uint64_t freshLimit;
    uint64_t freshRefused;  // subscribers refused for it (statistics)
    uint64_t reclaimed;     // idle empty channels freed early for a publish
};

struct PublishOutcome {
    StoreStatus status = StoreStatus::kOk;
    ShmChannel* channel = nullptr;
    ShmMessage* message = nullptr;
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
    static constexpr uint32_t kVersion = 7;
    // Transient messages (buffer length 0) stay this long so that every
    // worker can deliver them, and at most this many per channel.
    static constexpr int64_t kTransientTtl = 10;
    static constexpr uint64_t kMaxTransients = 64;
    // Channels that were never published to may take at most this share
    // of the zone (1/kFreshShare of `zoneBytes` given to createRoot).
    static constexpr uint64_t kFreshShare = 4;

    // Who asks for a channel that may not exist yet.
    enum class Creator { kPublisher, kSubscriber };

    ShmStore(StoreRoot* root, const ShmAllocator& alloc) : root_(root), alloc_(alloc) {}

    // Allocates and initialises a root with a new random hash key; nullptr
    // when memory is exhausted.  `zoneBytes` (the zone's size; 0: unknown)
    // sets the limit of channels without messages.
    static StoreRoot* createRoot(const ShmAllocator& alloc, uint64_t buckets = 1024,
                                 uint64_t zoneBytes = 0);
    // True when `root` was made by this version of the code.
    static bool compatible(const StoreRoot* root) {
        return root != nullptr && root->magic == kMagic && root->version == kVersion;
    }

    StoreRoot* root() const { return root_; }

    // The zone's keyed hash of a channel key (the same in every worker).
    uint64_t hashOf(std::string_view key) const { return keyedHash(root_->hashKey, key); }

    ShmChannel* find(std::string_view key) const;
    // Finds or creates; nullptr when memory is exhausted or a group limit
    // is reached (*status tells which, when given).  A channel created for
    // a subscriber counts as fresh (never published to) until its first
    // publish; it is refused with kFreshChannels when fresh channels would
    // pass their limit once that subscriber (in worker slot `slot`) is
    // counted.
    ShmChannel* findOrCreate(std::string_view key, int64_t now, const GroupLimits& limits = {},
                             StoreStatus* status = nullptr, Creator by = Creator::kPublisher,
                             uint32_t slot = 0);
    // The group of a key ("a/b" -> "a"; no '/': none, not accounted).
    static std::string_view groupOf(std::string_view key);
    const ShmGroup* findGroup(std::string_view name) const;
    // The limits that apply to an operation in group `g` (nullptr: none):
    // each of `own` that is set, else the group's stored one.
    static GroupLimits effectiveLimits(const GroupLimits& own, const ShmGroup* g);
    // Stores limits with the group (made if needed); kNoMemory when it
    // cannot be made.  The group is forgotten once it has neither channels
    // nor stored limits.
    StoreStatus setGroupLimits(std::string_view name, const GroupLimitsUpdate& up);
    // Calls fn(channel) for every channel of the group (fn must not change
    // the table).  Visits the whole table.
    template <typename Fn>
    void forEachInGroup(std::string_view name, Fn fn) const {
        for (uint64_t i = 0; i < root_->nbuckets; i++) {
            for (ShmChannel* ch = root_->buckets[i]; ch != nullptr; ch = ch->hnext) {
                if (ch->group != nullptr && ch->group->name() == name) {
                    fn(ch);
                }
            }
        }
    }
    // The channels of group `name` that have subscribers and whose id (the
    // key after "<name>/") starts with `prefix`: at most `max` of them (more:
    // out->truncated).  Walks the group's channels only.
    void occupied(std::string_view name, std::string_view prefix, size_t max,
                  OccupiedList* out) const;

    // Stores a message.  When memory is exhausted it first drops expired
    // messages of every channel and frees channels that have neither
    // messages nor subscribers, then gives up with kNoMemory.
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

    // Counts a subscriber held by the worker in `slot`.  Fails (kNoMemory or
    // kGroupSubscribers) without counting.
    StoreStatus addSubscriber(ShmChannel* ch, uint32_t slot, int64_t now,
                              const GroupLimits& limits = {});
    void removeSubscriber(ShmChannel* ch, uint32_t slot, int64_t now);
    // Slot 0 (one worker).
    void addSubscriber(ShmChannel* ch, int64_t now) { (void)addSubscriber(ch, 0, now); }
    void removeSubscriber(ShmChannel* ch, int64_t now) { removeSubscriber(ch, 0, now); }

    // Worker slots.  claimSlot() is called by the worker that starts in a
    // slot: whatever a previous owner left (a worker killed with SIGKILL
    // never unsubscribes) is forgotten.  Returns nullptr when memory is
    // exhausted (the worker then polls: see MemoryStore).
    ShmSlot* claimSlot(uint32_t slot, int64_t pid);
    // Forgets the slot's subscribers and mailbox (the owner exited).
    void releaseSlot(uint32_t slot);
    // Queues the channel in the mailbox of every other slot that has
    // subscribers of it; appends to `wake` the slots that need a wake-up
    // (those with no wake-up pending).
    void notifyOthers(const ShmChannel* ch, uint32_t self, uint32_t* wake, size_t* nwake);
    // Takes what is waiting in the slot's mailbox.
    size_t drain(uint32_t slot, uint64_t* out, size_t max, bool* overflow);
    // Something waits in the slot's mailbox.
    bool waiting(uint32_t slot) const;

    // Deletes the channel and its messages.
    void remove(ShmChannel* ch);

    // Deletes the channel if nobody ever published to it and it has no
    // subscribers left; true when it did (`ch` is gone then).
    bool releaseIfUnused(ShmChannel* ch);

    // Incremental maintenance: expires messages and removes channels that
    // have neither messages nor subscribers and were idle for `idleGrace`
    // seconds.  Visits at most `maxBuckets` hash buckets per call.
    void sweep(int64_t now, uint64_t maxBuckets, int64_t idleGrace);

    // Releases everything (used when a zone cannot be reused).
    void clear();

    // What `size` bytes take in the zone: nginx's slab allocator gives the
    // next power of two up to half a page, whole 4 KB pages above.
    static uint64_t zoneCharge(uint64_t size);

private:
    static constexpr uint32_t kInitialSlots = 8;  // subscriber counts first allocated
    // How many subscriber counts a channel has once `slot` has one.
    static uint32_t slotsFor(uint32_t slot, uint32_t have) {
        uint32_t n = have == 0 ? kInitialSlots : have;
        while (n <= slot) {
            n *= 2;
        }
        return n;
    }

    // Stores a message in `ch` (publish() without the lookup).
    StoreStatus append(ShmChannel* ch, const PublishInput& in, int64_t now, ShmMessage** stored);
    void unlinkOldest(ShmChannel* ch);
    ShmGroup* groupFor(std::string_view key, bool isName = false);
    void dropGroupIfEmpty(ShmGroup* g);
    void enqueue(uint32_t slot, uint64_t hash, uint32_t* wake, size_t* nwake);
    void freeChannel(ShmChannel* ch);
    void maybeGrow();
    // Allocates; when the zone is full, drops expired messages everywhere
    // and tries again, then frees channels without messages and subscribers
    // (except `keep`) and tries once more.  nullptr when still full.
    void* allocRoom(size_t size, int64_t now, const ShmChannel* keep);
    // What a fresh channel counts against the limit: the channel, its
    // group (as if it were its own) and its subscriber counts.
    static uint64_t freshCharge(uint64_t keyLen, std::string_view group, uint32_t nslotSubs);
    static uint64_t freshCharge(const ShmChannel* ch);
    // The channel is published to: it no longer counts as fresh.
    void unfresh(ShmChannel* ch);

    StoreRoot* root_;
    ShmAllocator alloc_;
};

}  // namespace pubsub
