// RedisStore: channel-group limits in Redis locations (see redis_groups.h
// for the keys and scripts, docs/redis.md "Group limits" for the design and
// how far a limit can be exceeded).
//
// Nothing here runs for a location without limits: publish() and the glue's
// prepare() only come here when the location has a limit.

#include <algorithm>
#include <iterator>
#include <memory>
#include <utility>

#include "pubsub/redis/redis_groups.h"
#include "pubsub/redis/redis_store.h"

namespace pubsub {

namespace {

constexpr unsigned kGroupIdleRefreshes = 6;  // forgotten after a minute with nothing local
constexpr size_t kRefreshBatch = 256;        // channel ids per group refresh command

std::string num(uint64_t v) {
    return std::to_string(v);
}

void ignoreReply(const redisReply*) {}

}  // namespace

RedisStore::Group* RedisStore::trackGroup(std::string_view name) {
    auto it = groups_.find(std::string(name));
    if (it != groups_.end()) {
        it->second.idle = 0;
        return &it->second;
    }
    Group g;
    std::string_view group, id;
    for (const auto& [key, c] : chans_) {
        if (redis::splitGroupKey(key, &group, &id) && group == name) {
            g.local += c->local;
        }
    }
    return &groups_.emplace(std::string(name), g).first->second;
}

void RedisStore::sendGroupCount(const std::string& name, Group& g,
                                std::vector<std::string> channels, bool force) {
    uint64_t count = g.local + g.pending;
    if (!link_->readyFor(redis::groupTag(name)) ||
        (!force && channels.empty() && count == g.written)) {
        return;
    }
    std::vector<std::string> args;
    args.reserve(3 + channels.size());
    args.push_back(instanceId_);
    args.push_back(num(count));
    args.push_back(num(kCountTtl));
    for (std::string& c : channels) {
        args.push_back(std::move(c));
    }
    if (evalKey(redis::groupSubsScript(), redis::groupTag(name), std::move(args), ignoreReply)) {
        g.written = count;
    }
}

void RedisStore::groupLocal(const std::string& key, int64_t delta) {
    if (groups_.empty() || delta == 0) {
        return;
    }
    std::string_view name, id;
    if (!redis::splitGroupKey(key, &name, &id)) {
        return;
    }
    auto it = groups_.find(std::string(name));
    if (it == groups_.end()) {
        return;
    }
    Group& g = it->second;
    if (delta < 0 && static_cast<uint64_t>(-delta) > g.local) {
        g.local = 0;
    } else {
        g.local = static_cast<uint64_t>(static_cast<int64_t>(g.local) + delta);
    }
    sendGroupCount(it->first, g, {}, false);
}

void RedisStore::groupsTick(bool refresh) {
    if (groups_.empty() || !refresh) {
        return;
    }
    // recount from the channels (a deleted channel's subscribers leave
    // without going through dropLocal) and refresh the expiry of the
    // channels that have subscribers here
    std::unordered_map<std::string, std::vector<std::string>, KeyedStringHash> ids;
    for (auto& [name, g] : groups_) {
        g.local = 0;
    }
    std::string_view group, id;
    for (const auto& [key, c] : chans_) {
        if (c->local == 0 || !redis::splitGroupKey(key, &group, &id)) {
            continue;
        }
        auto it = groups_.find(std::string(group));
        if (it == groups_.end()) {
            continue;
        }
        it->second.local += c->local;
        if (it->second.channels) {
            ids[it->first].emplace_back(id);
        }
    }
    for (auto it = groups_.begin(); it != groups_.end();) {
        Group& g = it->second;
        std::vector<std::string>& mine = ids[it->first];
        size_t at = 0;
        do {
            size_t n = std::min(kRefreshBatch, mine.size() - at);
            std::vector<std::string> batch(std::make_move_iterator(mine.begin() + at),
                                           std::make_move_iterator(mine.begin() + at + n));
            at += n;
            sendGroupCount(it->first, g, std::move(batch), true);
        } while (at < mine.size());
        if (g.local == 0 && g.pending == 0 && ++g.idle > kGroupIdleRefreshes) {
            it = groups_.erase(it);
            continue;
        }
        ++it;
    }
}

void RedisStore::groupsReady() {
    for (auto& [name, g] : groups_) {
        sendGroupCount(name, g, {}, true);
    }
}

bool RedisStore::groupDeleted(const std::string& key, const redisReply* r,
                              std::function<void()> then) {
    std::string_view group, id;
    if (!redis::splitGroupKey(key, &group, &id)) {
        return false;
    }
    if (!redis::deletedGroupFlag(r) && groups_.count(std::string(group)) == 0) {
        return false;
    }
    // the answer waits, so that a request after it finds the slot free
    return evalKey(redis::groupDeleteScript(), redis::groupTag(group), {std::string(id)},
                   [then](const redisReply*) { then(); });
}

void RedisStore::prepare(const std::vector<std::string>& keys,
                         std::function<void(PreparedPtr)> done, const GroupLimits& limits,
                         bool existingOnly, const StartSpec* start) {
    uint64_t maxChannels = existingOnly ? 0 : limits.maxChannels;
    uint64_t maxSubs = limits.maxSubscribers;
    if ((maxChannels == 0 && maxSubs == 0) || !link_->ready()) {
        prepare(keys, std::move(done), start);
        return;
    }
    struct Check {
        std::string key;
        std::string group;
        bool failed = false;    // no (usable) answer: the request fails
        bool reserved = false;  // Redis counted one more subscriber of this worker
        StoreResult failure = StoreResult::kUnavailable;
        std::string reason;
        redis::GroupVerdict verdict;
    };
    struct State {
        PreparedPtr prepared;
        std::vector<Check> checks;
        size_t left = 0;
        std::function<void(PreparedPtr)> done;
    };
    auto st = std::make_shared<State>();
    st->done = std::move(done);
    for (const std::string& key : keys) {
        std::string_view group, id;
        if (redis::splitGroupKey(key, &group, &id)) {
            Check c;
            c.key = key;
            c.group = std::string(group);
            st->checks.push_back(std::move(c));
        }
    }
    st->left = st->checks.size() + 2;  // + the snapshots + held until all is sent
    auto alive = alive_;
    auto finish = [this, st, alive]() {
        if (--st->left != 0) {
            return;
        }
        for (Check& c : st->checks) {
            auto it = st->prepared->channels.find(c.key);
            if (it == st->prepared->channels.end() || it->second.status != StoreResult::kOk) {
                continue;
            }
            Prepared::Channel& pc = it->second;
            if (c.failed) {
                pc.status = c.failure;
                pc.reason = c.reason;
            } else if (c.verdict.subscribers) {
                pc.status = StoreResult::kForbidden;
                pc.reason = storeStatusReason(StoreStatus::kGroupSubscribers);
            } else if (c.verdict.channels && !pc.snap.found) {
                pc.status = StoreResult::kForbidden;
                pc.reason = storeStatusReason(StoreStatus::kGroupChannels);
            }
        }
        // reservations end before the handler runs, so that its attach
        // writes the exact count; if nothing attached, the count is written
        // after it (Redis still holds the reservation)
        std::vector<std::string> settle;
        if (*alive) {
            for (Check& c : st->checks) {
                auto gi = groups_.find(c.group);
                if (c.reserved && gi != groups_.end()) {
                    gi->second.pending -= gi->second.pending > 0 ? 1 : 0;
                    gi->second.written = ~0ULL;  // Redis counted the reservation
                    settle.push_back(c.group);
                }
            }
        }
        st->done(st->prepared);
        if (*alive) {
            for (const std::string& name : settle) {
                auto gi = groups_.find(name);
                if (gi != groups_.end()) {
                    sendGroupCount(gi->first, gi->second, {}, false);
                }
            }
        }
    };
    for (size_t i = 0; i < st->checks.size(); i++) {
        Check& c = st->checks[i];
        std::string_view group, id;
        redis::splitGroupKey(c.key, &group, &id);
        Group* g = trackGroup(c.group);
        if (maxSubs != 0) {
            g->pending++;
        }
        if (maxChannels != 0) {
            g->channels = true;
        }
        std::vector<std::string> args = {
            std::string(id), num(maxChannels), num(maxSubs), instanceId_, "0", "0", "0",
            num(kCountTtl)};
        std::string name = c.group;
        bool sent = evalKey(redis::groupCheckScript(), redis::groupTag(group), std::move(args),
                            [this, st, alive, finish, i, name, maxSubs](const redisReply* r) {
                                Check& ck = st->checks[i];
                                bool ok = r != nullptr &&
                                          redis::parseGroupVerdict(r, &ck.verdict, &ck.reason);
                                if (!ok) {
                                    ck.failed = true;
                                    if (r == nullptr) {
                                        ck.reason = kUnavailable;
                                    } else {
                                        ck.failure = StoreResult::kError;
                                    }
                                }
                                if (maxSubs != 0 && *alive) {
                                    auto gi = groups_.find(name);
                                    if (ok && !ck.verdict.subscribers && !ck.verdict.memory) {
                                        ck.reserved = true;  // settled once all answered
                                    } else if (gi != groups_.end()) {
                                        gi->second.pending -= gi->second.pending > 0 ? 1 : 0;
                                        // unknown whether Redis counted it: write the count
                                        sendGroupCount(gi->first, gi->second, {}, !ok);
                                    }
                                }
                                finish();
                            });
        if (!sent) {
            c.failed = true;
            c.reason = kUnavailable;
            if (maxSubs != 0 && g->pending > 0) {
                g->pending--;
            }
            finish();
        }
    }
    prepare(
        keys,
        [st, finish](PreparedPtr p) {
            st->prepared = std::move(p);
            finish();
        },
        start);
    finish();
}

void RedisStore::publishLimited(std::string_view key, const PublishInput& in, PublishCallback cb) {
    std::string_view group, id;
    if (!redis::splitGroupKey(key, &group, &id)) {
        publishNow(key, in, std::move(cb), "", nullptr);  // no group: no limit
        return;
    }
    if (!link_->readyFor(redis::groupTag(group))) {
        PublishReply fail;  // the limit cannot be checked
        fail.status = StoreResult::kUnavailable;
        fail.reason = kUnavailable;
        cb(std::move(fail));
        return;
    }
    // the request's buffers are only valid during this call
    struct Op {
        std::string key, group, id, data, contentType, eventName, origin;
        PublishInput in;
        PublishCallback cb;
    };
    auto op = std::make_shared<Op>();
    op->key = std::string(key);
    op->group = std::string(group);
    op->id = std::string(id);
    op->data = std::string(in.data);
    op->contentType = std::string(in.contentType);
    op->eventName = std::string(in.eventName);
    op->origin = std::string(in.origin);
    op->in = in;
    op->in.data = op->data;
    op->in.contentType = op->contentType;
    op->in.eventName = op->eventName;
    op->in.origin = op->origin;
    op->cb = std::move(cb);
    const GroupLimits& lim = in.limits;
    if (lim.maxChannels != 0) {
        trackGroup(group)->channels = true;
    }
    uint64_t size =
        in.maxMessages > 0 ? in.data.size() + in.contentType.size() + in.eventName.size() : 0;

    auto alive = alive_;
    auto answer = [op](StoreResult status, std::string reason) {
        PublishReply reply;
        reply.status = status;
        reply.reason = std::move(reason);
        op->cb(std::move(reply));
    };
    // the publish itself, then the group's record of the channel and sizes;
    // the answer waits for that record, so that a publish after it (on any
    // instance) counts this one
    auto go = [this, op, alive, answer]() {
        if (!*alive) {
            answer(StoreResult::kUnavailable, kUnavailable);
            return;
        }
        bool memory = op->in.limits.maxBytes != 0;
        bool channels = op->in.limits.maxChannels != 0;
        int64_t life = op->in.ttl > 0 ? op->in.ttl + 60 : 0;
        auto held = std::make_shared<std::unique_ptr<PublishReply>>();
        auto waiting = std::make_shared<bool>(false);
        auto deliver = [op, held]() {
            if (*held) {
                op->cb(std::move(**held));
                held->reset();
            }
        };
        publishNow(
            op->key, op->in,
            [op, held, waiting](PublishReply&& reply) {
                if (!*waiting) {
                    op->cb(std::move(reply));
                    return;
                }
                *held = std::make_unique<PublishReply>(std::move(reply));
            },
            memory ? "GB" : "G",
            [this, op, alive, memory, channels, life, waiting, deliver](const redisReply* r) {
                std::string sizes = "-";
                if (memory && !redis::publishedSizes(r, &sizes)) {
                    sizes = "-";
                }
                if (*alive) {
                    *waiting = evalKey(redis::groupUpdateScript(), redis::groupTag(op->group),
                                       {op->id, std::to_string(life), channels ? "1" : "0", sizes},
                                       [deliver](const redisReply*) { deliver(); });
                }
            });
    };
    std::vector<std::string> args = {
        op->id,    num(lim.maxChannels), "0",           instanceId_, num(lim.maxBytes),
        num(size), num(in.maxMessages),  num(kCountTtl)};
    bool sent = evalKey(
        redis::groupCheckScript(), redis::groupTag(group), std::move(args),
        [this, op, alive, answer, go](const redisReply* r) {
            redis::GroupVerdict v;
            std::string why;
            if (r == nullptr || !*alive) {
                answer(StoreResult::kUnavailable, kUnavailable);
                return;
            }
            if (!redis::parseGroupVerdict(r, &v, &why)) {
                answer(StoreResult::kError, why);
                return;
            }
            if (!v.channels) {
                if (v.memory) {
                    answer(StoreResult::kForbidden, storeStatusReason(StoreStatus::kGroupMemory));
                } else {
                    go();
                }
                return;
            }
            // the group is full and does not list the channel: only a
            // channel that exists in Redis (made before the limit, or by a
            // location without one) may still be published to
            bool memory = v.memory;
            bool asked =
                link_->command({"EXISTS", redis::channelTag(op->key)},
                               [alive, answer, go, memory](const redisReply* e) {
                                   if (e == nullptr || !*alive) {
                                       answer(StoreResult::kUnavailable, kUnavailable);
                                   } else if (e->type != REDIS_REPLY_INTEGER || e->integer == 0) {
                                       answer(StoreResult::kForbidden,
                                              storeStatusReason(StoreStatus::kGroupChannels));
                                   } else if (memory) {
                                       answer(StoreResult::kForbidden,
                                              storeStatusReason(StoreStatus::kGroupMemory));
                                   } else {
                                       go();
                                   }
                               });
            if (!asked) {
                answer(StoreResult::kUnavailable, kUnavailable);
            }
        });
    if (!sent) {
        answer(StoreResult::kUnavailable, kUnavailable);
    }
}

}  // namespace pubsub
