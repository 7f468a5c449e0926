#pragma once
// The delivery queue of the hooks that must reach the backend at least once
// (the unsubscribe and presence hooks, Pusher webhooks): docs/hooks.md,
// "Delivery: at least once".
//
// Same rules as ShmStore: it lives in memory from a ShmAllocator (a shared
// memory zone of its own, so it survives a reload that keeps the zone),
// holds only plain data and pointers into that memory, and the caller holds
// the zone's lock around every call.
//
// An entry is an opaque payload (what the glue needs to send the request
// again, in any worker, under any later configuration) with an order key.
// Entries are sent oldest first.  An entry whose order key is not 0 waits
// until every older entry of the same key is gone (delivered or given up):
// the backend sees the events of one key in order.  A worker claims the
// entries it sends (its pid is the owner): no other worker sends them
// meanwhile.  A failed attempt makes the entry wait backoffMs(attempts)
// (1 s, 2 s, 4 s, 8 s, 16 s, then 30 s), unless it was queued giveUpMs ago
// or more (5 minutes): then it is given up.  A worker that exits releases
// its claims; the claims of a dead worker are taken back by reclaim().

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/memory/shm_store.h"

namespace pubsub {

struct HookQueueEntry {
    HookQueueEntry* next;
    HookQueueEntry* prev;
    uint64_t seq;       // unique, increasing: the order of the queue
    uint64_t orderKey;  // 0: no order with other entries
    int64_t queuedMs;
    int64_t dueMs;  // the next attempt, not before
    int64_t owner;  // the pid sending it now; 0 none
    uint32_t attempts;
    uint32_t len;  // the payload's, which follows the entry
};

struct HookQueueRoot {
    uint64_t magic;
    HookQueueEntry* head;
    HookQueueEntry* tail;
    uint64_t nextSeq;
    uint64_t entries;
    uint64_t bytes;     // payloads
    uint64_t maxBytes;  // payloads, bound
    int64_t giveUpMs;
    // statistics, for the whole zone's life
    uint64_t queued;
    uint64_t delivered;
    uint64_t retried;
    uint64_t givenUp;
    uint64_t dropped;  // not queued: full
    uint64_t assumed;  // first attempts of a dead worker, taken as delivered
};

// An entry a worker claimed: what it sends, and how to report the result.
struct HookClaim {
    HookQueueEntry* entry = nullptr;
    uint64_t seq = 0;
    uint32_t attempts = 0;  // before this one
    std::string payload;
};

enum class HookOutcome {
    kDelivered,  // gone from the queue
    kRetry,      // waits until dueMs
    kGivenUp,    // failed for giveUpMs: gone
    kNotOwned,   // not this owner's claim (any more): nothing changed
};

class HookQueue {
public:
    static constexpr int64_t kGiveUpMs = 300000;
    static constexpr int64_t kMaxBackoffMs = 30000;
    static constexpr size_t kDefaultScan = 4096;

    HookQueue(HookQueueRoot* root, ShmAllocator alloc) : root_(root), alloc_(alloc) {}

    // A new root (nullptr when the allocator fails); maxBytes bounds the
    // payloads held.
    static HookQueueRoot* createRoot(ShmAllocator alloc, uint64_t maxBytes,
                                     int64_t giveUpMs = kGiveUpMs);
    static bool compatible(const HookQueueRoot* root);

    // Delay after `attempts` failed attempts (>= 1).
    static int64_t backoffMs(uint32_t attempts);

    // Queues a payload, due now; false when full (the bound or the
    // allocator): counted in dropped.
    bool push(std::string_view payload, uint64_t orderKey, int64_t nowMs);

    // Claims for `owner`, oldest first, up to `max` entries that are due,
    // unowned, and not behind an older entry of their order key, looking
    // at the `scan` oldest entries at most (a call costs O(scan) under the
    // zone's lock; what is further waits until older entries went).
    size_t claim(int64_t owner, int64_t nowMs, size_t max, std::vector<HookClaim>* out,
                 size_t scan = kDefaultScan);

    // The result of the attempt of a claim (`entry` is only read when its
    // owner is `owner` with the claim's seq: a claim is never freed by
    // another worker while its owner lives).  `retryAt`, for kRetry: when.
    HookOutcome finish(HookQueueEntry* entry, uint64_t seq, int64_t owner, bool ok, int64_t nowMs,
                       int64_t* retryAt = nullptr);

    // The claims of `owner` go back to the queue, due at once, their
    // attempts kept (a worker exits with attempts in flight).
    size_t release(int64_t owner);

    // The claims of owners `alive` says are gone (killed, crashed during an
    // attempt): a retry (an entry that failed before) goes back to the
    // queue, due at once, and is counted in the result; a first attempt is
    // taken as delivered (the request was on its way to a backend that had
    // not failed: it most likely has it, and sending it again would
    // duplicate it), removed and counted in `assumed`.
    size_t reclaim(bool (*alive)(int64_t owner), size_t* assumed = nullptr);

    // The earliest due time of an unowned entry (-1: none), and whether an
    // entry is owned.
    int64_t nextDue() const;
    bool hasOwned() const;

    uint64_t size() const { return root_->entries; }
    HookQueueRoot* root() const { return root_; }

private:
    void unlink(HookQueueEntry* e);

    HookQueueRoot* root_;
    ShmAllocator alloc_;
};

// A 64-bit order key of a text (never 0 for a non-empty text, 0 for "").
uint64_t hookOrderKey(std::string_view text);

}  // namespace pubsub
