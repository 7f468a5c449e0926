#include "pubsub/memory_store.h"

#include <new>
#include <string>

namespace pubsub {

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

bool MemoryStore::copyOut(const ShmMessage* from, size_t max, std::vector<MessagePtr>* out) {
    try {
        for (const ShmMessage* m = from; m != nullptr; m = m->next) {
            if (max != 0 && out->size() >= max) {
                break;
            }
            Message* copy =
                Message::create(m->id, m->prev, m->contentType(), m->eventName(), m->data());
            if (copy == nullptr) {
                return false;
            }
            out->push_back(MessagePtr::adopt(copy));
        }
    } catch (const std::bad_alloc&) {
        return false;
    }
    return true;
}

void MemoryStore::publish(std::string_view key, const PublishInput& in, PublishCallback cb) {
    PublishReply reply;
    bool others = false;
    {
        Guard g(env_);
        PublishOutcome out = shm_.publish(key, in, now());
        if (out.status != StoreStatus::kOk) {
            reply.status = StoreResult::kNoMemory;
            reply.reason = "shared memory is full";
        } else {
            reply.id = out.message->id;
            reply.info = infoOf(out.channel);
            LocalChannel* lc = hub_.find(key);
            others = out.channel->subscribers > (lc != nullptr ? lc->size() : 0);
        }
    }
    if (reply.status == StoreResult::kOk) {
        if (others && env_.notify != nullptr) {
            env_.notify(env_.ctx, key, false);
        }
        pull(key);
    }
    cb(std::move(reply));
}

void MemoryStore::pull(std::string_view key) {
    LocalChannel* lc = hub_.find(key);
    if (lc == nullptr) {
        return;
    }
    std::vector<MessagePtr> msgs;
    bool deleted = false;
    {
        Guard g(env_);
        const ShmChannel* ch = shm_.find(key);
        if (ch == nullptr) {
            deleted = true;
        } else {
            bool gap = false;
            const ShmMessage* first = shm_.firstAfter(ch, lc->pulled, true, &gap);
            if (first != nullptr && !copyOut(first, 0, &msgs)) {
                // Out of worker memory: deliver what was copied; the rest is
                // pulled on the next change.
            }
            if (first == nullptr && gap) {
                lc->pulled = ch->lastId;
            }
        }
    }
    if (deleted) {
        return;  // a deletion arrives as its own notification
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

void MemoryStore::subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) {
    SubscribeReply reply;
    {
        Guard g(env_);
        int64_t t = now();
        ShmChannel* ch = req.existingOnly ? shm_.find(req.key) : shm_.findOrCreate(req.key, t);
        if (ch == nullptr) {
            if (req.existingOnly) {
                reply.status = StoreResult::kNotFound;
                reply.reason = "channel does not exist";
            } else {
                reply.status = StoreResult::kNoMemory;
                reply.reason = "shared memory is full";
            }
        } else {
            StartPosition pos = shm_.start(ch, req.start, t);
            reply.gap = pos.gap;
            if (pos.first != nullptr &&
                !copyOut(pos.first, req.oneShot ? req.maxBacklog : 0, &reply.backlog)) {
                reply.backlog.clear();
                reply.status = StoreResult::kError;
                reply.reason = "out of worker memory";
            } else if (!(req.oneShot && !reply.backlog.empty())) {
                MsgId cursor = reply.backlog.empty() ? pos.cursor : reply.backlog.back()->id();
                LocalChannel* lc = hub_.find(req.key);
                // A channel new to this worker starts pulling after the
                // newest message; this subscriber's backlog covers the rest.
                if (!hub_.attach(sub, req.key, cursor, ch->lastId)) {
                    reply.status = StoreResult::kError;
                    reply.reason = "out of worker memory";
                } else {
                    (void)lc;
                    shm_.addSubscriber(ch, t);
                    reply.attached = true;
                }
            } else {
                ch->lastSeen = t;
            }
        }
    }
    cb(std::move(reply));
}

void MemoryStore::unsubscribe(Subscriber* sub) {
    const LocalChannel* lc = sub->channel();
    if (lc == nullptr) {
        return;
    }
    {
        Guard g(env_);
        ShmChannel* ch = shm_.find(lc->key());
        if (ch != nullptr) {
            shm_.removeSubscriber(ch, now());
        }
    }
    hub_.detach(sub);
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
    {
        Guard g(env_);
        ShmChannel* ch = shm_.find(key);
        if (ch != nullptr) {
            info = infoOf(ch);
            LocalChannel* lc = hub_.find(key);
            others = ch->subscribers > (lc != nullptr ? lc->size() : 0);
            shm_.remove(ch);
        }
    }
    if (info.found) {
        if (others && env_.notify != nullptr) {
            env_.notify(env_.ctx, key, true);
        }
        hub_.channelDeleted(key);
    }
    cb(info.found ? StoreResult::kOk : StoreResult::kNotFound, info);
}

void MemoryStore::sweep(uint64_t maxBuckets, int64_t idleGrace) {
    Guard g(env_);
    shm_.sweep(now(), maxBuckets, idleGrace);
}

}  // namespace pubsub
