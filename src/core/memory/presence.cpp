#include "pubsub/memory/presence.h"

#include <cstdio>
#include <cstring>
#include <new>

#include "pubsub/codec/json.h"

namespace pubsub {

namespace {

constexpr int kKindChannel = 0;
constexpr int kKindMember = 1;
constexpr int kKindUser = 2;

// memcpy that accepts an empty view (whose data() may be null).
char* put(char* dst, std::string_view s) {
    if (!s.empty()) {
        std::memcpy(dst, s.data(), s.size());
    }
    return dst + s.size();
}

uint64_t memberHash(const HashKey& k, std::string_view key, std::string_view id) {
    // The key's length first: "a"+"bc" differs from "ab"+"c".
    unsigned char len[4];
    for (int i = 0; i < 4; i++) {
        len[i] = static_cast<unsigned char>(key.size() >> (8 * i));
    }
    SipHasher h(k);
    h.update(len, sizeof(len));
    h.update(key);
    h.update(id);
    return h.finish();
}

// Appends without throwing; false when memory ran out.
bool pushEvent(PresenceEvents* events, PresenceEvent&& ev) noexcept {
    if (events == nullptr) {
        return true;
    }
    try {
        events->push_back(std::move(ev));
    } catch (...) {
        return false;
    }
    return true;
}

}  // namespace

const char* presenceEventName(PresenceEventType t) {
    switch (t) {
        case PresenceEventType::kJoin:
            return "join";
        case PresenceEventType::kLeave:
            return "leave";
        case PresenceEventType::kOnline:
            return "online";
        case PresenceEventType::kOffline:
            return "offline";
        case PresenceEventType::kInfoRequest:
            return "info";
    }
    return "unknown";
}

PresenceRoot* PresenceRegistry::createRoot(const ShmAllocator& alloc, uint64_t buckets) {
    if (buckets == 0) {
        buckets = 1;
    }
    auto* root = static_cast<PresenceRoot*>(alloc.alloc(alloc.ctx, sizeof(PresenceRoot)));
    if (root == nullptr) {
        return nullptr;
    }
    std::memset(static_cast<void*>(root), 0, sizeof(PresenceRoot));
    PresenceTable* tables[] = {&root->channels, &root->members, &root->users};
    for (PresenceTable* t : tables) {
        t->buckets =
            static_cast<PresenceNode**>(alloc.alloc(alloc.ctx, sizeof(PresenceNode*) * buckets));
        if (t->buckets == nullptr) {
            for (PresenceTable* u : tables) {
                if (u->buckets != nullptr) {
                    alloc.free(alloc.ctx, u->buckets);
                }
            }
            alloc.free(alloc.ctx, root);
            return nullptr;
        }
        std::memset(static_cast<void*>(t->buckets), 0, sizeof(PresenceNode*) * buckets);
        t->nbuckets = buckets;
    }
    root->hashKey = randomHashKey();
    root->magic = kMagic;
    root->version = kVersion;
    return root;
}

void PresenceRegistry::destroyRoot(PresenceRoot* root, const ShmAllocator& alloc) {
    if (root == nullptr) {
        return;
    }
    PresenceRegistry reg(root, alloc);
    reg.clear();
    alloc.free(alloc.ctx, root->channels.buckets);
    alloc.free(alloc.ctx, root->members.buckets);
    alloc.free(alloc.ctx, root->users.buckets);
    alloc.free(alloc.ctx, root);
}

// ---------------------------------------------------------------- tables

PresenceNode* PresenceRegistry::lookup(const PresenceTable& t, uint64_t h, std::string_view a,
                                       std::string_view b, int kind) const {
    for (PresenceNode* n = t.buckets[h % t.nbuckets]; n != nullptr; n = n->hnext) {
        if (n->hash != h) {
            continue;
        }
        if (kind == kKindChannel) {
            if (reinterpret_cast<PresenceChannel*>(n)->key() == a) {
                return n;
            }
        } else if (kind == kKindMember) {
            auto* m = reinterpret_cast<PresenceMember*>(n);
            if (m->id() == b && m->channel->key() == a) {
                return n;
            }
        } else if (reinterpret_cast<PresenceUser*>(n)->id() == a) {
            return n;
        }
    }
    return nullptr;
}

void PresenceRegistry::grow(PresenceTable* t) {
    if (t->count <= t->nbuckets * 2) {
        return;
    }
    uint64_t n = t->nbuckets * 4;
    auto* nb = static_cast<PresenceNode**>(alloc_.alloc(alloc_.ctx, sizeof(PresenceNode*) * n));
    if (nb == nullptr) {
        return;  // longer chains, still correct
    }
    std::memset(static_cast<void*>(nb), 0, sizeof(PresenceNode*) * n);
    for (uint64_t i = 0; i < t->nbuckets; i++) {
        PresenceNode* e = t->buckets[i];
        while (e != nullptr) {
            PresenceNode* next = e->hnext;
            e->hnext = nb[e->hash % n];
            nb[e->hash % n] = e;
            e = next;
        }
    }
    alloc_.free(alloc_.ctx, t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
}

bool PresenceRegistry::insert(PresenceTable* t, PresenceNode* n) {
    uint64_t b = n->hash % t->nbuckets;
    n->hnext = t->buckets[b];
    t->buckets[b] = n;
    t->count++;
    grow(t);
    return true;
}

void PresenceRegistry::unlink(PresenceTable* t, PresenceNode* n) {
    PresenceNode** pp = &t->buckets[n->hash % t->nbuckets];
    while (*pp != nullptr) {
        if (*pp == n) {
            *pp = n->hnext;
            t->count--;
            return;
        }
        pp = &(*pp)->hnext;
    }
}

PresenceChannel* PresenceRegistry::findChannel(std::string_view key) const {
    return reinterpret_cast<PresenceChannel*>(
        lookup(root_->channels, keyedHash(root_->hashKey, key), key, {}, kKindChannel));
}

PresenceMember* PresenceRegistry::findMember(std::string_view key, std::string_view id) const {
    return reinterpret_cast<PresenceMember*>(
        lookup(root_->members, memberHash(root_->hashKey, key, id), key, id, kKindMember));
}

PresenceUser* PresenceRegistry::findUser(std::string_view id) const {
    return reinterpret_cast<PresenceUser*>(
        lookup(root_->users, keyedHash(root_->hashKey, id), id, {}, kKindUser));
}

// ---------------------------------------------------------------- events

void PresenceRegistry::emit(PresenceEventType type, std::string_view key, std::string_view id,
                            std::string_view info, uint32_t opts, PresenceEvents* events) {
    root_->events++;
    if (presenceRedisIndex(opts) != 0) {
        return;  // Redis makes this channel's events (see PresenceDelta)
    }
    bool ring = (opts & kPresenceOptEvents) != 0 &&
                (type == PresenceEventType::kJoin || type == PresenceEventType::kLeave);
    if (ring && !ringWrite(type, key, id, info, opts)) {
        root_->eventsDropped++;
    }
    bool webhook = (opts & kPresenceOptWebhook) != 0 &&
                   (type == PresenceEventType::kJoin || type == PresenceEventType::kLeave);
    if (events == nullptr || (routedOnly_ && !ring && !webhook && presenceHookIndex(opts) == 0)) {
        return;
    }
    PresenceEvent ev;
    try {
        ev.type = type;
        ev.channel.assign(key);
        ev.id.assign(id);
        ev.info.assign(info);
        ev.opts = opts;
    } catch (...) {
        root_->eventsDropped++;
        return;
    }
    if (!pushEvent(events, std::move(ev))) {
        root_->eventsDropped++;
    }
}

bool PresenceRegistry::ringWrite(PresenceEventType type, std::string_view key, std::string_view id,
                                 std::string_view info, uint32_t opts) {
    size_t size = sizeof(PresenceEventRec) + key.size() + id.size() + info.size();
    auto* rec = static_cast<PresenceEventRec*>(alloc_.alloc(alloc_.ctx, size));
    if (rec == nullptr) {
        return false;
    }
    rec->seq = root_->ringSeq + 1;
    rec->opts = opts;
    rec->type = static_cast<uint8_t>(type);
    rec->keyLen = static_cast<uint32_t>(key.size());
    rec->idLen = static_cast<uint32_t>(id.size());
    rec->infoLen = static_cast<uint32_t>(info.size());
    char* p = reinterpret_cast<char*>(rec + 1);
    put(put(put(p, key), id), info);
    PresenceEventRec** slot = &root_->ring[rec->seq % PresenceRoot::kRing];
    if (*slot != nullptr) {
        alloc_.free(alloc_.ctx, *slot);
    }
    *slot = rec;
    root_->ringSeq = rec->seq;
    return true;
}

bool PresenceRegistry::signal(PresenceEventType type, std::string_view key, std::string_view id) {
    return ringWrite(type, key, id, {}, 0);
}

size_t PresenceRegistry::readRing(uint64_t* last, size_t max, PresenceEvents* out,
                                  uint64_t* missed) const {
    uint64_t seq = root_->ringSeq;
    size_t n = 0;
    if (*last > seq) {
        *last = seq;  // a new zone
    }
    if (seq - *last > PresenceRoot::kRing) {
        if (missed != nullptr) {
            *missed += seq - *last - PresenceRoot::kRing;
        }
        *last = seq - PresenceRoot::kRing;
    }
    while (*last < seq && n < max) {
        const PresenceEventRec* rec = root_->ring[(*last + 1) % PresenceRoot::kRing];
        if (rec == nullptr || rec->seq != *last + 1) {
            (*last)++;
            continue;
        }
        PresenceEvent ev;
        try {
            ev.type = static_cast<PresenceEventType>(rec->type);
            ev.opts = rec->opts;
            const char* p = rec->bytes();
            ev.channel.assign(p, rec->keyLen);
            ev.id.assign(p + rec->keyLen, rec->idLen);
            ev.info.assign(p + rec->keyLen + rec->idLen, rec->infoLen);
        } catch (...) {
            return n;  // try again later
        }
        if (!pushEvent(out, std::move(ev))) {
            return n;
        }
        (*last)++;
        n++;
    }
    return n;
}

// ---------------------------------------------------------------- join

bool PresenceRegistry::setInfo(PresenceMember* m, std::string_view info) {
    if (m->infoJson() == info) {
        return true;
    }
    char* p = nullptr;
    if (!info.empty()) {
        p = static_cast<char*>(alloc_.alloc(alloc_.ctx, info.size()));
        if (p == nullptr) {
            return false;
        }
        std::memcpy(p, info.data(), info.size());
    }
    if (m->info != nullptr) {
        alloc_.free(alloc_.ctx, m->info);
    }
    m->info = p;
    m->infoLen = static_cast<uint32_t>(info.size());
    return true;
}

PresenceConn* PresenceRegistry::join(std::string_view key, std::string_view id,
                                     std::string_view info, uint32_t slot, uint32_t opts,
                                     uint32_t leaveDelayMs, int64_t nowMs, PresenceEvents* events,
                                     uint32_t ttlMs) {
    if (slot >= PresenceRoot::kMaxSlots || id.size() > kMaxIdLength ||
        info.size() > kMaxInfoLength || key.size() > UINT32_MAX) {
        return nullptr;
    }
    auto* conn = static_cast<PresenceConn*>(alloc_.alloc(alloc_.ctx, sizeof(PresenceConn)));
    if (conn == nullptr) {
        return nullptr;
    }
    std::memset(static_cast<void*>(conn), 0, sizeof(PresenceConn));

    bool newChannel = false;
    PresenceChannel* ch = findChannel(key);
    if (ch == nullptr) {
        auto* mem = alloc_.alloc(alloc_.ctx, sizeof(PresenceChannel) + key.size());
        if (mem == nullptr) {
            alloc_.free(alloc_.ctx, conn);
            return nullptr;
        }
        std::memset(mem, 0, sizeof(PresenceChannel));
        ch = static_cast<PresenceChannel*>(mem);
        ch->node.hash = keyedHash(root_->hashKey, key);
        ch->keyLen = static_cast<uint32_t>(key.size());
        ch->redis = presenceRedisIndex(opts);
        put(reinterpret_cast<char*>(ch + 1), key);
        insert(&root_->channels, &ch->node);
        newChannel = true;
    }

    PresenceMember* m = nullptr;
    if (!id.empty()) {
        m = findMember(key, id);
        if (m == nullptr) {
            PresenceUser* u = findUser(id);
            bool newUser = false;
            if (u == nullptr) {
                auto* um = alloc_.alloc(alloc_.ctx, sizeof(PresenceUser) + id.size());
                if (um == nullptr) {
                    goto nomem;
                }
                std::memset(um, 0, sizeof(PresenceUser));
                u = static_cast<PresenceUser*>(um);
                u->node.hash = keyedHash(root_->hashKey, id);
                u->idLen = static_cast<uint32_t>(id.size());
                u->onlineSince = nowMs;
                std::memcpy(reinterpret_cast<char*>(u + 1), id.data(), id.size());
                newUser = true;
            }
            auto* mm = alloc_.alloc(alloc_.ctx, sizeof(PresenceMember) + id.size());
            if (mm == nullptr) {
                if (newUser) {
                    alloc_.free(alloc_.ctx, u);
                }
                goto nomem;
            }
            std::memset(mm, 0, sizeof(PresenceMember));
            m = static_cast<PresenceMember*>(mm);
            m->idLen = static_cast<uint32_t>(id.size());
            std::memcpy(reinterpret_cast<char*>(m + 1), id.data(), id.size());
            if (!setInfo(m, info)) {
                alloc_.free(alloc_.ctx, m);
                if (newUser) {
                    alloc_.free(alloc_.ctx, u);
                }
                goto nomem;
            }
            if (newUser) {
                insert(&root_->users, &u->node);
            }
            m->node.hash = memberHash(root_->hashKey, key, id);
            m->channel = ch;
            m->user = u;
            m->seq = ++ch->nextSeq;
            m->joinedAt = nowMs;
            m->opts = opts;
            m->prev = ch->tail;
            if (ch->tail != nullptr) {
                ch->tail->next = m;
            } else {
                ch->head = m;
            }
            ch->tail = m;
            ch->members++;
            m->unext = u->head;
            if (u->head != nullptr) {
                u->head->uprev = m;
            }
            u->head = m;
            u->channels++;
            insert(&root_->members, &m->node);
            root_->totalMembers++;
            if (newUser) {
                emit(PresenceEventType::kOnline, {}, id, info, opts, events);
            }
            emit(PresenceEventType::kJoin, key, id, info, opts, events);
        } else {
            if (m->connections == 0) {
                // came back within the leave delay: the leave never happens
                unlinkLeaving(m);
            }
            m->opts = opts;
            (void)setInfo(m, info);  // keeps the old info when memory is short
        }
        m->connections++;
    } else {
        ch->anonymous++;
    }

    ch->connections++;
    root_->totalConnections++;
    conn->channel = ch;
    conn->member = m;
    conn->slot = slot;
    conn->delayMs = leaveDelayMs;
    conn->snext = root_->slotHead[slot];
    if (conn->snext != nullptr) {
        conn->snext->sprev = conn;
    }
    root_->slotHead[slot] = conn;
    root_->slotConns[slot]++;
    if (ttlMs != 0) {
        ch->ttlMs = ttlMs;
    }
    delta(ch, m, m != nullptr ? static_cast<int64_t>(m->connections) : 0);
    return conn;

nomem:
    alloc_.free(alloc_.ctx, conn);
    if (newChannel) {
        maybeFreeChannel(ch);
    }
    return nullptr;
}

// ---------------------------------------------------------------- leave

void PresenceRegistry::maybeFreeChannel(PresenceChannel* ch) {
    if (ch->members != 0 || ch->connections != 0) {
        return;
    }
    unlink(&root_->channels, &ch->node);
    alloc_.free(alloc_.ctx, ch);
}

void PresenceRegistry::removeMember(PresenceMember* m, PresenceEvents* events) {
    PresenceChannel* ch = m->channel;
    PresenceUser* u = m->user;

    if (m->leaveAt != 0) {
        unlinkLeaving(m);
    }
    if (m->prev != nullptr) {
        m->prev->next = m->next;
    } else {
        ch->head = m->next;
    }
    if (m->next != nullptr) {
        m->next->prev = m->prev;
    } else {
        ch->tail = m->prev;
    }
    if (m->uprev != nullptr) {
        m->uprev->unext = m->unext;
    } else {
        u->head = m->unext;
    }
    if (m->unext != nullptr) {
        m->unext->uprev = m->uprev;
    }
    unlink(&root_->members, &m->node);
    ch->members--;
    u->channels--;
    root_->totalMembers--;
    delta(ch, m, -1);

    emit(PresenceEventType::kLeave, ch->key(), m->id(), m->infoJson(), m->opts, events);
    if (u->channels == 0) {
        emit(PresenceEventType::kOffline, {}, m->id(), m->infoJson(), m->opts, events);
        unlink(&root_->users, &u->node);
        alloc_.free(alloc_.ctx, u);
    }
    if (m->info != nullptr) {
        alloc_.free(alloc_.ctx, m->info);
    }
    alloc_.free(alloc_.ctx, m);
    maybeFreeChannel(ch);
}

void PresenceRegistry::removeConn(PresenceConn* conn, int64_t nowMs, PresenceEvents* events) {
    uint32_t slot = conn->slot;
    if (conn->sprev != nullptr) {
        conn->sprev->snext = conn->snext;
    } else {
        root_->slotHead[slot] = conn->snext;
    }
    if (conn->snext != nullptr) {
        conn->snext->sprev = conn->sprev;
    }
    root_->slotConns[slot]--;

    PresenceChannel* ch = conn->channel;
    PresenceMember* m = conn->member;
    uint32_t delay = conn->delayMs;
    alloc_.free(alloc_.ctx, conn);

    ch->connections--;
    root_->totalConnections--;
    if (m == nullptr) {
        ch->anonymous--;
        delta(ch, nullptr, 0);
        maybeFreeChannel(ch);
        return;
    }
    if (--m->connections > 0) {
        delta(ch, m, static_cast<int64_t>(m->connections));
        return;
    }
    if (delay == 0) {
        removeMember(m, events);
        return;
    }
    delta(ch, m, 0);
    m->leaveAt = nowMs + delay;
    m->lprev = nullptr;
    m->lnext = root_->leavingHead;
    if (m->lnext != nullptr) {
        m->lnext->lprev = m;
    }
    root_->leavingHead = m;
    root_->leavingCount++;
}

// Takes a member out of the leaving list (it came back, or it leaves now).
void PresenceRegistry::unlinkLeaving(PresenceMember* m) {
    if (m->lprev != nullptr) {
        m->lprev->lnext = m->lnext;
    } else {
        root_->leavingHead = m->lnext;
    }
    if (m->lnext != nullptr) {
        m->lnext->lprev = m->lprev;
    }
    m->lprev = m->lnext = nullptr;
    m->leaveAt = 0;
    root_->leavingCount--;
}

void PresenceRegistry::leave(PresenceConn* conn, int64_t nowMs, PresenceEvents* events) {
    if (conn != nullptr) {
        removeConn(conn, nowMs, events);
    }
}

uint64_t PresenceRegistry::removeWorkerConnections(uint32_t slot, int64_t nowMs,
                                                   PresenceEvents* events) {
    if (slot >= PresenceRoot::kMaxSlots) {
        return 0;
    }
    uint64_t n = 0;
    while (root_->slotHead[slot] != nullptr) {
        removeConn(root_->slotHead[slot], nowMs, events);
        n++;
    }
    return n;
}

uint64_t PresenceRegistry::claimSlot(uint32_t slot, int64_t pid, int64_t nowMs,
                                     PresenceEvents* events) {
    if (slot >= PresenceRoot::kMaxSlots) {
        return 0;
    }
    uint64_t n = removeWorkerConnections(slot, nowMs, events);
    root_->slotPid[slot] = pid;
    return n;
}

void PresenceRegistry::expire(int64_t nowMs, PresenceEvents* events) {
    PresenceMember* m = root_->leavingHead;
    while (m != nullptr) {
        PresenceMember* next = m->lnext;
        if (m->leaveAt <= nowMs) {
            removeMember(m, events);
        }
        m = next;
    }
}

// ---------------------------------------------------------------- Redis

void PresenceRegistry::delta(PresenceChannel* ch, const PresenceMember* m, int64_t memberConns) {
    if (ch->redis == 0) {
        return;
    }
    uint64_t version = ++root_->redisVersion;
    if (deltas_ == nullptr) {
        return;
    }
    try {
        PresenceDelta d;
        d.channel.assign(ch->key());
        d.redis = ch->redis;
        d.ttlMs = ch->ttlMs;
        d.version = version;
        d.connections = ch->connections;
        d.anonymous = ch->anonymous;
        if (m != nullptr) {
            d.member = true;
            d.id.assign(m->id());
            d.memberConnections = memberConns;
            d.info.assign(m->infoJson());
            d.opts = m->opts;
        }
        deltas_->push_back(std::move(d));
    } catch (...) {
        root_->eventsDropped++;  // the next refresh sends the whole state
    }
}

bool PresenceRegistry::redisSnapshot(std::vector<PresenceChannelSnapshot>* out) const {
    try {
        for (uint64_t b = 0; b < root_->channels.nbuckets; b++) {
            for (PresenceNode* n = root_->channels.buckets[b]; n != nullptr; n = n->hnext) {
                auto* ch = reinterpret_cast<const PresenceChannel*>(n);
                if (ch->redis == 0) {
                    continue;
                }
                PresenceChannelSnapshot s;
                s.channel.assign(ch->key());
                s.redis = ch->redis;
                s.ttlMs = ch->ttlMs;
                s.version = root_->redisVersion;
                s.connections = ch->connections;
                s.anonymous = ch->anonymous;
                s.members.reserve(ch->members);
                for (const PresenceMember* m = ch->head; m != nullptr; m = m->next) {
                    PresenceSnapshotMember sm;
                    sm.id.assign(m->id());
                    sm.info.assign(m->infoJson());
                    sm.connections = m->connections;
                    sm.opts = m->opts;
                    s.members.push_back(std::move(sm));
                }
                out->push_back(std::move(s));
            }
        }
    } catch (...) {
        return false;
    }
    return true;
}

// ---------------------------------------------------------------- queries

PresenceStats PresenceRegistry::stats(std::string_view key) const {
    PresenceStats s;
    const PresenceChannel* ch = findChannel(key);
    if (ch != nullptr) {
        s.found = true;
        s.members = ch->members;
        s.connections = ch->connections;
        s.anonymous = ch->anonymous;
    }
    return s;
}

std::string presenceCursor(uint64_t seq, uint64_t hash) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%llu.%016llx", static_cast<unsigned long long>(seq),
                  static_cast<unsigned long long>(hash));
    return buf;
}

bool parsePresenceCursor(std::string_view s, uint64_t* seq, uint64_t* hash) {
    size_t dot = s.find('.');
    if (dot == std::string_view::npos || dot == 0 || dot > 19 || s.size() - dot - 1 != 16) {
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < dot; i++) {
        char c = s[i];
        if (c < '0' || c > '9') {
            return false;
        }
        uint64_t d = static_cast<uint64_t>(c - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    uint64_t h = 0;
    for (size_t i = dot + 1; i < s.size(); i++) {
        char c = s[i];
        uint64_t d;
        if (c >= '0' && c <= '9') {
            d = static_cast<uint64_t>(c - '0');
        } else if (c >= 'a' && c <= 'f') {
            d = static_cast<uint64_t>(c - 'a' + 10);
        } else {
            return false;
        }
        h = (h << 4) | d;
    }
    *seq = v;
    *hash = h;
    return true;
}

PresencePage PresenceRegistry::page(std::string_view key, size_t limit,
                                    std::string_view cursor) const {
    PresencePage out;
    uint64_t seq = 0;
    uint64_t hash = 0;
    if (!cursor.empty() && !parsePresenceCursor(cursor, &seq, &hash)) {
        out.status = PresenceStatus::kBadCursor;
        return out;
    }
    if (limit == 0 || limit > kMaxPage) {
        out.status = PresenceStatus::kBadArgument;
        return out;
    }
    out.stats = stats(key);
    const PresenceChannel* ch = findChannel(key);
    if (ch == nullptr) {
        return out;
    }
    const PresenceMember* m = ch->head;
    if (!cursor.empty()) {
        // Fast path: the member the cursor names is still there.
        bool found = false;
        for (PresenceNode* n = root_->members.buckets[hash % root_->members.nbuckets]; n != nullptr;
             n = n->hnext) {
            auto* c = reinterpret_cast<const PresenceMember*>(n);
            if (n->hash == hash && c->channel == ch && c->seq == seq) {
                m = c->next;
                found = true;
                break;
            }
        }
        if (!found) {
            // It left: members keep their join order, skip those before it.
            m = ch->head;
            while (m != nullptr && m->seq <= seq) {
                m = m->next;
            }
        }
    }
    try {
        out.members.reserve(limit < ch->members ? limit : ch->members);
        for (; m != nullptr && out.members.size() < limit; m = m->next) {
            PresenceMemberView v;
            v.id.assign(m->id());
            v.info.assign(m->infoJson());
            v.connections = m->connections;
            v.joinedAt = m->joinedAt;
            v.leaving = m->leaving();
            out.members.push_back(std::move(v));
            if (out.members.size() == limit && m->next != nullptr) {
                out.nextCursor = presenceCursor(m->seq, m->node.hash);
            }
        }
    } catch (...) {
        out.status = PresenceStatus::kNoMemory;
        out.members.clear();
        out.nextCursor.clear();
    }
    return out;
}

PresenceUserState PresenceRegistry::user(std::string_view id) const {
    PresenceUserState s;
    const PresenceUser* u = findUser(id);
    if (u == nullptr) {
        return s;
    }
    s.online = true;
    s.onlineSince = u->onlineSince;
    try {
        for (const PresenceMember* m = u->head; m != nullptr; m = m->unext) {
            s.channels.emplace_back(m->channel->key());
        }
    } catch (...) {
        s.status = PresenceStatus::kNoMemory;
        s.channels.clear();
    }
    return s;
}

void PresenceRegistry::clear() {
    for (uint32_t s = 0; s < PresenceRoot::kMaxSlots; s++) {
        while (root_->slotHead[s] != nullptr) {
            removeConn(root_->slotHead[s], 0, nullptr);
        }
        root_->slotPid[s] = 0;
    }
    while (root_->leavingHead != nullptr) {
        removeMember(root_->leavingHead, nullptr);
    }
    for (uint32_t i = 0; i < PresenceRoot::kRing; i++) {
        if (root_->ring[i] != nullptr) {
            alloc_.free(alloc_.ctx, root_->ring[i]);
            root_->ring[i] = nullptr;
        }
    }
}

// ---------------------------------------------------------------- JSON

std::string presenceEventJson(const PresenceEvent& ev, std::string_view channelId) {
    std::string out;
    try {
        out.reserve(64 + channelId.size() + ev.id.size() + ev.info.size());
        out += "{\"event\":\"";
        out += presenceEventName(ev.type);
        out += '"';
        if (ev.type == PresenceEventType::kJoin || ev.type == PresenceEventType::kLeave) {
            out += ",\"channel\":";
            if (!appendJsonString(out, channelId)) {
                return {};
            }
            out += ",\"member\":{\"id\":";
        } else {
            out += ",\"user\":{\"id\":";
        }
        if (!appendJsonString(out, ev.id)) {
            return {};
        }
        out += ",\"info\":";
        out += ev.info.empty() ? std::string_view("null") : std::string_view(ev.info);
        out += "}}";
    } catch (...) {
        return {};
    }
    return out;
}

}  // namespace pubsub
