// RedisStore: presence in Redis mode (see redis_presence.h for the keys and
// scripts, docs/redis.md "Presence" for the design).

#include <new>
#include <utility>

#include "pubsub/redis/redis_presence.h"
#include "pubsub/redis/redis_store.h"

namespace pubsub {

namespace {

constexpr size_t kMaxSweep = 16;  // dead instances handled per refresh

std::string num(uint64_t v) {
    return std::to_string(v);
}

// The pupdate arguments before the members.
std::vector<std::string> updateArgs(const std::string& instance, const char* mode, uint64_t version,
                                    uint64_t validMs, uint64_t conns, uint64_t anon, bool sharded,
                                    size_t members) {
    std::vector<std::string> args;
    args.reserve(7 + 4 * members);
    args.push_back(instance);
    args.emplace_back(mode);
    args.push_back(num(version));
    args.push_back(num(validMs));
    args.push_back(num(conns));
    args.push_back(num(anon));
    args.emplace_back(sharded ? "S" : "");
    return args;
}

}  // namespace

// Join and leave made by a script of this worker: the hook, then the user.
void RedisStore::presenceEvents(const std::string& key, const redisReply* r) {
    PresenceEvents evs;
    std::string reason;
    if (r == nullptr || !redis::parsePresenceEvents(r, key, &evs, &reason)) {
        stats_.presenceErrors++;
        return;  // the next refresh sends this instance's part again
    }
    for (PresenceEvent& ev : evs) {
        // the hook hears online before join and leave before offline, as
        // with the memory store
        bool join = ev.type == PresenceEventType::kJoin;
        auto alive = alive_;
        auto event = std::make_shared<PresenceEvent>(std::move(ev));
        if (!join && presenceHook_) {
            presenceHook_(*event);
        }
        bool sent = evalKey(
            redis::presenceUserScript(), redis::userKey(event->id), {join ? "+" : "-", key},
            [this, alive, event, join](const redisReply* u) {
                if (!*alive) {
                    return;
                }
                bool changed = u != nullptr && u->type == REDIS_REPLY_INTEGER && u->integer == 1;
                if (u == nullptr || u->type != REDIS_REPLY_INTEGER) {
                    stats_.presenceErrors++;
                }
                if (!presenceHook_) {
                    return;
                }
                if (changed) {
                    PresenceEvent user = *event;
                    user.channel.clear();
                    user.type = join ? PresenceEventType::kOnline : PresenceEventType::kOffline;
                    presenceHook_(user);
                }
                if (join) {
                    presenceHook_(*event);
                }
            });
        if (!sent && join && presenceHook_) {
            presenceHook_(*event);
        }
    }
}

void RedisStore::presenceUpdate(const std::string& key, std::vector<std::string> args) {
    auto alive = alive_;
    stats_.presenceUpdates++;
    (void)eval(redis::presenceUpdateScript(), key, std::move(args),
               [this, alive, key](const redisReply* r) {
                   if (*alive) {
                       presenceEvents(key, r);
                   }
               });
}

void RedisStore::presenceDelta(const std::string& instance, const PresenceDelta& d,
                               uint64_t validMs) {
    if (!channelReady(d.channel)) {
        return;  // the refresh after the reconnect sends the whole part
    }
    // gathered per channel until presenceFlush(): one script for every
    // change of the channel in this event loop turn
    try {
        PendingDeltas& p = presencePending_[d.channel];
        p.instance = instance;
        p.validMs = validMs;
        p.version = d.version;
        p.connections = d.connections;
        p.anonymous = d.anonymous;
        if (d.member) {
            p.entries.push_back(d.id);
            p.entries.push_back(std::to_string(d.memberConnections));
            p.entries.push_back(d.info);
            p.entries.push_back(num(d.opts));
            p.entries.push_back(num(d.version));
        }
    } catch (const std::bad_alloc&) {
        stats_.presenceErrors++;  // the next refresh sends the whole part
    }
    if (d.member && d.memberConnections == 1) {
        // the sweep finds this channel if the instance dies before its
        // refresh: registered with the others of this second on the tick
        try {
            if (presenceNew_.empty()) {
                presenceNew_.push_back(num(validMs * 4 + 60000));
                presenceNew_.emplace_back("add");
                presenceNewOf_ = instance;
            }
            presenceNew_.push_back(d.channel);
        } catch (const std::bad_alloc&) {
            // the next refresh registers it
        }
    }
}

bool RedisStore::presenceFlush() {
    if (presencePending_.empty()) {
        return false;
    }
    std::unordered_map<std::string, PendingDeltas, KeyedStringHash> pending;
    pending.swap(presencePending_);
    for (auto& [key, p] : pending) {
        if (!channelReady(key)) {
            continue;
        }
        // While this worker's SUBSCRIBE to the channel is on its way, its
        // joins would be published before it listens: its own subscribers
        // (the first one's own join among them) would miss them. They wait
        // for onSubscribed(), as in memory mode where they see them.
        auto it = chans_.find(key);
        if (it != chans_.end() && it->second->local > 0 && it->second->sub == Chan::kSubscribing) {
            presencePending_.emplace(key, std::move(p));
            continue;
        }
        presenceSend(key, p);
    }
    return true;
}

void RedisStore::presenceSend(const std::string& key, PendingDeltas& p) {
    std::vector<std::string> args = updateArgs(p.instance, "d", p.version, p.validMs, p.connections,
                                               p.anonymous, link_->sharded(), p.entries.size() / 5);
    for (std::string& e : p.entries) {
        args.push_back(std::move(e));
    }
    presenceUpdate(key, std::move(args));
}

// This worker listens to the channel now: the deltas held for it go out.
void RedisStore::presenceSubscribed(const std::string& key) {
    auto it = presencePending_.find(key);
    if (it == presencePending_.end() || !channelReady(key)) {
        return;
    }
    PendingDeltas p = std::move(it->second);
    presencePending_.erase(it);
    presenceSend(key, p);
}

void RedisStore::presenceTick() {
    if (presenceNew_.empty()) {
        return;
    }
    std::vector<std::string> args;
    args.swap(presenceNew_);
    (void)evalKey(redis::presenceChannelsScript(), redis::instanceChannelsKey(presenceNewOf_),
                  std::move(args), [](const redisReply*) {});
}

void RedisStore::presenceRefresh(const std::string& instance,
                                 const std::vector<PresenceChannelSnapshot>& channels,
                                 uint64_t validMs, uint64_t graceMs) {
    if (!link_->ready()) {
        return;
    }
    auto alive = alive_;
    std::vector<std::string> keys{num(validMs * 4 + 60000), "replace"};
    for (const PresenceChannelSnapshot& c : channels) {
        // a beat with the part's digest; the whole part only if Redis'
        // differs (a delta lost in an outage, Redis restarted)
        auto full = std::make_shared<std::vector<std::string>>(
            updateArgs(instance, "s", c.version, validMs, c.connections, c.anonymous,
                       link_->sharded(), c.members.size()));
        for (const PresenceSnapshotMember& m : c.members) {
            full->push_back(m.id);
            full->push_back(num(m.connections));
            full->push_back(m.info);
            full->push_back(num(m.opts));
        }
        std::vector<std::string> beat = updateArgs(instance, "b", c.version, validMs, c.connections,
                                                   c.anonymous, link_->sharded(), 1);
        beat.push_back(num(redis::presenceDigest(c.members)));
        keys.push_back(c.channel);
        std::string key = c.channel;
        stats_.presenceUpdates++;
        (void)eval(redis::presenceUpdateScript(), key, std::move(beat),
                   [this, alive, key, full](const redisReply* r) {
                       if (!*alive) {
                           return;
                       }
                       presenceEvents(key, r);
                       if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements > 1 &&
                           r->element[1]->type == REDIS_REPLY_INTEGER &&
                           r->element[1]->integer == 1) {
                           stats_.presenceResyncs++;
                           presenceUpdate(key, std::move(*full));
                       }
                   });
    }
    (void)evalKey(redis::presenceChannelsScript(), redis::instanceChannelsKey(instance),
                  std::move(keys), [](const redisReply*) {});
    (void)evalKey(redis::presenceBeatScript(), redis::instancesKey(),
                  {instance, num(validMs), num(graceMs), num(kMaxSweep)},
                  [this, alive, instance](const redisReply* r) {
                      if (*alive) {
                          presenceSweep(instance, r);
                      }
                  });
}

// The channels of each dead instance are reaped (each leave happens in the
// one script run that removes the member's last part), then the instance
// is forgotten.  Several instances may sweep the same dead one at once:
// the scripts make that harmless.
void RedisStore::presenceSweep(const std::string& instance, const redisReply* dead) {
    if (dead == nullptr || dead->type != REDIS_REPLY_ARRAY) {
        return;
    }
    auto alive = alive_;
    for (size_t i = 0; i < dead->elements; i++) {
        const redisReply* e = dead->element[i];
        if (e == nullptr || e->type != REDIS_REPLY_STRING) {
            continue;
        }
        std::string other(e->str, e->len);
        if (other == instance) {
            continue;  // this one is alive: its validity is renewed by the beat
        }
        std::string setKey = redis::instanceChannelsKey(other);
        (void)link_->command({"SMEMBERS", setKey}, [this, alive, other,
                                                    setKey](const redisReply* r) {
            if (!*alive || r == nullptr || r->type != REDIS_REPLY_ARRAY) {
                return;
            }
            auto left = std::make_shared<size_t>(r->elements + 1);
            auto failed = std::make_shared<bool>(false);
            auto finish = [this, alive, other, setKey, left, failed]() {
                if (--*left != 0 || *failed || !*alive) {
                    return;
                }
                (void)link_->command({"DEL", setKey}, [](const redisReply*) {});
                (void)link_->command({"ZREM", redis::instancesKey(), other},
                                     [](const redisReply*) {});
            };
            for (size_t j = 0; j < r->elements; j++) {
                const redisReply* k = r->element[j];
                if (k == nullptr || k->type != REDIS_REPLY_STRING) {
                    finish();
                    continue;
                }
                std::string key(k->str, k->len);
                stats_.presenceSwept++;
                bool sent = eval(redis::presenceReapScript(), key, {link_->sharded() ? "S" : ""},
                                 [this, alive, key, finish, failed](const redisReply* rr) {
                                     if (!*alive) {
                                         return;
                                     }
                                     if (rr == nullptr || rr->type != REDIS_REPLY_ARRAY) {
                                         *failed = true;
                                     } else {
                                         presenceEvents(key, rr);
                                     }
                                     finish();
                                 });
                if (!sent) {
                    *failed = true;
                    finish();
                }
            }
            finish();
        });
    }
}

void RedisStore::presenceStats(std::string_view key, PresenceStatsCallback cb) {
    auto shared = std::make_shared<PresenceStatsCallback>(std::move(cb));
    auto alive = alive_;
    std::string k(key);
    bool sent =
        channelReady(key) && eval(redis::presenceStatsScript(), key, {link_->sharded() ? "S" : ""},
                                  [this, alive, shared, k](const redisReply* r) {
                                      PresenceStats st;
                                      std::string reason;
                                      if (r == nullptr) {
                                          (*shared)(StoreResult::kUnavailable, st);
                                          return;
                                      }
                                      if (!redis::parsePresenceStats(r, &st, &reason)) {
                                          (*shared)(StoreResult::kError, st);
                                          return;
                                      }
                                      if (*alive) {
                                          presenceEvents(k, r);
                                      }
                                      (*shared)(StoreResult::kOk, st);
                                  });
    if (!sent) {
        (*shared)(StoreResult::kUnavailable, PresenceStats());
    }
}

void RedisStore::presencePage(std::string_view key, size_t limit, std::string_view cursor,
                              PresencePageCallback cb) {
    uint64_t after = 0;
    if (!cursor.empty() && !redis::parsePresenceListCursor(cursor, &after)) {
        cb(StoreResult::kNotFound, PresencePage());
        return;
    }
    auto shared = std::make_shared<PresencePageCallback>(std::move(cb));
    auto alive = alive_;
    std::string k(key);
    bool sent =
        channelReady(key) &&
        eval(redis::presenceListScript(), key,
             {link_->sharded() ? "S" : "", cursor.empty() ? std::string() : num(after), num(limit)},
             [this, alive, shared, k](const redisReply* r) {
                 PresencePage page;
                 std::string reason;
                 if (r == nullptr) {
                     (*shared)(StoreResult::kUnavailable, std::move(page));
                     return;
                 }
                 if (!redis::parsePresenceList(r, &page, &reason)) {
                     (*shared)(StoreResult::kError, PresencePage());
                     return;
                 }
                 if (*alive) {
                     presenceEvents(k, r);
                 }
                 (*shared)(StoreResult::kOk, std::move(page));
             });
    if (!sent) {
        (*shared)(StoreResult::kUnavailable, PresencePage());
    }
}

// The user's key lists its channels; each is checked against the channel's
// members before answering, so that a channel left behind by an instance
// that died between a leave and the user's update is not reported.
void RedisStore::presenceUser(std::string_view id, PresenceUserCallback cb) {
    auto shared = std::make_shared<PresenceUserCallback>(std::move(cb));
    std::string userKey = redis::userKey(id);
    auto alive = alive_;
    std::string member(id);
    bool sent = link_->readyFor(userKey) &&
                evalKey(redis::presenceUserGetScript(), userKey, {},
                        [this, alive, shared, member](const redisReply* r) {
                            PresenceUserState st;
                            std::string reason;
                            if (r == nullptr) {
                                (*shared)(StoreResult::kUnavailable, std::move(st));
                            } else if (!redis::parsePresenceUser(r, &st, &reason)) {
                                (*shared)(StoreResult::kError, PresenceUserState());
                            } else if (st.channels.empty() || !*alive) {
                                (*shared)(StoreResult::kOk, std::move(st));
                            } else {
                                presenceUserCheck(member, std::move(st), shared);
                            }
                        });
    if (!sent) {
        (*shared)(StoreResult::kUnavailable, PresenceUserState());
    }
}

void RedisStore::presenceUserCheck(const std::string& id, PresenceUserState st,
                                   std::shared_ptr<PresenceUserCallback> cb) {
    struct Check {
        PresenceUserState st;
        std::vector<char> member;  // per channel: still a member
        size_t left = 0;
        bool failed = false;
        std::shared_ptr<PresenceUserCallback> cb;
    };
    auto chk = std::make_shared<Check>();
    size_t n = st.channels.size();
    chk->st = std::move(st);
    chk->member.assign(n, 0);
    chk->left = n + 1;  // +1: held until every command is sent
    chk->cb = std::move(cb);
    auto finish = [chk]() {
        if (--chk->left != 0) {
            return;
        }
        if (chk->failed) {
            (*chk->cb)(StoreResult::kUnavailable, PresenceUserState());
            return;
        }
        std::vector<std::string> kept;
        for (size_t i = 0; i < chk->st.channels.size(); i++) {
            if (chk->member[i]) {
                kept.push_back(std::move(chk->st.channels[i]));
            }
        }
        chk->st.channels = std::move(kept);
        chk->st.online = !chk->st.channels.empty();
        if (!chk->st.online) {
            chk->st.onlineSince = 0;
        }
        (*chk->cb)(StoreResult::kOk, std::move(chk->st));
    };
    for (size_t i = 0; i < n; i++) {
        std::string zkey = redis::channelTag(chk->st.channels[i]) + ":pz";
        bool sent = link_->readyFor(zkey) &&
                    link_->command({"ZSCORE", zkey, id}, [chk, i, finish](const redisReply* r) {
                        if (r == nullptr || r->type == REDIS_REPLY_ERROR) {
                            chk->failed = true;
                        } else {
                            chk->member[i] = r->type != REDIS_REPLY_NIL;
                        }
                        finish();
                    });
        if (!sent) {
            chk->failed = true;
            finish();
        }
    }
    finish();
}

// A numbered join or leave from the channel's pubsub channel: held while
// the log is read, dropped when the log gave it already.
void RedisStore::presenceLive(const ChanPtr& c, uint64_t seq, const PresenceEvent& ev) {
    if (hub_.find(c->key) == nullptr) {
        c->plogWant = false;  // nobody here to give them to
        c->pqueue.clear();
        return;
    }
    if ((c->plogReading || c->plogWant) && c->pqueue.size() < kPresenceHeld) {
        try {
            c->pqueue.emplace_back(seq, ev);
            return;
        } catch (const std::bad_alloc&) {
        }
    }
    // more than the log could give anyway: what is held goes first
    c->plogWant = false;
    presenceHeld(*c);
    presenceOnce(*c, seq, ev);
}

// The log a fetch read (nullptr: the read failed or the link went down),
// then the live events held meanwhile, each once and in order.
void RedisStore::presenceLogRead(const ChanPtr& c, const redis::Snapshot* snap) {
    if (!c) {
        return;
    }
    if (snap != nullptr) {
        for (const std::string& e : snap->presenceLog) {
            PresenceEvent ev;
            std::string why;
            uint64_t seq = 0;
            if (redis::parsePresenceLive(e, c->key, &ev, &why, &seq)) {
                presenceOnce(*c, seq, ev);
            }
        }
    } else {
        c->plogWant = c->plogKnown;  // with the next fetch
    }
    presenceHeld(*c);
}

// Gives the event unless the log or a live message gave it already.
void RedisStore::presenceOnce(Chan& c, uint64_t seq, const PresenceEvent& ev) {
    if (c.plogKnown && seq <= c.pseen) {
        return;
    }
    c.pseen = seq;
    c.plogKnown = true;
    hub_.presenceEvent(c.key, ev);
}

void RedisStore::presenceHeld(Chan& c) {
    std::vector<std::pair<uint64_t, PresenceEvent>> held;
    held.swap(c.pqueue);
    for (auto& [seq, ev] : held) {
        presenceOnce(c, seq, ev);
    }
}

void RedisStore::presenceForget(Chan& c) {
    c.plogKnown = false;
    c.plogWant = false;
    c.pseen = 0;
    c.pqueue.clear();
}

}  // namespace pubsub
