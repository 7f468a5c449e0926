#include "pubsub/shm_store.h"

#include <cstring>
#include <new>

namespace pubsub {

uint64_t hashKey(std::string_view key) {
    // FNV-1a, 64 bit.
    uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : key) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

StoreRoot* ShmStore::createRoot(const ShmAllocator& alloc, uint64_t buckets) {
    if (buckets == 0) {
        buckets = 1;
    }
    auto* root = static_cast<StoreRoot*>(alloc.alloc(alloc.ctx, sizeof(StoreRoot)));
    if (root == nullptr) {
        return nullptr;
    }
    std::memset(static_cast<void*>(root), 0, sizeof(StoreRoot));
    root->buckets =
        static_cast<ShmChannel**>(alloc.alloc(alloc.ctx, sizeof(ShmChannel*) * buckets));
    if (root->buckets == nullptr) {
        alloc.free(alloc.ctx, root);
        return nullptr;
    }
    std::memset(static_cast<void*>(root->buckets), 0, sizeof(ShmChannel*) * buckets);
    root->nbuckets = buckets;
    root->magic = kMagic;
    root->version = kVersion;
    return root;
}

ShmChannel* ShmStore::find(std::string_view key) const {
    uint64_t h = hashKey(key);
    for (ShmChannel* ch = root_->buckets[h % root_->nbuckets]; ch != nullptr; ch = ch->hnext) {
        if (ch->hash == h && ch->key() == key) {
            return ch;
        }
    }
    return nullptr;
}

void ShmStore::maybeGrow() {
    if (root_->channels <= root_->nbuckets * 2) {
        return;
    }
    uint64_t n = root_->nbuckets * 4;
    auto* nb = static_cast<ShmChannel**>(alloc_.alloc(alloc_.ctx, sizeof(ShmChannel*) * n));
    if (nb == nullptr) {
        return;  // keep the longer chains; still correct
    }
    std::memset(static_cast<void*>(nb), 0, sizeof(ShmChannel*) * n);
    for (uint64_t i = 0; i < root_->nbuckets; i++) {
        ShmChannel* ch = root_->buckets[i];
        while (ch != nullptr) {
            ShmChannel* next = ch->hnext;
            ch->hnext = nb[ch->hash % n];
            nb[ch->hash % n] = ch;
            ch = next;
        }
    }
    alloc_.free(alloc_.ctx, root_->buckets);
    root_->buckets = nb;
    root_->nbuckets = n;
    root_->sweepCursor = 0;
}

ShmChannel* ShmStore::findOrCreate(std::string_view key, int64_t now) {
    ShmChannel* ch = find(key);
    if (ch != nullptr) {
        return ch;
    }
    size_t size = sizeof(ShmChannel) + key.size();
    void* mem = alloc_.alloc(alloc_.ctx, size);
    if (mem == nullptr) {
        if (!expireAll(now) || (mem = alloc_.alloc(alloc_.ctx, size)) == nullptr) {
            return nullptr;
        }
    }
    std::memset(mem, 0, sizeof(ShmChannel));
    ch = static_cast<ShmChannel*>(mem);
    ch->hash = hashKey(key);
    ch->keyLen = static_cast<uint32_t>(key.size());
    ch->created = now;
    ch->lastSeen = -1;
    ch->lastPublish = now;
    std::memcpy(reinterpret_cast<char*>(ch + 1), key.data(), key.size());
    uint64_t b = ch->hash % root_->nbuckets;
    ch->hnext = root_->buckets[b];
    root_->buckets[b] = ch;
    root_->channels++;
    maybeGrow();
    return ch;
}

void ShmStore::unlinkOldest(ShmChannel* ch) {
    ShmMessage* m = ch->oldest;
    ch->oldest = m->next;
    if (ch->oldest == nullptr) {
        ch->newest = nullptr;
    }
    if (m->transient()) {
        ch->transients--;
    } else {
        ch->messages--;
        root_->messages--;
    }
    ch->bytes -= m->allocSize();
    root_->messageBytes -= m->allocSize();
    alloc_.free(alloc_.ctx, m);
}

void ShmStore::expire(ShmChannel* ch, int64_t now) {
    while (ch->oldest != nullptr && ch->oldest->expires != 0 && ch->oldest->expires <= now) {
        unlinkOldest(ch);
    }
}

bool ShmStore::expireAll(int64_t now) {
    uint64_t before = root_->messageBytes;
    for (uint64_t i = 0; i < root_->nbuckets; i++) {
        for (ShmChannel* ch = root_->buckets[i]; ch != nullptr; ch = ch->hnext) {
            expire(ch, now);
        }
    }
    return root_->messageBytes < before;
}

PublishOutcome ShmStore::publish(std::string_view key, const PublishInput& in, int64_t now) {
    PublishOutcome out;
    ShmChannel* ch = findOrCreate(key, now);
    if (ch == nullptr) {
        out.status = StoreStatus::kNoMemory;
        return out;
    }
    out.channel = ch;
    expire(ch, now);

    size_t size = sizeof(ShmMessage) + in.contentType.size() + in.eventName.size() + in.data.size();
    if (in.data.size() > UINT32_MAX || in.contentType.size() > UINT32_MAX ||
        in.eventName.size() > UINT32_MAX) {
        out.status = StoreStatus::kNoMemory;
        return out;
    }
    void* mem = alloc_.alloc(alloc_.ctx, size);
    if (mem == nullptr) {
        if (!expireAll(now) || (mem = alloc_.alloc(alloc_.ctx, size)) == nullptr) {
            out.status = StoreStatus::kNoMemory;
            return out;
        }
    }
    auto* m = static_cast<ShmMessage*>(mem);
    m->next = nullptr;
    m->prev = ch->lastId;
    m->id = nextMsgId(ch->lastId, now);
    bool transient = in.maxMessages == 0;
    m->flags = transient ? ShmMessage::kTransient : 0;
    int64_t ttl = transient ? kTransientTtl : in.ttl;
    m->expires = ttl > 0 ? now + ttl : 0;
    m->ctLen = static_cast<uint32_t>(in.contentType.size());
    m->evLen = static_cast<uint32_t>(in.eventName.size());
    m->dataLen = static_cast<uint32_t>(in.data.size());
    char* p = reinterpret_cast<char*>(m + 1);
    if (!in.contentType.empty()) {
        std::memcpy(p, in.contentType.data(), in.contentType.size());
    }
    p += in.contentType.size();
    if (!in.eventName.empty()) {
        std::memcpy(p, in.eventName.data(), in.eventName.size());
    }
    p += in.eventName.size();
    if (!in.data.empty()) {
        std::memcpy(p, in.data.data(), in.data.size());
    }

    if (ch->newest != nullptr) {
        ch->newest->next = m;
    } else {
        ch->oldest = m;
    }
    ch->newest = m;
    ch->lastId = m->id;
    ch->published++;
    ch->lastPublish = now;
    ch->bytes += m->allocSize();
    root_->messageBytes += m->allocSize();
    root_->published++;
    if (transient) {
        ch->transients++;
    } else {
        ch->messages++;
        root_->messages++;
    }
    // Keep at most maxMessages replayable and kMaxTransients transient
    // messages; both kinds are dropped from the oldest end.
    while (ch->oldest != m &&
           (ch->messages > in.maxMessages || ch->transients > kMaxTransients ||
            (transient && ch->messages > 0))) {
        unlinkOldest(ch);
    }
    out.message = m;
    return out;
}

ShmMessage* ShmStore::firstAfter(const ShmChannel* ch, const MsgId& after, bool withTransient,
                                 bool* gap) const {
    *gap = false;
    ShmMessage* m = ch->oldest;
    bool first = true;
    for (; m != nullptr; m = m->next) {
        if (m->id > after && (withTransient || !m->transient())) {
            break;
        }
        first = false;
    }
    if (m == nullptr) {
        // Everything stored is at or before `after`; if nothing is stored
        // but newer messages were published, they were missed.
        *gap = ch->oldest == nullptr && after < ch->lastId && ch->published > 0;
        return nullptr;
    }
    if (first && !m->prev.isNull() && after < m->prev) {
        *gap = true;
    }
    return m;
}

StartPosition ShmStore::start(ShmChannel* ch, const StartSpec& spec, int64_t now) {
    expire(ch, now);
    StartPosition pos;
    pos.cursor = ch->lastId;
    // Replayable messages, oldest first.
    auto nth = [ch](uint64_t index) -> ShmMessage* {
        for (ShmMessage* m = ch->oldest; m != nullptr; m = m->next) {
            if (m->transient()) {
                continue;
            }
            if (index == 0) {
                return m;
            }
            index--;
        }
        return nullptr;
    };
    switch (spec.kind) {
        case StartSpec::kNewest:
            break;
        case StartSpec::kOldest:
            pos.first = nth(0);
            break;
        case StartSpec::kFromOldest:
            pos.first = nth(spec.n > 1 ? static_cast<uint64_t>(spec.n - 1) : 0);
            break;
        case StartSpec::kFromNewest: {
            uint64_t n = spec.n > 0 ? static_cast<uint64_t>(spec.n) : 0;
            if (n > 0) {
                pos.first = nth(ch->messages > n ? ch->messages - n : 0);
            }
            break;
        }
        case StartSpec::kAfter:
            pos.first = firstAfter(ch, spec.after, false, &pos.gap);
            if (pos.first == nullptr && spec.after > ch->lastId) {
                pos.cursor = spec.after;  // a future id waits for newer messages
            }
            break;
    }
    if (pos.first != nullptr) {
        pos.cursor = pos.first->prev;
        if (spec.kind == StartSpec::kAfter && spec.after > pos.cursor) {
            pos.cursor = spec.after;
        }
    }
    return pos;
}

void ShmStore::addSubscriber(ShmChannel* ch, int64_t now) {
    ch->subscribers++;
    ch->lastSeen = now;
    root_->subscribers++;
}

void ShmStore::removeSubscriber(ShmChannel* ch, int64_t now) {
    if (ch->subscribers > 0) {
        ch->subscribers--;
        root_->subscribers--;
    }
    ch->lastSeen = now;
}

void ShmStore::freeChannel(ShmChannel* ch) {
    while (ch->oldest != nullptr) {
        unlinkOldest(ch);
    }
    root_->subscribers -= ch->subscribers;
    root_->channels--;
    alloc_.free(alloc_.ctx, ch);
}

void ShmStore::remove(ShmChannel* ch) {
    ShmChannel** pp = &root_->buckets[ch->hash % root_->nbuckets];
    while (*pp != nullptr && *pp != ch) {
        pp = &(*pp)->hnext;
    }
    if (*pp == ch) {
        *pp = ch->hnext;
    }
    freeChannel(ch);
}

void ShmStore::sweep(int64_t now, uint64_t maxBuckets, int64_t idleGrace) {
    for (uint64_t n = 0; n < maxBuckets && n < root_->nbuckets; n++) {
        uint64_t b = root_->sweepCursor++ % root_->nbuckets;
        ShmChannel** pp = &root_->buckets[b];
        while (*pp != nullptr) {
            ShmChannel* ch = *pp;
            expire(ch, now);
            int64_t last = ch->lastSeen > ch->lastPublish ? ch->lastSeen : ch->lastPublish;
            if (ch->oldest == nullptr && ch->subscribers == 0 && now - last >= idleGrace) {
                *pp = ch->hnext;
                freeChannel(ch);
                continue;
            }
            pp = &ch->hnext;
        }
    }
}

void ShmStore::clear() {
    for (uint64_t i = 0; i < root_->nbuckets; i++) {
        while (root_->buckets[i] != nullptr) {
            ShmChannel* ch = root_->buckets[i];
            root_->buckets[i] = ch->hnext;
            freeChannel(ch);
        }
    }
}

}  // namespace pubsub
