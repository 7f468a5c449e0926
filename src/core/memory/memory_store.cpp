#include "pubsub/memory/memory_store.h"

#include <algorithm>
#include <new>
#include <string>

namespace pubsub {

namespace {

StoreResult resultOf(StoreStatus s) {
    switch (s) {
        case StoreStatus::kOk:
            return StoreResult::kOk;
        case StoreStatus::kNoMemory:
        case StoreStatus::kFreshChannels:
            return StoreResult::kNoMemory;
        case StoreStatus::kNotFound:
            return StoreResult::kNotFound;
        case StoreStatus::kGroupChannels:
        case StoreStatus::kGroupSubscribers:
        case StoreStatus::kGroupMemory:
            return StoreResult::kForbidden;
    }
    return StoreResult::kError;
}

}  // namespace

ChannelInfo MemoryStore::infoOf(const ShmChannel* ch) {
    ChannelInfo info;
    if (ch == nullptr) {
        return info;
    }
    info.found = true;
    info.messages = ch->messages;
    info.subscribers = ch->subscribers;
    info.lastSeen = ch->lastSeen;
    info.lastId = ch->lastId;
    return info;
}

bool MemoryStore::copyOut(const ShmMessage* from, size_t max, std::vector<MessagePtr>* out,
                          std::vector<uint32_t>* seqs) {
    try {
        for (const ShmMessage* m = from; m != nullptr; m = m->next) {
            if (max != 0 && out->size() >= max) {
                break;
            }
            Message* copy = Message::create(m->id, m->prev, m->contentType(), m->eventName(),
                                            m->data(), m->origin());
            if (copy == nullptr) {
                return false;
            }
            out->push_back(MessagePtr::adopt(copy));
            if (seqs != nullptr) {
                seqs->push_back(m->seq);
            }
        }
    } catch (const std::bad_alloc&) {
        return false;
    }
    return true;
}

void MemoryStore::wakeAll(const uint32_t* wake, size_t n) {
    if (env_.wake == nullptr) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        env_.wake(env_.ctx, wake[i]);
    }
}

void MemoryStore::publish(std::string_view key, const PublishInput& in, PublishCallback cb) {
    PublishReply reply;
    bool others = false;
    bool waiting = false;
    uint32_t wake[StoreRoot::kMaxSlots];
    size_t nwake = 0;
    {
        Guard g(env_);
        PublishOutcome out = shm_.publish(key, in, now());
        if (out.status != StoreStatus::kOk) {
            reply.status = resultOf(out.status);
            reply.reason = storeStatusReason(out.status);
        } else {
            reply.id = out.message->id;
            reply.info = infoOf(out.channel);
            shm_.notifyOthers(out.channel, env_.slot, wake, &nwake);
            LocalChannel* lc = hub_.find(key);
            others = out.channel->subscribers > (lc != nullptr ? lc->size() : 0);
            waiting = lc != nullptr && shm_.waiting(env_.slot);
        }
    }
    if (reply.status == StoreResult::kOk) {
        wakeAll(wake, nwake);
        if (others && env_.notify != nullptr) {
            env_.notify(env_.ctx, key, false);
        }
        if (waiting) {
            // What other workers published before this (a publisher that
            // waited for their answer) is delivered first: a subscriber of
            // several channels sees them in publish order.
            processNotifications();
        }
        pull(key);
    }
    cb(std::move(reply));
}

bool MemoryStore::collect(std::string_view key, std::vector<MessagePtr>* msgs,
                          std::vector<uint32_t>* seqs) {
    LocalChannel* lc = hub_.find(key);
    if (lc == nullptr) {
        return true;
    }
    Guard g(env_);
    const ShmChannel* ch = shm_.find(key);
    if (ch == nullptr || ch->serial != lc->serial) {
        return false;
    }
    bool gap = false;
    const ShmMessage* first = shm_.firstAfter(ch, lc->pulled, true, &gap);
    if (first != nullptr && !copyOut(first, 0, msgs, seqs)) {
        // Out of worker memory: deliver what was copied; the rest is
        // pulled on the next change.
    }
    if (first == nullptr && gap) {
        lc->pulled = ch->lastId;
    }
    return true;
}

void MemoryStore::pull(std::string_view key) {
    std::vector<MessagePtr> msgs;
    if (!collect(key, &msgs)) {
        hub_.channelDeleted(key);
        return;
    }
    hub_.deliver(key, msgs);
}

void MemoryStore::channelChanged(std::string_view key, bool deleted) {
    if (deleted) {
        hub_.channelDeleted(key);
    } else {
        pull(key);
    }
}

bool MemoryStore::claimSlot(int64_t pid) {
    Guard g(env_);
    return shm_.claimSlot(env_.slot, pid) != nullptr;
}

void MemoryStore::releaseSlot() {
    Guard g(env_);
    shm_.releaseSlot(env_.slot);
}

size_t MemoryStore::reapSlots(bool (*alive)(int64_t pid)) {
    int64_t pids[StoreRoot::kMaxSlots];
    {
        Guard g(env_);
        for (uint32_t i = 0; i < StoreRoot::kMaxSlots; i++) {
            const ShmSlot* s = env_.root->slots[i];
            pids[i] = (s != nullptr && i != env_.slot) ? s->pid : 0;
        }
    }
    size_t reaped = 0;
    for (uint32_t i = 0; i < StoreRoot::kMaxSlots; i++) {
        if (pids[i] == 0 || alive(pids[i])) {
            continue;
        }
        Guard g(env_);
        const ShmSlot* s = env_.root->slots[i];
        if (s != nullptr && s->pid == pids[i]) {  // not taken over meanwhile
            shm_.releaseSlot(i);
            reaped++;
        }
    }
    return reaped;
}

void MemoryStore::processNotifications(bool all) {
    std::vector<std::string> keys;
    try {
        for (;;) {
            uint64_t hashes[256];
            bool overflow = false;
            size_t n;
            {
                Guard g(env_);
                n = shm_.drain(env_.slot, hashes, 256, &overflow);
            }
            all = all || overflow;
            if (!all) {
                for (size_t i = 0; i < n; i++) {
                    hub_.keysWithHash(hashes[i], &keys);
                }
            }
            if (n < 256) {
                break;
            }
        }
        if (all) {
            keys.clear();
            hub_.keys(&keys);
        }
        std::sort(keys.begin(), keys.end());
        keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
    } catch (const std::bad_alloc&) {
        // Deliver what we know of; the lost keys are pulled on their next
        // change.
    }

    // Pull every channel first, then deliver in publish order (the zone's
    // sequence) so that a subscriber of several channels (multiplexed) sees
    // them interleaved as they were published.
    struct Item {
        uint32_t seq;
        size_t channel;
        size_t index;
    };
    std::vector<std::vector<MessagePtr>> batches;
    std::vector<Item> order;
    try {
        batches.resize(keys.size());
        std::vector<uint32_t> seqs;
        for (size_t i = 0; i < keys.size(); i++) {
            seqs.clear();
            if (!collect(keys[i], &batches[i], &seqs)) {
                hub_.channelDeleted(keys[i]);
                batches[i].clear();
                continue;
            }
            if (seqs.size() < batches[i].size()) {
                batches[i].resize(seqs.size());  // the rest: on the next change
            }
            for (size_t j = 0; j < batches[i].size(); j++) {
                order.push_back(Item{seqs[j], i, j});
            }
        }
    } catch (const std::bad_alloc&) {
        for (size_t i = 0; i < batches.size(); i++) {
            hub_.deliver(keys[i], batches[i]);
        }
        return;
    }
    // The sequence wraps; what one batch holds spans far less than 2^31.
    std::stable_sort(order.begin(), order.end(), [](const Item& a, const Item& b) {
        return static_cast<int32_t>(a.seq - b.seq) < 0;
    });
    std::vector<MessagePtr> run;
    for (size_t i = 0; i < order.size();) {
        size_t ch = order[i].channel;
        run.clear();
        for (; i < order.size() && order[i].channel == ch; i++) {
            run.push_back(batches[ch][order[i].index]);
        }
        hub_.deliver(keys[ch], run);
    }
}

void MemoryStore::subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) {
    SubscribeReply reply;
    // Subscribers still attached to an earlier incarnation of the channel
    // learn of its deletion first.
    if (LocalChannel* stale = hub_.find(req.key)) {
        bool gone;
        {
            Guard g(env_);
            const ShmChannel* ch = shm_.find(req.key);
            gone = ch == nullptr || ch->serial != stale->serial;
        }
        if (gone) {
            hub_.channelDeleted(req.key);
        }
    }
    uint64_t counted = UINT64_MAX;  // the count this subscriber made
    {
        Guard g(env_);
        int64_t t = now();
        StoreStatus st = StoreStatus::kOk;
        ShmChannel* ch = req.existingOnly
                             ? shm_.find(req.key)
                             : shm_.findOrCreate(req.key, t, req.limits, &st,
                                                 ShmStore::Creator::kSubscriber, env_.slot);
        if (ch == nullptr) {
            if (req.existingOnly) {
                reply.status = StoreResult::kNotFound;
                reply.reason = "channel does not exist";
            } else {
                reply.status = resultOf(st);
                reply.reason = storeStatusReason(st);
            }
        } else {
            StartPosition pos = shm_.start(ch, req.start, t);
            reply.gap = pos.gap;
            LocalChannel* lc = hub_.find(req.key);
            if (lc != nullptr && lc->serial != ch->serial) {
                reply.status = StoreResult::kUnavailable;
                reply.reason = "channel was just re-created; retry";
            } else if (pos.first != nullptr &&
                       !copyOut(pos.first, req.oneShot ? req.maxBacklog : 0, &reply.backlog)) {
                reply.backlog.clear();
                reply.status = StoreResult::kError;
                reply.reason = "out of worker memory";
            } else if (!(req.oneShot && !reply.backlog.empty())) {
                MsgId cursor = reply.backlog.empty() ? pos.cursor : reply.backlog.back()->id();
                StoreStatus added = shm_.addSubscriber(ch, env_.slot, t, req.limits);
                // A channel new to this worker starts pulling after the
                // newest message; this subscriber's backlog covers the rest.
                if (added != StoreStatus::kOk) {
                    reply.backlog.clear();
                    reply.status = resultOf(added);
                    reply.reason = storeStatusReason(added);
                } else if (!hub_.attach(sub, req.key, cursor, ch->lastId)) {
                    shm_.removeSubscriber(ch, env_.slot, t);
                    reply.backlog.clear();
                    reply.status = StoreResult::kError;
                    reply.reason = "out of worker memory";
                } else {
                    hub_.find(req.key)->serial = ch->serial;
                    reply.attached = true;
                    counted = ch->subscribers;
                }
            } else {
                ch->lastSeen = t;
            }
            if (!reply.attached) {
                // A channel nobody published to goes with its last
                // subscriber, also when this one was refused.
                shm_.releaseIfUnused(ch);
            }
        }
    }
    if (countHook_ && counted != UINT64_MAX) {
        countHook_(req.key, counted - 1, counted);
    }
    cb(std::move(reply));
}

void MemoryStore::unsubscribe(Subscriber* sub) {
    const LocalChannel* lc = sub->channel();
    if (lc == nullptr) {
        return;
    }
    uint64_t counted = UINT64_MAX;
    std::string key;
    {
        Guard g(env_);
        ShmChannel* ch = shm_.find(lc->key());
        if (ch != nullptr && ch->serial == lc->serial) {
            uint64_t before = ch->subscribers;
            shm_.removeSubscriber(ch, env_.slot, now());
            if (countHook_ && ch->subscribers != before) {
                try {
                    key.assign(lc->key());
                    counted = ch->subscribers;
                } catch (const std::bad_alloc&) {
                    // unsubscribe never fails: the change goes unreported
                }
            }
            // Nobody published to it and nobody waits any more: free it
            // now, so that clients cannot fill the zone with such channels.
            shm_.releaseIfUnused(ch);
        }
    }
    if (counted != UINT64_MAX) {
        countHook_(key, counted + 1, counted);
    }
    hub_.detach(sub);
}

bool MemoryStore::occupied(std::string_view group, std::string_view prefix, size_t max,
                           OccupiedList* out) {
    try {
        Guard g(env_);
        shm_.occupied(group, prefix, max, out);
        return true;
    } catch (const std::bad_alloc&) {
        return false;
    }
}

void MemoryStore::info(std::string_view key, InfoCallback cb) {
    ChannelInfo info;
    {
        Guard g(env_);
        ShmChannel* ch = shm_.find(key);
        if (ch != nullptr) {
            shm_.expire(ch, now());
        }
        info = infoOf(ch);
    }
    cb(info.found ? StoreResult::kOk : StoreResult::kNotFound, info);
}

void MemoryStore::remove(std::string_view key, InfoCallback cb) {
    ChannelInfo info;
    bool others = false;
    uint32_t wake[StoreRoot::kMaxSlots];
    size_t nwake = 0;
    {
        Guard g(env_);
        ShmChannel* ch = shm_.find(key);
        if (ch != nullptr) {
            info = infoOf(ch);
            shm_.notifyOthers(ch, env_.slot, wake, &nwake);
            LocalChannel* lc = hub_.find(key);
            others = ch->subscribers > (lc != nullptr ? lc->size() : 0);
            shm_.remove(ch);
        }
    }
    if (info.found) {
        wakeAll(wake, nwake);
        if (others && env_.notify != nullptr) {
            env_.notify(env_.ctx, key, true);
        }
        hub_.channelDeleted(key);
    }
    cb(info.found ? StoreResult::kOk : StoreResult::kNotFound, info);
}

GroupInfo MemoryStore::groupInfoOf(const ShmGroup* g) {
    GroupInfo info;
    if (g == nullptr) {
        return info;
    }
    info.found = true;
    info.channels = g->channels;
    info.subscribers = g->subscribers;
    info.messages = g->messages;
    info.bytes = g->bytes;
    info.limits = g->limits;
    return info;
}

void MemoryStore::groupInfo(std::string_view group, GroupCallback cb) {
    GroupInfo info;
    {
        Guard g(env_);
        info = groupInfoOf(shm_.findGroup(group));
    }
    cb(StoreResult::kOk, info);
}

void MemoryStore::setGroupLimits(std::string_view group, const GroupLimitsUpdate& up,
                                 GroupCallback cb) {
    GroupInfo info;
    StoreStatus st;
    {
        Guard g(env_);
        st = shm_.setGroupLimits(group, up);
        info = groupInfoOf(shm_.findGroup(group));
    }
    cb(st == StoreStatus::kOk ? StoreResult::kOk : StoreResult::kNoMemory, info);
}

void MemoryStore::removeGroup(std::string_view group, GroupCallback cb) {
    std::vector<std::string> keys;
    {
        Guard g(env_);
        shm_.forEachInGroup(group, [&keys](const ShmChannel* ch) { keys.emplace_back(ch->key()); });
    }
    // one at a time, as a DELETE of each would (other workers' subscribers
    // are told through their mailboxes)
    for (const std::string& key : keys) {
        remove(key, [](StoreResult, const ChannelInfo&) {});
    }
    groupInfo(group, std::move(cb));
}

void MemoryStore::sweep(uint64_t maxBuckets, int64_t idleGrace) {
    Guard g(env_);
    shm_.sweep(now(), maxBuckets, idleGrace);
}

MemoryStoreStats MemoryStore::stats() {
    MemoryStoreStats s;
    {
        Guard g(env_);
        const StoreRoot* r = env_.root;
        s.channels = r->channels;
        s.messages = r->messages;
        s.messageBytes = r->messageBytes;
        s.subscribers = r->subscribers;
        s.published = r->published;
        s.generation = r->generation;
    }
    s.localChannels = hub_.channels();
    s.localSubscribers = hub_.subscribers();
    return s;
}

}  // namespace pubsub
