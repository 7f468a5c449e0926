#include "pubsub/hub.h"

#include <new>

namespace pubsub {

LocalChannel* Hub::find(std::string_view key) {
    auto it = channels_.find(key);
    return it == channels_.end() ? nullptr : it->second.get();
}

bool Hub::attach(Subscriber* sub, std::string_view key, const MsgId& cursor,
                 const MsgId& storeLast) {
    LocalChannel* lc = find(key);
    try {
        if (lc == nullptr) {
            auto owned = std::make_unique<LocalChannel>(std::string(key));
            owned->pulled = storeLast;
            owned->hash = keyedHash(key_, key);
            LocalChannel* fresh = owned.get();
            std::string_view k = fresh->key();
            auto byHash = byHash_.emplace(fresh->hash, fresh);
            try {
                channels_.emplace(k, std::move(owned));
            } catch (const std::bad_alloc&) {
                byHash_.erase(byHash);
                throw;
            }
            lc = fresh;
        }
        lc->subs_.push_back(sub);
    } catch (const std::bad_alloc&) {
        if (lc != nullptr) {
            release(lc);
        }
        return false;
    }
    sub->channel_ = lc;
    sub->index_ = lc->subs_.size() - 1;
    sub->cursor_ = cursor;
    lc->live_++;
    subscribers_++;
    return true;
}

void Hub::release(LocalChannel* lc) {
    if (lc->live_ == 0 && lc->iterating_ == 0) {
        auto range = byHash_.equal_range(lc->hash);
        for (auto it = range.first; it != range.second; ++it) {
            if (it->second == lc) {
                byHash_.erase(it);
                break;
            }
        }
        channels_.erase(std::string_view(lc->key()));
    }
}

void Hub::keysWithHash(uint64_t hash, std::vector<std::string>* out) const {
    auto range = byHash_.equal_range(hash);
    for (auto it = range.first; it != range.second; ++it) {
        out->push_back(it->second->key());
    }
}

void Hub::keys(std::vector<std::string>* out) const {
    out->reserve(out->size() + channels_.size());
    for (const auto& kv : channels_) {
        out->push_back(kv.second->key());
    }
}

bool Hub::detach(Subscriber* sub) {
    LocalChannel* lc = sub->channel_;
    if (lc == nullptr) {
        return false;
    }
    sub->channel_ = nullptr;
    lc->live_--;
    subscribers_--;
    if (lc->iterating_ > 0) {
        lc->subs_[sub->index_] = nullptr;
        lc->holes_ = true;
        return true;
    }
    // Swap-remove: order among subscribers does not matter.
    Subscriber* last = lc->subs_.back();
    lc->subs_[sub->index_] = last;
    last->index_ = sub->index_;
    lc->subs_.pop_back();
    release(lc);
    return true;
}

void Hub::compact(LocalChannel* lc) {
    size_t j = 0;
    for (size_t i = 0; i < lc->subs_.size(); i++) {
        Subscriber* s = lc->subs_[i];
        if (s != nullptr) {
            s->index_ = j;
            lc->subs_[j++] = s;
        }
    }
    lc->subs_.resize(j);
    lc->holes_ = false;
}

void Hub::fanOut(LocalChannel* lc, const std::vector<MessagePtr>& msgs) {
    size_t n = lc->subs_.size();
    for (size_t i = 0; i < n; i++) {
        Subscriber* s = lc->subs_[i];
        if (s == nullptr) {
            continue;
        }
        for (const MessagePtr& m : msgs) {
            if (s->channel_ != lc) {
                break;  // detached itself
            }
            if (m->id() <= s->cursor_) {
                continue;
            }
            if (s->cursor_ < m->prev()) {
                s->gap();
                if (s->channel_ != lc) {
                    break;
                }
            }
            s->cursor_ = m->id();
            s->deliver(m);
        }
    }
}

void Hub::deliver(std::string_view key, const std::vector<MessagePtr>& msgs) {
    LocalChannel* lc = find(key);
    if (lc == nullptr || msgs.empty()) {
        return;
    }
    if (lc->iterating_ > 0) {
        // Re-entered from a subscriber's callback: subscribers later in the
        // list have not had the current messages yet, so these wait.
        try {
            lc->pending_.insert(lc->pending_.end(), msgs.begin(), msgs.end());
        } catch (const std::bad_alloc&) {
            return;  // `pulled` not advanced: the next pull fetches them again
        }
        if (msgs.back()->id() > lc->pulled) {
            lc->pulled = msgs.back()->id();
        }
        return;
    }
    if (msgs.back()->id() > lc->pulled) {
        lc->pulled = msgs.back()->id();
    }
    lc->iterating_++;
    fanOut(lc, msgs);
    while (!lc->pending_.empty()) {
        std::vector<MessagePtr> more;
        more.swap(lc->pending_);
        fanOut(lc, more);
    }
    lc->iterating_--;
    if (lc->holes_) {
        compact(lc);
    }
    release(lc);
}

void Hub::presenceEvent(std::string_view key, const PresenceEvent& ev) {
    LocalChannel* lc = find(key);
    if (lc == nullptr) {
        return;
    }
    lc->iterating_++;
    size_t n = lc->subs_.size();  // subscribers attached meanwhile wait for the next one
    for (size_t i = 0; i < n; i++) {
        Subscriber* s = lc->subs_[i];
        if (s != nullptr) {
            s->presenceEvent(ev);
        }
    }
    lc->iterating_--;
    if (lc->iterating_ == 0) {
        if (lc->holes_) {
            compact(lc);
        }
        release(lc);
    }
}

void Hub::infoRequest(std::string_view key, std::string_view replyKey) {
    LocalChannel* lc = find(key);
    if (lc == nullptr) {
        return;
    }
    lc->iterating_++;
    size_t n = lc->subs_.size();
    for (size_t i = 0; i < n; i++) {
        Subscriber* s = lc->subs_[i];
        if (s != nullptr) {
            s->infoRequest(replyKey);
        }
    }
    lc->iterating_--;
    if (lc->iterating_ == 0) {
        if (lc->holes_) {
            compact(lc);
        }
        release(lc);
    }
}

void Hub::channelDeleted(std::string_view key) {
    LocalChannel* lc = find(key);
    if (lc == nullptr) {
        return;
    }
    lc->iterating_++;
    for (size_t i = 0; i < lc->subs_.size(); i++) {
        Subscriber* s = lc->subs_[i];
        if (s == nullptr) {
            continue;
        }
        lc->subs_[i] = nullptr;
        s->channel_ = nullptr;
        lc->live_--;
        subscribers_--;
        s->channelDeleted();
    }
    lc->holes_ = true;
    lc->pending_.clear();  // messages of the deleted channel
    lc->iterating_--;
    if (lc->iterating_ == 0) {
        compact(lc);
        release(lc);
    }
}

}  // namespace pubsub
