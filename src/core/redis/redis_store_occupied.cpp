// RedisStore: occupied channels of indexed groups (redis_store.h,
// redis_groups.h's <gtag>:occ).
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "pubsub/redis/redis_groups.h"
#include "pubsub/redis/redis_store.h"

namespace pubsub {

void RedisStore::sendOccupied(const Chan& c) {
    std::string_view group, id;
    if (!redis::splitGroupKey(c.key, &group, &id) ||
        group.compare(0, indexPrefix_.size(), indexPrefix_) != 0) {
        return;
    }
    std::string gtag = redis::groupTag(group);
    if (!link_->readyFor(gtag)) {
        return;
    }
    evalKey(redis::groupOccupiedScript(), std::move(gtag),
            {std::string(id), std::to_string(kCountTtl)}, [](const redisReply*) {});
}

namespace {

struct OccupiedQuery {
    RedisStore::OccupiedCallback cb;
    OccupiedList list;
    std::vector<uint64_t> counts;  // per listed id
    size_t left = 0;
    bool failed = false;
    StoreResult failure = StoreResult::kOk;
};

void occupiedDone(OccupiedQuery& q) {
    if (q.failed) {
        q.cb(q.failure, OccupiedList());
        return;
    }
    OccupiedList out;
    out.truncated = q.list.truncated;
    for (size_t i = 0; i < q.list.channels.size(); i++) {
        if (q.counts[i] > 0) {
            q.list.channels[i].subscribers = q.counts[i];
            out.channels.push_back(std::move(q.list.channels[i]));
        }
    }
    q.cb(StoreResult::kOk, std::move(out));
}

}  // namespace

void RedisStore::occupied(std::string_view group, std::string_view prefix, size_t max,
                          OccupiedCallback cb) {
    std::shared_ptr<OccupiedQuery> q;
    try {
        q = std::make_shared<OccupiedQuery>();
        q->cb = std::move(cb);
    } catch (const std::bad_alloc&) {
        cb(StoreResult::kNoMemory, OccupiedList());
        return;
    }
    std::string gtag = redis::groupTag(group);
    std::string g(group);
    auto alive = alive_;
    bool sent = link_->readyFor(gtag) &&
                evalKey(redis::groupListScript(), gtag, {std::string(prefix), std::to_string(max)},
                        [this, q, g, alive](const redisReply* r) {
                            std::vector<std::string> ids;
                            std::string reason;
                            if (r == nullptr) {
                                q->cb(StoreResult::kUnavailable, OccupiedList());
                                return;
                            }
                            if (!redis::parseGroupList(r, &ids, &q->list.truncated, &reason)) {
                                q->cb(StoreResult::kError, OccupiedList());
                                return;
                            }
                            if (!*alive) {
                                q->cb(StoreResult::kUnavailable, OccupiedList());
                                return;
                            }
                            q->counts.assign(ids.size(), 0);
                            q->left = ids.size() + 1;
                            for (std::string& id : ids) {
                                q->list.channels.push_back(OccupiedChannel{std::move(id), 0});
                            }
                            for (size_t i = 0; i < q->list.channels.size(); i++) {
                                info(g + "/" + q->list.channels[i].id,
                                     [q, i](StoreResult res, const ChannelInfo& ci) {
                                         if (res == StoreResult::kOk) {
                                             q->counts[i] = ci.subscribers;
                                         } else if (res != StoreResult::kNotFound) {
                                             q->failed = true;
                                             q->failure = res;
                                         }
                                         if (--q->left == 0) {
                                             occupiedDone(*q);
                                         }
                                     });
                            }
                            if (--q->left == 0) {
                                occupiedDone(*q);
                            }
                        });
    if (!sent) {
        q->cb(StoreResult::kUnavailable, OccupiedList());
    }
}

}  // namespace pubsub
