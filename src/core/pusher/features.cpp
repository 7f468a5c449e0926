#include "pubsub/pusher/features.h"

#include <algorithm>
#include <utility>

namespace pubsub {
namespace pusher {

namespace {

bool startsWith(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

}  // namespace

bool isCacheChannel(std::string_view name) {
    return startsWith(name, "cache-") || startsWith(name, "private-cache-") ||
           startsWith(name, "private-encrypted-cache-") || startsWith(name, "presence-cache-");
}

bool cacheableEvent(std::string_view eventName) {
    return !startsWith(eventName, "client-") && !startsWith(eventName, "pusher:") &&
           !startsWith(eventName, "pusher_internal:");
}

const Message* cachedEvent(const std::vector<MessagePtr>& backlog, int64_t now) {
    for (auto it = backlog.rbegin(); it != backlog.rend(); ++it) {
        const Message* m = it->get();
        if (m == nullptr) {
            continue;
        }
        if (m->id().time < now - kCacheTtl) {
            return nullptr;  // the older ones are older still
        }
        if (cacheableEvent(m->eventName())) {
            return m;
        }
    }
    return nullptr;
}

std::string subscriptionCountData(uint64_t count) {
    return "{\"subscription_count\":" + std::to_string(count) + "}";
}

void appendCount(std::string& batch, std::string_view channel, uint64_t count) {
    batch += std::to_string(count);
    batch += ' ';
    batch += channel;
    batch += '\n';
}

bool parseCounts(std::string_view batch, std::vector<ChannelCount>* out) {
    bool clean = true;
    while (!batch.empty()) {
        size_t nl = batch.find('\n');
        std::string_view line = batch.substr(0, nl);
        batch = nl == std::string_view::npos ? std::string_view() : batch.substr(nl + 1);

        size_t sp = line.find(' ');
        if (sp == 0 || sp == std::string_view::npos || sp > 20 || sp + 1 >= line.size()) {
            clean = false;
            continue;
        }
        uint64_t n = 0;
        bool digits = true;
        for (size_t i = 0; i < sp; i++) {
            char c = line[i];
            uint64_t d = static_cast<uint64_t>(c - '0');
            if (c < '0' || c > '9' || n > UINT64_MAX / 10 ||
                (n == UINT64_MAX / 10 && d > UINT64_MAX % 10)) {
                digits = false;
                break;
            }
            n = n * 10 + d;
        }
        std::string_view channel = line.substr(sp + 1);
        if (!digits || channel.find(' ') != std::string_view::npos) {
            clean = false;
            continue;
        }
        out->push_back(ChannelCount{channel, n});
    }
    return clean;
}

void CountThrottle::changed(std::string_view key, uint64_t count, int64_t now) {
    auto it = keys_.find(std::string(key));
    if (it == keys_.end()) {
        it = keys_.emplace(std::string(key), State()).first;
    }
    State& s = it->second;
    s.count = count;
    if (s.dueAt >= 0) {
        return;  // already pending: the send reads the count then
    }
    int64_t at = now + kCountDelayMs;
    if (s.sent) {
        at = std::max(at, s.last + (count > kCountBig ? kCountEveryBigMs : kCountEveryMs));
    }
    s.dueAt = at;
}

std::vector<std::string> CountThrottle::due(int64_t now) {
    std::vector<std::pair<int64_t, std::string>> ready;
    for (auto it = keys_.begin(); it != keys_.end();) {
        State& s = it->second;
        if (s.dueAt >= 0 && s.dueAt <= now) {
            ready.emplace_back(s.dueAt, it->first);
            s.dueAt = -1;
            s.sent = true;
            s.last = now;
        } else if (s.dueAt < 0 && (!s.sent || now - s.last > kCountEveryBigMs)) {
            it = keys_.erase(it);
            continue;
        }
        ++it;
    }
    std::sort(ready.begin(), ready.end());
    std::vector<std::string> out;
    out.reserve(ready.size());
    for (auto& r : ready) {
        out.push_back(std::move(r.second));
    }
    return out;
}

int64_t CountThrottle::next() const {
    int64_t at = -1;
    for (const auto& k : keys_) {
        if (k.second.dueAt >= 0 && (at < 0 || k.second.dueAt < at)) {
            at = k.second.dueAt;
        }
    }
    return at;
}

}  // namespace pusher
}  // namespace pubsub
