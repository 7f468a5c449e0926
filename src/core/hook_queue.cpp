// The at-least-once delivery queue of the hooks (see hook_queue.h).

#include "pubsub/hook_queue.h"

#include <cstring>
#include <new>
#include <unordered_set>

namespace pubsub {

namespace {

constexpr uint64_t kMagic = 0x6e67787068713031ULL;  // "ngxphq01"

char* payloadOf(HookQueueEntry* e) {
    return reinterpret_cast<char*>(e + 1);
}

}  // namespace

HookQueueRoot* HookQueue::createRoot(ShmAllocator alloc, uint64_t maxBytes, int64_t giveUpMs) {
    auto* root = static_cast<HookQueueRoot*>(alloc.alloc(alloc.ctx, sizeof(HookQueueRoot)));
    if (root == nullptr) {
        return nullptr;
    }
    std::memset(static_cast<void*>(root), 0, sizeof(HookQueueRoot));
    root->magic = kMagic;
    root->nextSeq = 1;
    root->maxBytes = maxBytes;
    root->giveUpMs = giveUpMs;
    return root;
}

bool HookQueue::compatible(const HookQueueRoot* root) {
    return root != nullptr && root->magic == kMagic;
}

int64_t HookQueue::backoffMs(uint32_t attempts) {
    if (attempts == 0) {
        return 0;
    }
    if (attempts > 5) {
        return kMaxBackoffMs;
    }
    int64_t d = static_cast<int64_t>(1000) << (attempts - 1);
    return d < kMaxBackoffMs ? d : kMaxBackoffMs;
}

bool HookQueue::push(std::string_view payload, uint64_t orderKey, int64_t nowMs) {
    if (payload.size() > UINT32_MAX || root_->bytes + payload.size() > root_->maxBytes) {
        root_->dropped++;
        return false;
    }
    auto* e = static_cast<HookQueueEntry*>(
        alloc_.alloc(alloc_.ctx, sizeof(HookQueueEntry) + payload.size()));
    if (e == nullptr) {
        root_->dropped++;
        return false;
    }
    e->next = nullptr;
    e->prev = root_->tail;
    e->seq = root_->nextSeq++;
    e->orderKey = orderKey;
    e->queuedMs = nowMs;
    e->dueMs = nowMs;
    e->owner = 0;
    e->attempts = 0;
    e->len = static_cast<uint32_t>(payload.size());
    if (!payload.empty()) {
        std::memcpy(payloadOf(e), payload.data(), payload.size());
    }
    if (root_->tail != nullptr) {
        root_->tail->next = e;
    } else {
        root_->head = e;
    }
    root_->tail = e;
    root_->entries++;
    root_->bytes += payload.size();
    root_->queued++;
    return true;
}

size_t HookQueue::claim(int64_t owner, int64_t nowMs, size_t max, std::vector<HookClaim>* out,
                        size_t scan) {
    size_t n = 0;
    size_t seen = 0;
    std::unordered_set<uint64_t> blocked;
    for (HookQueueEntry* e = root_->head; e != nullptr && n < max && seen < scan;
         e = e->next, seen++) {
        bool ordered = e->orderKey != 0;
        if (ordered && blocked.count(e->orderKey) != 0) {
            continue;
        }
        if (ordered) {
            blocked.insert(e->orderKey);
        }
        if (e->owner != 0 || e->dueMs > nowMs) {
            continue;
        }
        HookClaim c;
        c.entry = e;
        c.seq = e->seq;
        c.attempts = e->attempts;
        c.payload.assign(payloadOf(e), e->len);
        out->push_back(std::move(c));
        e->owner = owner;
        n++;
    }
    return n;
}

void HookQueue::unlink(HookQueueEntry* e) {
    if (e->prev != nullptr) {
        e->prev->next = e->next;
    } else {
        root_->head = e->next;
    }
    if (e->next != nullptr) {
        e->next->prev = e->prev;
    } else {
        root_->tail = e->prev;
    }
    root_->entries--;
    root_->bytes -= e->len;
    alloc_.free(alloc_.ctx, e);
}

HookOutcome HookQueue::finish(HookQueueEntry* entry, uint64_t seq, int64_t owner, bool ok,
                              int64_t nowMs, int64_t* retryAt) {
    HookQueueEntry* e = entry;
    if (e == nullptr || e->seq != seq || e->owner != owner) {
        return HookOutcome::kNotOwned;
    }
    e->owner = 0;
    e->attempts++;
    if (ok) {
        root_->delivered++;
        unlink(e);
        return HookOutcome::kDelivered;
    }
    if (nowMs - e->queuedMs >= root_->giveUpMs) {
        root_->givenUp++;
        unlink(e);
        return HookOutcome::kGivenUp;
    }
    root_->retried++;
    e->dueMs = nowMs + backoffMs(e->attempts);
    if (retryAt != nullptr) {
        *retryAt = e->dueMs;
    }
    return HookOutcome::kRetry;
}

size_t HookQueue::release(int64_t owner) {
    size_t n = 0;
    for (HookQueueEntry* e = root_->head; e != nullptr; e = e->next) {
        if (e->owner == owner) {
            e->owner = 0;
            n++;
        }
    }
    return n;
}

size_t HookQueue::reclaim(bool (*alive)(int64_t owner), size_t* assumed) {
    size_t n = 0;
    size_t gone = 0;
    HookQueueEntry* next = nullptr;
    for (HookQueueEntry* e = root_->head; e != nullptr; e = next) {
        next = e->next;
        if (e->owner == 0 || alive(e->owner)) {
            continue;
        }
        e->owner = 0;
        if (e->attempts == 0) {
            root_->assumed++;
            unlink(e);
            gone++;
        } else {
            n++;
        }
    }
    if (assumed != nullptr) {
        *assumed = gone;
    }
    return n;
}

int64_t HookQueue::nextDue() const {
    int64_t due = -1;
    for (HookQueueEntry* e = root_->head; e != nullptr; e = e->next) {
        if (e->owner == 0 && (due < 0 || e->dueMs < due)) {
            due = e->dueMs;
        }
    }
    return due;
}

bool HookQueue::hasOwned() const {
    for (HookQueueEntry* e = root_->head; e != nullptr; e = e->next) {
        if (e->owner != 0) {
            return true;
        }
    }
    return false;
}

uint64_t hookOrderKey(std::string_view text) {
    if (text.empty()) {
        return 0;
    }
    uint64_t h = 1469598103934665603ULL;  // FNV-1a
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h == 0 ? 1 : h;
}

}  // namespace pubsub
