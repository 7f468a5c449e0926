#include "pubsub/redis/redis_store.h"

#include <new>
#include <utility>

#include "pubsub/redis/redis_presence.h"

namespace pubsub {

namespace {

std::string toText(uint64_t v) {
    return std::to_string(v);
}

bool isNoScript(const redisReply* r) {
    return r != nullptr && r->type == REDIS_REPLY_ERROR && r->len >= 8 &&
           std::string_view(r->str, 8) == "NOSCRIPT";
}

}  // namespace

RedisStore::RedisStore(RedisLink* link, std::string instanceId)
    : link_(link), instanceId_(std::move(instanceId)), alive_(std::make_shared<bool>(true)) {}

RedisStore::~RedisStore() {
    *alive_ = false;
}

// EVALSHA, and EVAL with the script's text when Redis does not know it yet.
bool RedisStore::eval(const redis::Script& s, std::string_view key, std::vector<std::string> args,
                      RedisLink::ReplyFn cb) {
    return evalKey(s, redis::channelTag(key), std::move(args), std::move(cb));
}

bool RedisStore::evalKey(const redis::Script& s, std::string key, std::vector<std::string> args,
                         RedisLink::ReplyFn cb) {
    std::vector<std::string> cmd;
    cmd.reserve(args.size() + 4);
    cmd.emplace_back("EVALSHA");
    cmd.push_back(s.sha);
    cmd.emplace_back("1");
    cmd.push_back(std::move(key));
    for (auto& a : args) {
        cmd.push_back(std::move(a));
    }
    RedisLink* link = link_;
    const redis::Script* script = &s;
    auto alive = alive_;
    auto first = [link, script, cmd, cb, alive](const redisReply* r) mutable {
        if (!isNoScript(r) || !*alive) {
            cb(r);
            return;
        }
        cmd[0] = "EVAL";
        cmd[1] = script->text;
        if (!link->command(cmd, cb)) {
            cb(nullptr);
        }
    };
    return link_->command(cmd, std::move(first));
}

void RedisStore::publish(std::string_view key, const PublishInput& in, PublishCallback cb) {
    if (in.limits.maxChannels != 0 || in.limits.maxBytes != 0 || in.limits.useStored) {
        publishLimited(key, in, std::move(cb));  // redis_store_groups.cpp
        return;
    }
    publishNow(key, in, std::move(cb), "", nullptr);
}

void RedisStore::publishNow(std::string_view key, const PublishInput& in, PublishCallback cb,
                            const char* flags, std::function<void(const redisReply*)> after) {
    PublishReply fail;
    fail.status = StoreResult::kUnavailable;
    fail.reason = kUnavailable;
    if (!channelReady(key)) {
        cb(std::move(fail));
        return;
    }
    std::vector<std::string> args;
    args.emplace_back(in.data);
    args.emplace_back(in.contentType);
    args.emplace_back(in.eventName);
    args.push_back(toText(in.maxMessages));
    args.push_back(std::to_string(in.ttl > 0 ? in.ttl : 0));
    args.emplace_back(link_->sharded() ? "S" : "");
    if (*flags != '\0' || !in.origin.empty()) {
        args.emplace_back(flags);
    }
    if (!in.origin.empty()) {
        args.emplace_back(in.origin);
    }
    auto shared = std::make_shared<PublishCallback>(std::move(cb));
    auto alive = alive_;
    RedisStoreStats* stats = &stats_;
    bool sent = eval(redis::publishScript(), key, std::move(args),
                     [shared, alive, stats, after](const redisReply* r) {
                         PublishReply reply;
                         if (r == nullptr) {
                             reply.status = StoreResult::kUnavailable;
                             reply.reason = kUnavailable;
                         } else if (!redis::parsePublish(r, &reply, &reply.reason)) {
                             reply.status = StoreResult::kError;
                         } else if (*alive) {
                             stats->published++;
                             if (after) {
                                 after(r);
                             }
                         }
                         (*shared)(std::move(reply));
                     });
    if (!sent) {
        (*shared)(std::move(fail));
    }
}

void RedisStore::info(std::string_view key, InfoCallback cb) {
    auto shared = std::make_shared<InfoCallback>(std::move(cb));
    bool sent =
        channelReady(key) && eval(redis::infoScript(), key, {}, [shared](const redisReply* r) {
            ChannelInfo info;
            std::string reason;
            if (r == nullptr) {
                (*shared)(StoreResult::kUnavailable, info);
            } else if (!redis::parseInfo(r, &info, &reason)) {
                (*shared)(StoreResult::kError, info);
            } else {
                (*shared)(info.found ? StoreResult::kOk : StoreResult::kNotFound, info);
            }
        });
    if (!sent) {
        (*shared)(StoreResult::kUnavailable, ChannelInfo());
    }
}

void RedisStore::remove(std::string_view key, InfoCallback cb) {
    auto shared = std::make_shared<InfoCallback>(std::move(cb));
    auto alive = alive_;
    std::string k(key);
    bool sent =
        channelReady(key) &&
        eval(redis::deleteScript(), key, {link_->sharded() ? "S" : ""},
             [this, shared, alive, k](const redisReply* r) {
                 ChannelInfo info;
                 std::string reason;
                 if (r == nullptr) {
                     (*shared)(StoreResult::kUnavailable, info);
                     return;
                 }
                 if (!redis::parseInfo(r, &info, &reason)) {
                     (*shared)(StoreResult::kError, info);
                     return;
                 }
                 bool later = false;
                 if (info.found && *alive) {
                     // the answer waits for the group to forget it
                     later = groupDeleted(k, r,
                                          [shared, info]() { (*shared)(StoreResult::kOk, info); });
                     // the "D" on the pubsub channel tells the others
                     ChanPtr c = chan(k, false);
                     if (c) {
                         groupLocal(k, -static_cast<int64_t>(c->local));
                         c->local = 0;
                         c->queue.clear();
                     }
                     hub_.channelDeleted(k);
                 }
                 if (!later) {
                     (*shared)(info.found ? StoreResult::kOk : StoreResult::kNotFound, info);
                 }
             });
    if (!sent) {
        (*shared)(StoreResult::kUnavailable, ChannelInfo());
    }
}

void RedisStore::prepare(const std::vector<std::string>& keys,
                         std::function<void(PreparedPtr)> done, const StartSpec* start) {
    struct State {
        PreparedPtr prepared;
        size_t left = 0;
        std::function<void(PreparedPtr)> done;
    };
    auto st = std::make_shared<State>();
    st->prepared = std::make_shared<Prepared>();
    st->done = std::move(done);
    st->left = keys.size() + 1;  // +1: held until every command is sent
    auto finishOne = [st]() {
        if (--st->left == 0) {
            st->done(st->prepared);
        }
    };
    for (const std::string& key : keys) {
        Prepared::Channel& pc = st->prepared->channels[key];
        if (!channelReady(key)) {
            pc.status = StoreResult::kUnavailable;
            pc.reason = kUnavailable;
            finishOne();
            continue;
        }
        if (start != nullptr && keys.size() == 1 && knownSnapshot(key, *start, &pc.snap)) {
            finishOne();
            continue;
        }
        Prepared::Channel* slot = &pc;  // unordered_map nodes do not move
        bool sent = eval(redis::fetchScript(), key, {std::string()},
                         [slot, finishOne](const redisReply* r) {
                             if (r == nullptr) {
                                 slot->status = StoreResult::kUnavailable;
                                 slot->reason = kUnavailable;
                             } else if (!redis::parseSnapshot(r, &slot->snap, &slot->reason)) {
                                 slot->status = StoreResult::kError;
                             }
                             finishOne();
                         });
        if (!sent) {
            pc.status = StoreResult::kUnavailable;
            pc.reason = kUnavailable;
            finishOne();
        }
    }
    finishOne();
}

// A subscriber owed nothing of a channel this worker follows in step: its
// snapshot is what the worker knows (the newest id), no read needed.
bool RedisStore::knownSnapshot(const std::string& key, const StartSpec& start,
                               redis::Snapshot* snap) {
    ChanPtr c = chan(key, false);
    if (!c || !c->knownValid || c->sub != Chan::kSubscribed || c->fetching || c->catchUp) {
        return false;
    }
    if (!(start.kind == StartSpec::kNewest ||
          (start.kind == StartSpec::kAfter && start.after == c->known) ||
          (start.kind != StartSpec::kAfter && c->knownEmpty))) {
        return false;
    }
    snap->found = c->knownFound;
    snap->lastId = c->known;
    snap->published = c->knownFound ? 1 : 0;
    snap->skipped = true;
    snap->messages.clear();
    stats_.snapshotsSkipped++;
    return true;
}

bool RedisStore::requestInfo(std::string_view key, std::string_view replyKey) {
    if (!channelReady(key)) {
        return false;
    }
    return link_->command({link_->sharded() ? "SPUBLISH" : "PUBLISH", redis::pubsubName(key),
                           "I" + std::string(replyKey)},
                          [](const redisReply*) {});
}

bool RedisStore::channelReady(std::string_view key) const {
    return link_->readyFor(redis::channelTag(key));
}

void RedisStore::resetChan(Chan& c) {
    c.sub = Chan::kNone;
    c.fetching = false;
    c.queue.clear();
    c.knownValid = false;
    if (c.plogReading) {
        // the log is read again once subscribed again
        c.plogReading = false;
        presenceLogRead(chan(c.key, false), nullptr);
    }
}

RedisStore::ChanPtr RedisStore::chan(std::string_view key, bool create) {
    auto it = chans_.find(std::string(key));
    if (it != chans_.end()) {
        return it->second;
    }
    if (!create) {
        return nullptr;
    }
    auto c = std::make_shared<Chan>();
    c->key = std::string(key);
    chans_.emplace(c->key, c);
    return c;
}

void RedisStore::subscribe(Subscriber* sub, const SubscribeRequest& req, SubscribeCallback cb) {
    SubscribeReply reply;
    const Prepared::Channel* pc = nullptr;
    if (prepared_ != nullptr) {
        auto it = prepared_->channels.find(std::string(req.key));
        if (it != prepared_->channels.end()) {
            pc = &it->second;
        }
    }
    if (pc == nullptr) {
        reply.status = StoreResult::kUnavailable;
        reply.reason = kUnavailable;
        cb(std::move(reply));
        return;
    }
    if (pc->status != StoreResult::kOk) {
        reply.status = pc->status;
        reply.reason = pc->reason;
        cb(std::move(reply));
        return;
    }
    const redis::Snapshot& snap = pc->snap;
    if (req.existingOnly && !snap.found) {
        reply.status = StoreResult::kNotFound;
        reply.reason = "channel does not exist";
        cb(std::move(reply));
        return;
    }
    redis::SnapshotStart pos = redis::startIn(snap, req.start);
    reply.gap = pos.gap;
    size_t end = snap.messages.size();
    if (req.oneShot && req.maxBacklog != 0 && end - pos.first > req.maxBacklog) {
        end = pos.first + req.maxBacklog;
    }
    reply.backlog.assign(snap.messages.begin() + static_cast<ptrdiff_t>(pos.first),
                         snap.messages.begin() + static_cast<ptrdiff_t>(end));
    if (!(req.oneShot && !reply.backlog.empty())) {
        MsgId cursor = reply.backlog.empty() ? pos.cursor : reply.backlog.back()->id();
        if (!hub_.attach(sub, req.key, cursor, snap.lastId)) {
            reply.backlog.clear();
            reply.status = StoreResult::kError;
            reply.reason = "out of worker memory";
        } else {
            addLocal(std::string(req.key));
            ChanPtr c = chan(req.key, false);
            if (c && c->sub != Chan::kSubscribed && snap.presenceKnown &&
                (!c->plogKnown || snap.presenceSeq < c->pseen)) {
                // the first subscriber of a SUBSCRIBE on its way: the log
                // after its snapshot is read once it is confirmed
                c->plogKnown = true;
                c->pseen = snap.presenceSeq;
            }
            reply.attached = true;
            catchUpFrom(std::string(req.key), cursor);
        }
    }
    cb(std::move(reply));
}

// A subscriber attached from a snapshot: messages this worker received or
// delivered after that snapshot was read (while the pubsub channel was
// already subscribed, so no subscribe confirmation reads the history) are
// read from the history and given to it; the others have them already.
void RedisStore::catchUpFrom(const std::string& key, const MsgId& cursor) {
    ChanPtr c = chan(key, false);
    LocalChannel* lc = hub_.find(key);
    if (!c || lc == nullptr) {
        return;
    }
    MsgId known = c->lastLive > lc->pulled ? c->lastLive : lc->pulled;
    if (!(known > cursor)) {
        return;
    }
    if (!c->catchUp || cursor < c->catchUpFrom) {
        c->catchUpFrom = cursor;
    }
    c->catchUp = true;
    stats_.catchUps++;
    startFetch(c);  // or when the running one is answered
}

void RedisStore::unsubscribe(Subscriber* sub) {
    const LocalChannel* lc = sub->channel();
    if (lc == nullptr) {
        return;
    }
    std::string key = lc->key();
    hub_.detach(sub);
    dropLocal(key);
}

void RedisStore::addLocal(const std::string& key) {
    ChanPtr c = chan(key, true);
    c->local++;
    groupLocal(key, 1);
    if (channelReady(key)) {
        if (c->sub == Chan::kNone) {
            if (link_->subscribe(redis::pubsubName(key))) {
                c->sub = Chan::kSubscribing;
            }
        }
        countChanged(*c, c->local == 1);
    }
}

void RedisStore::dropLocal(const std::string& key) {
    ChanPtr c = chan(key, false);
    if (!c || c->local == 0) {
        return;
    }
    c->local--;
    groupLocal(key, -1);
    if (channelReady(key)) {
        countChanged(*c, c->local == 0);
    }
    // the pubsub channel is left on the next tick (no flapping)
}

// A worker's count goes to Redis at once when it starts or stops having
// subscribers of the channel (what makes a publish 201 rather than 202);
// other changes wait for the next tick, one script for a burst of them.
void RedisStore::countChanged(Chan& c, bool edge) {
    if (edge) {
        c.countDirty = false;
        sendCount(c);
    } else {
        c.countDirty = true;
    }
}

// The script answers the channel's count over all instances before and
// after this one's: the count hook hears each change once in the cluster.
void RedisStore::sendCount(const Chan& c) {
    if (indexOn_ && c.local > 0) {
        sendOccupied(c);
    }
    if (!countHook_) {
        eval(redis::subsScript(), c.key, {instanceId_, toText(c.local), std::to_string(kCountTtl)},
             [](const redisReply*) {});
        return;
    }
    auto alive = alive_;
    std::string key = c.key;
    eval(redis::subsScript(), c.key, {instanceId_, toText(c.local), std::to_string(kCountTtl)},
         [this, alive, key](const redisReply* r) {
             if (!*alive || r == nullptr || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
                 r->element[0]->type != REDIS_REPLY_INTEGER ||
                 r->element[1]->type != REDIS_REPLY_INTEGER || !countHook_) {
                 return;
             }
             long long before = r->element[0]->integer, after = r->element[1]->integer;
             if (before != after && before >= 0 && after >= 0) {
                 countHook_(key, static_cast<uint64_t>(before), static_cast<uint64_t>(after));
             }
         });
}

void RedisStore::startFetch(const ChanPtr& c) {
    LocalChannel* lc = hub_.find(c->key);
    if (lc == nullptr || c->fetching || !channelReady(c->key)) {
        return;
    }
    MsgId after = lc->pulled;
    if (c->catchUp) {
        if (c->catchUpFrom < after) {
            after = c->catchUpFrom;
        }
        c->catchUp = false;
    }
    c->fetching = true;
    c->knownValid = false;
    stats_.fetches++;
    auto alive = alive_;
    bool plog = c->plogWant && c->plogKnown;
    bool sent = eval(redis::fetchScript(), c->key,
                     {formatMsgId(after), plog ? std::to_string(c->pseen) : std::string()},
                     [this, alive, c](const redisReply* r) {
                         if (*alive) {
                             fetched(c, r);
                         }
                     });
    if (!sent) {
        c->fetching = false;
    } else if (plog) {
        c->plogWant = false;
        c->plogReading = true;
    }
}

void RedisStore::deliverOne(const std::string& key, const MessagePtr& m) {
    std::vector<MessagePtr> one;
    try {
        one.push_back(m);
    } catch (const std::bad_alloc&) {
        return;
    }
    hub_.deliver(key, one);
}

void RedisStore::fetched(const ChanPtr& c, const redisReply* r) {
    if (!c->fetching) {
        return;  // the link went down meanwhile; a new fetch follows the reconnect
    }
    c->fetching = false;
    std::vector<MessagePtr> queue;
    queue.swap(c->queue);
    redis::Snapshot snap;
    std::string reason;
    bool ok = r != nullptr && redis::parseSnapshot(r, &snap, &reason);
    if (c->plogReading) {
        c->plogReading = false;
        presenceLogRead(c, ok ? &snap : nullptr);
    }
    if (!ok) {
        return;  // retried after the reconnect that follows a failure
    }
    if (c->sub == Chan::kSubscribed) {
        // in step again: the newest id, and the live messages after it
        c->known = snap.lastId;
        c->knownFound = snap.found;
        c->knownEmpty = snap.messages.empty() && !snap.skipped && queue.empty();
        for (const MessagePtr& m : queue) {
            if (m->prev() == c->known) {
                c->known = m->id();
                c->knownFound = true;
            }
        }
        c->knownValid = true;
    }
    LocalChannel* lc = hub_.find(c->key);
    if (lc == nullptr) {
        if (c->catchUp) {
            c->catchUp = false;  // nobody left to catch up
        }
        return;
    }
    // everything after the fetch's position: subscribers skip what they
    // have (a catch-up reads from before what others were given)
    const std::vector<MessagePtr>& fresh = snap.messages;
    bool any = !fresh.empty() || !queue.empty();
    if (!fresh.empty()) {
        hub_.deliver(c->key, fresh);
    }
    // live messages that are not in the history (buffer length 0) or came
    // after the fetch was answered
    for (const MessagePtr& m : queue) {
        lc = hub_.find(c->key);
        if (lc == nullptr) {
            return;
        }
        if (m->id() > lc->pulled) {
            deliverOne(c->key, m);
        }
    }
    lc = hub_.find(c->key);
    if (!any && lc != nullptr && snap.lastId > lc->pulled) {
        lc->pulled = snap.lastId;  // what was published meanwhile is gone already
    }
    if (c->catchUp || c->plogWant) {
        startFetch(c);  // a subscriber attached meanwhile, or the log is owed
    }
}

void RedisStore::onMessage(std::string_view channel, std::string_view payload) {
    std::string key;
    if (!redis::keyFromPubsubName(channel, &key)) {
        return;
    }
    stats_.liveMessages++;
    if (!payload.empty() && payload[0] == 'I') {
        hub_.infoRequest(key, payload.substr(1));  // pubsub_subscriber_info
        return;
    }
    if (!payload.empty() &&
        (payload[0] == 'J' || payload[0] == 'L' || payload[0] == 'j' || payload[0] == 'l')) {
        onPresenceLive(key, payload);
        return;
    }
    redis::Live live;
    std::string reason;
    if (!redis::parseLive(payload, &live, &reason)) {
        return;
    }
    ChanPtr c = chan(key, false);
    if (live.deleted) {
        if (c) {
            groupLocal(key, -static_cast<int64_t>(c->local));
            c->local = 0;
            c->queue.clear();
            c->lastLive = MsgId();
            c->catchUp = false;
            c->knownValid = false;
        }
        hub_.channelDeleted(key);
        return;
    }
    if (c && live.msg->id() > c->lastLive) {
        c->lastLive = live.msg->id();
    }
    if (c && c->knownValid) {
        c->knownEmpty = false;
        if (live.msg->prev() == c->known) {
            c->known = live.msg->id();
            c->knownFound = true;
        } else if (live.msg->id() > c->known) {
            c->knownValid = false;  // a hole: the next read puts it in step
        }
    }
    LocalChannel* lc = hub_.find(key);
    if (!c || lc == nullptr) {
        return;
    }
    const MessagePtr& m = live.msg;
    if (c->fetching) {
        try {
            c->queue.push_back(m);
        } catch (const std::bad_alloc&) {
            // the fetch result or the next hole's fetch covers it
        }
        return;
    }
    if (m->id() <= lc->pulled) {
        return;  // already delivered
    }
    if (m->prev() == lc->pulled) {
        deliverOne(key, m);
        return;
    }
    // a hole between what this worker delivered and this message: read the
    // history first, then this message
    try {
        c->queue.push_back(m);
    } catch (const std::bad_alloc&) {
    }
    startFetch(c);
}

// A join or leave on the channel's pubsub channel (numbered: through the
// presence log's bookkeeping, presenceLive()).
void RedisStore::onPresenceLive(const std::string& key, std::string_view payload) {
    PresenceEvent ev;
    std::string why;
    uint64_t seq = 0;
    if (!redis::parsePresenceLive(payload, key, &ev, &why, &seq)) {
        return;
    }
    ChanPtr c = seq != 0 ? chan(key, false) : nullptr;
    if (c) {
        presenceLive(c, seq, ev);
    } else {
        hub_.presenceEvent(key, ev);
    }
}

// The known channel of a pubsub channel name (nullptr: not one of ours).
RedisStore::ChanPtr RedisStore::chanOf(std::string_view pubsubChannel, std::string* key) {
    if (!redis::keyFromPubsubName(pubsubChannel, key)) {
        return nullptr;
    }
    return chan(*key, false);
}

void RedisStore::onSubscribed(std::string_view channel) {
    std::string key;
    ChanPtr c = chanOf(channel, &key);
    if (!c) {
        return;
    }
    c->sub = Chan::kSubscribed;
    // joins and leaves made while the SUBSCRIBE was on its way: read with
    // the fetch below
    c->plogWant = c->plogKnown;
    // presence deltas held until this worker listens (presenceFlush)
    presenceSubscribed(key);
    // messages published between the snapshot (or the outage) and now
    startFetch(c);
}

void RedisStore::onUnsubscribed(std::string_view channel) {
    std::string key;
    ChanPtr c = chanOf(channel, &key);
    if (!c) {
        return;
    }
    c->sub = Chan::kNone;
    c->knownValid = false;
    if (c->local > 0 && channelReady(key) && link_->subscribe(redis::pubsubName(key))) {
        c->sub = Chan::kSubscribing;
    }
}

void RedisStore::onReady() {
    for (auto& [key, c] : chans_) {
        resetChan(*c);
        if (c->local > 0) {
            if (link_->subscribe(redis::pubsubName(key))) {
                c->sub = Chan::kSubscribing;
            }
            sendCount(*c);
        }
    }
    groupsReady();
}

void RedisStore::onDown() {
    for (auto& [key, c] : chans_) {
        resetChan(*c);
    }
}

void RedisStore::onNodesChanged() {
    for (auto& [key, c] : chans_) {
        if (!channelReady(key)) {
            // its master is gone: so is the subscription, and a fetch in
            // flight is answered with nothing
            resetChan(*c);
        } else if (c->sub == Chan::kNone && c->local > 0) {
            if (link_->subscribe(redis::pubsubName(key))) {
                c->sub = Chan::kSubscribing;
            }
            sendCount(*c);
        }
    }
}

void RedisStore::tick() {
    ticks_++;
    bool refresh = ticks_ % kCountRefreshTicks == 0;
    for (auto it = chans_.begin(); it != chans_.end();) {
        Chan& c = *it->second;
        bool ready = channelReady(c.key);
        if (c.local == 0 && hub_.find(c.key) == nullptr) {
            if (c.sub == Chan::kSubscribed && ready) {
                if (link_->unsubscribe(redis::pubsubName(c.key))) {
                    c.sub = Chan::kUnsubscribing;
                    c.knownValid = false;
                    presenceForget(c);  // nobody here to owe events to
                }
            }
            if ((c.sub == Chan::kNone || !ready) && !c.fetching && it->second.use_count() == 1) {
                it = chans_.erase(it);
                continue;
            }
        } else if ((refresh || c.countDirty) && ready) {
            c.countDirty = false;
            sendCount(c);
        }
        ++it;
    }
    groupsTick(refresh);
    presenceTick();
}

}  // namespace pubsub
