#include "pubsub/memory/shm_store.h"

#include <cstring>
#include <new>

namespace pubsub {

std::string_view ShmStore::groupOf(std::string_view key) {
    size_t slash = key.find('/');
    return slash == std::string_view::npos ? std::string_view() : key.substr(0, slash);
}

const ShmGroup* ShmStore::findGroup(std::string_view name) const {
    uint64_t h = hashOf(name);
    for (ShmGroup* g = root_->groups[h % StoreRoot::kGroupBuckets]; g != nullptr; g = g->next) {
        if (g->hash == h && g->name() == name) {
            return g;
        }
    }
    return nullptr;
}

void ShmStore::occupied(std::string_view name, std::string_view prefix, size_t max,
                        OccupiedList* out) const {
    const ShmGroup* g = findGroup(name);
    if (g == nullptr || name.empty()) {
        return;
    }
    for (const ShmChannel* ch = g->first; ch != nullptr; ch = ch->gnext) {
        if (ch->subscribers == 0 || (ch->flags & ShmChannel::kDeleted) != 0) {
            continue;
        }
        std::string_view id = ch->key().substr(name.size() + 1);
        if (id.compare(0, prefix.size(), prefix) != 0) {
            continue;
        }
        if (out->channels.size() >= max) {
            out->truncated = true;
            return;
        }
        out->channels.push_back(OccupiedChannel{std::string(id), ch->subscribers});
    }
}

ShmGroup* ShmStore::groupFor(std::string_view key, bool isName) {
    std::string_view name = isName ? key : groupOf(key);
    if (name.empty()) {
        return nullptr;
    }
    ShmGroup* g = const_cast<ShmGroup*>(findGroup(name));
    if (g != nullptr) {
        return g;
    }
    void* mem = alloc_.alloc(alloc_.ctx, sizeof(ShmGroup) + name.size());
    if (mem == nullptr) {
        return nullptr;
    }
    std::memset(mem, 0, sizeof(ShmGroup));
    g = static_cast<ShmGroup*>(mem);
    g->hash = hashOf(name);
    g->nameLen = static_cast<uint32_t>(name.size());
    std::memcpy(reinterpret_cast<char*>(g + 1), name.data(), name.size());
    ShmGroup** head = &root_->groups[g->hash % StoreRoot::kGroupBuckets];
    g->next = *head;
    *head = g;
    return g;
}

GroupLimits ShmStore::effectiveLimits(const GroupLimits& own, const ShmGroup* g) {
    GroupLimits l = own;
    if (g != nullptr) {
        if (l.maxChannels == 0) {
            l.maxChannels = g->limits.maxChannels;
        }
        if (l.maxSubscribers == 0) {
            l.maxSubscribers = g->limits.maxSubscribers;
        }
        if (l.maxBytes == 0) {
            l.maxBytes = g->limits.maxBytes;
        }
    }
    return l;
}

StoreStatus ShmStore::setGroupLimits(std::string_view name, const GroupLimitsUpdate& up) {
    if (name.empty()) {
        return StoreStatus::kNotFound;
    }
    ShmGroup* g = const_cast<ShmGroup*>(findGroup(name));
    if (g == nullptr) {
        if (!(up.channels && up.limits.maxChannels != 0) &&
            !(up.subscribers && up.limits.maxSubscribers != 0) &&
            !(up.bytes && up.limits.maxBytes != 0)) {
            return StoreStatus::kOk;  // nothing to store
        }
        g = groupFor(name, true);
        if (g == nullptr) {
            return StoreStatus::kNoMemory;
        }
    }
    if (up.channels) {
        g->limits.maxChannels = up.limits.maxChannels;
    }
    if (up.subscribers) {
        g->limits.maxSubscribers = up.limits.maxSubscribers;
    }
    if (up.bytes) {
        g->limits.maxBytes = up.limits.maxBytes;
    }
    dropGroupIfEmpty(g);
    return StoreStatus::kOk;
}

void ShmStore::dropGroupIfEmpty(ShmGroup* g) {
    if (g == nullptr || g->channels != 0 || g->limits.maxChannels != 0 ||
        g->limits.maxSubscribers != 0 || g->limits.maxBytes != 0) {
        return;
    }
    ShmGroup** pp = &root_->groups[g->hash % StoreRoot::kGroupBuckets];
    while (*pp != nullptr && *pp != g) {
        pp = &(*pp)->next;
    }
    if (*pp == g) {
        *pp = g->next;
    }
    alloc_.free(alloc_.ctx, g);
}

StoreRoot* ShmStore::createRoot(const ShmAllocator& alloc, uint64_t buckets, uint64_t zoneBytes) {
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
    root->hashKey = randomHashKey();
    root->freshLimit = zoneBytes / kFreshShare;
    root->magic = kMagic;
    root->version = kVersion;
    return root;
}

ShmChannel* ShmStore::find(std::string_view key) const {
    uint64_t h = hashOf(key);
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

ShmChannel* ShmStore::findOrCreate(std::string_view key, int64_t now, const GroupLimits& limits,
                                   StoreStatus* status, Creator by, uint32_t slot) {
    StoreStatus dummy;
    if (status == nullptr) {
        status = &dummy;
    }
    *status = StoreStatus::kOk;
    ShmChannel* ch = find(key);
    if (ch != nullptr) {
        return ch;
    }
    const ShmGroup* existing = findGroup(groupOf(key));
    uint64_t maxChannels = effectiveLimits(limits, existing).maxChannels;
    if (maxChannels != 0 && existing != nullptr && existing->channels >= maxChannels) {
        *status = StoreStatus::kGroupChannels;
        return nullptr;
    }
    bool fresh = by == Creator::kSubscriber;
    if (fresh && root_->freshLimit != 0 &&
        root_->freshBytes + freshCharge(key.size(), groupOf(key), slotsFor(slot, 0)) >
            root_->freshLimit) {
        // Refused before it could take memory a publish needs.
        root_->freshRefused++;
        *status = StoreStatus::kFreshChannels;
        return nullptr;
    }
    *status = StoreStatus::kNoMemory;
    size_t size = sizeof(ShmChannel) + key.size();
    void* mem = allocRoom(size, now, nullptr);
    if (mem == nullptr) {
        return nullptr;
    }
    ShmGroup* g = groupFor(key);
    if (g == nullptr && !groupOf(key).empty()) {
        alloc_.free(alloc_.ctx, mem);
        return nullptr;
    }
    *status = StoreStatus::kOk;
    if (g != nullptr) {
        g->channels++;
    }
    std::memset(mem, 0, sizeof(ShmChannel));
    ch = static_cast<ShmChannel*>(mem);
    ch->group = g;
    if (g != nullptr) {
        ch->gnext = g->first;
        if (g->first != nullptr) {
            g->first->gprev = ch;
        }
        g->first = ch;
    }
    ch->serial = ++root_->nextSerial;
    ch->hash = hashOf(key);
    ch->keyLen = static_cast<uint32_t>(key.size());
    ch->created = now;
    ch->lastSeen = -1;
    ch->lastPublish = now;
    std::memcpy(reinterpret_cast<char*>(ch + 1), key.data(), key.size());
    if (fresh) {
        ch->flags |= ShmChannel::kFresh;
        root_->freshChannels++;
        root_->freshBytes += freshCharge(ch);
    }
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
        if (ch->group != nullptr) {
            ch->group->messages--;
        }
    }
    ch->bytes -= m->allocSize();
    if (ch->group != nullptr) {
        ch->group->bytes -= m->allocSize();
    }
    root_->messageBytes -= m->allocSize();
    alloc_.free(alloc_.ctx, m);
}

void ShmStore::expire(ShmChannel* ch, int64_t now) {
    while (ch->oldest != nullptr && ch->oldest->expires != 0 && ch->oldest->expires <= now) {
        unlinkOldest(ch);
    }
}

void* ShmStore::allocRoom(size_t size, int64_t now, const ShmChannel* keep) {
    void* mem = alloc_.alloc(alloc_.ctx, size);
    if (mem != nullptr) {
        return mem;
    }
    // First the messages that expired, everywhere.
    uint64_t before = root_->messageBytes;
    for (uint64_t i = 0; i < root_->nbuckets; i++) {
        for (ShmChannel* ch = root_->buckets[i]; ch != nullptr; ch = ch->hnext) {
            expire(ch, now);
        }
    }
    if (root_->messageBytes < before && (mem = alloc_.alloc(alloc_.ctx, size)) != nullptr) {
        return mem;
    }
    // Then channels with neither messages nor subscribers: they would go
    // at the end of the sweep's grace anyway.
    uint64_t freed = 0;
    for (uint64_t i = 0; i < root_->nbuckets; i++) {
        ShmChannel** pp = &root_->buckets[i];
        while (*pp != nullptr) {
            ShmChannel* ch = *pp;
            if (ch != keep && ch->oldest == nullptr && ch->subscribers == 0) {
                if (root_->lastRemoved < ch->lastId) {
                    root_->lastRemoved = ch->lastId;  // ids of a re-made channel go on
                }
                *pp = ch->hnext;
                freeChannel(ch);
                freed++;
                continue;
            }
            pp = &ch->hnext;
        }
    }
    root_->reclaimed += freed;
    return freed != 0 ? alloc_.alloc(alloc_.ctx, size) : nullptr;
}

PublishOutcome ShmStore::publish(std::string_view key, const PublishInput& in, int64_t now) {
    PublishOutcome out;
    ShmChannel* ch = findOrCreate(key, now, in.limits, &out.status);
    if (ch == nullptr) {
        return out;
    }
    out.channel = ch;
    expire(ch, now);
    out.status = append(ch, in, now, &out.message);
    if (out.status != StoreStatus::kOk) {
        // A channel this publish made for nothing does not linger.
        if (releaseIfUnused(ch)) {
            out.channel = nullptr;
        }
    }
    return out;
}

StoreStatus ShmStore::append(ShmChannel* ch, const PublishInput& in, int64_t now,
                             ShmMessage** stored) {
    size_t size = sizeof(ShmMessage) + in.contentType.size() + in.eventName.size() +
                  in.data.size() + in.origin.size();
    if (in.data.size() > UINT32_MAX || in.contentType.size() > UINT32_MAX ||
        in.eventName.size() > UINT32_MAX || in.origin.size() > UINT32_MAX) {
        return StoreStatus::kNoMemory;
    }
    uint64_t maxBytes = effectiveLimits(in.limits, ch->group).maxBytes;
    if (maxBytes != 0 && ch->group != nullptr) {
        // Messages the new one pushes out of the buffer do not count.
        bool transientIn = in.maxMessages == 0;
        while (ch->oldest != nullptr &&
               ((!transientIn && !ch->oldest->transient() && ch->messages >= in.maxMessages) ||
                (transientIn && ch->oldest->transient() && ch->transients >= kMaxTransients)) &&
               ch->group->bytes + size > maxBytes) {
            unlinkOldest(ch);
        }
        if (ch->group->bytes + size > maxBytes) {
            return StoreStatus::kGroupMemory;
        }
    }
    void* mem = allocRoom(size, now, ch);
    if (mem == nullptr) {
        return StoreStatus::kNoMemory;
    }
    auto* m = static_cast<ShmMessage*>(mem);
    m->next = nullptr;
    m->prev = ch->lastId;
    m->seq = static_cast<uint32_t>(root_->published);
    // A channel deleted and made again within the same second must not hand
    // out its old ids again: a client resuming from one would skip messages.
    MsgId base = ch->lastId;
    if (ch->published == 0 && base < root_->lastRemoved) {
        base = root_->lastRemoved;
    }
    m->id = nextMsgId(base, now);
    bool transient = in.maxMessages == 0;
    m->flags = transient ? ShmMessage::kTransient : 0;
    int64_t ttl = transient ? kTransientTtl : in.ttl;
    m->expires = ttl > 0 ? now + ttl : 0;
    m->ctLen = static_cast<uint32_t>(in.contentType.size());
    m->evLen = static_cast<uint32_t>(in.eventName.size());
    m->dataLen = static_cast<uint32_t>(in.data.size());
    m->originLen = static_cast<uint32_t>(in.origin.size());
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
    p += in.data.size();
    if (!in.origin.empty()) {
        std::memcpy(p, in.origin.data(), in.origin.size());
    }

    if (ch->newest != nullptr) {
        ch->newest->next = m;
    } else {
        ch->oldest = m;
    }
    ch->newest = m;
    ch->lastId = m->id;
    ch->published++;
    unfresh(ch);
    ch->lastPublish = now;
    ch->bytes += m->allocSize();
    if (ch->group != nullptr) {
        ch->group->bytes += m->allocSize();
    }
    root_->messageBytes += m->allocSize();
    root_->published++;
    if (transient) {
        ch->transients++;
    } else {
        ch->messages++;
        root_->messages++;
        if (ch->group != nullptr) {
            ch->group->messages++;
        }
    }
    // Keep at most maxMessages replayable and kMaxTransients transient
    // messages; both kinds are dropped from the oldest end.
    while (ch->oldest != m && (ch->messages > in.maxMessages || ch->transients > kMaxTransients ||
                               (transient && ch->messages > 0))) {
        unlinkOldest(ch);
    }
    *stored = m;
    return StoreStatus::kOk;
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

StoreStatus ShmStore::addSubscriber(ShmChannel* ch, uint32_t slot, int64_t now,
                                    const GroupLimits& limits) {
    if (slot >= StoreRoot::kMaxSlots) {
        return StoreStatus::kNoMemory;
    }
    uint64_t maxSubscribers = effectiveLimits(limits, ch->group).maxSubscribers;
    if (maxSubscribers != 0 && ch->group != nullptr && ch->group->subscribers >= maxSubscribers) {
        return StoreStatus::kGroupSubscribers;
    }
    if (slot >= ch->nslotSubs) {
        uint32_t n = slotsFor(slot, ch->nslotSubs);
        auto* counts = static_cast<uint32_t*>(alloc_.alloc(alloc_.ctx, sizeof(uint32_t) * n));
        if (counts == nullptr) {
            return StoreStatus::kNoMemory;
        }
        std::memset(counts, 0, sizeof(uint32_t) * n);
        if (ch->slotSubs != nullptr) {
            std::memcpy(counts, ch->slotSubs, sizeof(uint32_t) * ch->nslotSubs);
            alloc_.free(alloc_.ctx, ch->slotSubs);
        }
        bool fresh = (ch->flags & ShmChannel::kFresh) != 0;
        if (fresh) {
            root_->freshBytes -= freshCharge(ch);
        }
        ch->slotSubs = counts;
        ch->nslotSubs = n;
        if (fresh) {
            root_->freshBytes += freshCharge(ch);
        }
    }
    ch->slotSubs[slot]++;
    ch->subscribers++;
    if (ch->group != nullptr) {
        ch->group->subscribers++;
    }
    ch->lastSeen = now;
    root_->subscribers++;
    if (root_->slots[slot] != nullptr) {
        root_->slots[slot]->subscribers++;
    }
    return StoreStatus::kOk;
}

void ShmStore::removeSubscriber(ShmChannel* ch, uint32_t slot, int64_t now) {
    ch->lastSeen = now;
    if (slot >= ch->nslotSubs || ch->slotSubs[slot] == 0) {
        return;  // the slot was reset since (its previous owner died)
    }
    ch->slotSubs[slot]--;
    ch->subscribers--;
    if (ch->group != nullptr) {
        ch->group->subscribers--;
    }
    root_->subscribers--;
    if (root_->slots[slot] != nullptr && root_->slots[slot]->subscribers > 0) {
        root_->slots[slot]->subscribers--;
    }
}

void ShmStore::freeChannel(ShmChannel* ch) {
    unfresh(ch);
    while (ch->oldest != nullptr) {
        unlinkOldest(ch);
    }
    for (uint32_t i = 0; i < ch->nslotSubs; i++) {
        ShmSlot* s = root_->slots[i];
        if (s != nullptr && ch->slotSubs[i] != 0) {
            s->subscribers -= s->subscribers < ch->slotSubs[i] ? s->subscribers : ch->slotSubs[i];
        }
    }
    if (ch->slotSubs != nullptr) {
        alloc_.free(alloc_.ctx, ch->slotSubs);
    }
    root_->subscribers -= ch->subscribers;
    root_->channels--;
    ShmGroup* g = ch->group;
    if (g != nullptr) {
        g->subscribers -= ch->subscribers;
        g->channels--;
        if (ch->gprev != nullptr) {
            ch->gprev->gnext = ch->gnext;
        } else {
            g->first = ch->gnext;
        }
        if (ch->gnext != nullptr) {
            ch->gnext->gprev = ch->gprev;
        }
    }
    alloc_.free(alloc_.ctx, ch);
    dropGroupIfEmpty(g);
}

ShmSlot* ShmStore::claimSlot(uint32_t slot, int64_t pid) {
    if (slot >= StoreRoot::kMaxSlots) {
        return nullptr;
    }
    releaseSlot(slot);
    ShmSlot* s = root_->slots[slot];
    if (s == nullptr) {
        s = static_cast<ShmSlot*>(alloc_.alloc(alloc_.ctx, sizeof(ShmSlot)));
        if (s == nullptr) {
            return nullptr;
        }
        std::memset(static_cast<void*>(s), 0, sizeof(ShmSlot));
        root_->slots[slot] = s;
    }
    s->pid = pid;
    return s;
}

void ShmStore::releaseSlot(uint32_t slot) {
    if (slot >= StoreRoot::kMaxSlots) {
        return;
    }
    ShmSlot* s = root_->slots[slot];
    // The slot's counts are only scanned for when some are left: a worker
    // that exits cleanly has unsubscribed everything already.
    if (s == nullptr || s->subscribers != 0) {
        for (uint64_t i = 0; i < root_->nbuckets; i++) {
            for (ShmChannel* ch = root_->buckets[i]; ch != nullptr; ch = ch->hnext) {
                if (slot < ch->nslotSubs && ch->slotSubs[slot] != 0) {
                    uint32_t n = ch->slotSubs[slot];
                    ch->slotSubs[slot] = 0;
                    ch->subscribers -= n;
                    if (ch->group != nullptr) {
                        ch->group->subscribers -= n;
                    }
                    root_->subscribers -= n;
                }
            }
        }
    }
    if (s != nullptr) {
        s->pid = 0;
        s->subscribers = 0;
        s->head = 0;
        s->count = 0;
        s->pending = 0;
        s->overflow = 0;
    }
}

void ShmStore::enqueue(uint32_t slot, uint64_t hash, uint32_t* wake, size_t* nwake) {
    ShmSlot* s = root_->slots[slot];
    if (s == nullptr || s->pid == 0) {
        return;
    }
    if (s->count > 0 && s->ring[(s->head + s->count - 1) % ShmSlot::kRing] == hash) {
        // the newest entry already names this channel
    } else if (s->count == ShmSlot::kRing) {
        s->overflow = 1;
    } else {
        s->ring[(s->head + s->count) % ShmSlot::kRing] = hash;
        s->count++;
    }
    if (!s->pending) {
        s->pending = 1;
        wake[(*nwake)++] = slot;
    }
}

void ShmStore::notifyOthers(const ShmChannel* ch, uint32_t self, uint32_t* wake, size_t* nwake) {
    for (uint32_t i = 0; i < ch->nslotSubs; i++) {
        if (i != self && ch->slotSubs[i] != 0) {
            enqueue(i, ch->hash, wake, nwake);
        }
    }
}

size_t ShmStore::drain(uint32_t slot, uint64_t* out, size_t max, bool* overflow) {
    *overflow = false;
    if (slot >= StoreRoot::kMaxSlots || root_->slots[slot] == nullptr) {
        return 0;
    }
    ShmSlot* s = root_->slots[slot];
    size_t n = 0;
    while (s->count > 0 && n < max) {
        out[n++] = s->ring[s->head];
        s->head = (s->head + 1) % ShmSlot::kRing;
        s->count--;
    }
    if (s->count == 0) {
        s->pending = 0;
    }
    *overflow = s->overflow != 0;
    s->overflow = 0;
    s->delivered += n;
    return n;
}

bool ShmStore::waiting(uint32_t slot) const {
    if (slot >= StoreRoot::kMaxSlots || root_->slots[slot] == nullptr) {
        return false;
    }
    const ShmSlot* s = root_->slots[slot];
    return s->count > 0 || s->overflow != 0;
}

void ShmStore::remove(ShmChannel* ch) {
    if (root_->lastRemoved < ch->lastId) {
        root_->lastRemoved = ch->lastId;
    }
    ShmChannel** pp = &root_->buckets[ch->hash % root_->nbuckets];
    while (*pp != nullptr && *pp != ch) {
        pp = &(*pp)->hnext;
    }
    if (*pp == ch) {
        *pp = ch->hnext;
    }
    freeChannel(ch);
}

bool ShmStore::releaseIfUnused(ShmChannel* ch) {
    if (ch->published != 0 || ch->subscribers != 0 || ch->oldest != nullptr) {
        return false;
    }
    remove(ch);
    return true;
}

uint64_t ShmStore::zoneCharge(uint64_t size) {
    constexpr uint64_t kPage = 4096;
    if (size > kPage / 2) {
        return (size + kPage - 1) / kPage * kPage;
    }
    uint64_t c = 8;
    while (c < size) {
        c <<= 1;
    }
    return c;
}

uint64_t ShmStore::freshCharge(uint64_t keyLen, std::string_view group, uint32_t nslotSubs) {
    uint64_t c = zoneCharge(sizeof(ShmChannel) + keyLen);
    if (!group.empty()) {
        c += zoneCharge(sizeof(ShmGroup) + group.size());
    }
    if (nslotSubs != 0) {
        c += zoneCharge(sizeof(uint32_t) * uint64_t{nslotSubs});
    }
    return c;
}

uint64_t ShmStore::freshCharge(const ShmChannel* ch) {
    return freshCharge(ch->keyLen, ch->group != nullptr ? ch->group->name() : std::string_view(),
                       ch->nslotSubs);
}

void ShmStore::unfresh(ShmChannel* ch) {
    if ((ch->flags & ShmChannel::kFresh) == 0) {
        return;
    }
    ch->flags &= ~ShmChannel::kFresh;
    root_->freshChannels--;
    root_->freshBytes -= freshCharge(ch);
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
    // groups kept for their stored limits
    for (ShmGroup*& head : root_->groups) {
        while (head != nullptr) {
            ShmGroup* g = head;
            head = g->next;
            alloc_.free(alloc_.ctx, g);
        }
    }
}

}  // namespace pubsub
