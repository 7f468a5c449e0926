#include "pubsub/multiplex.h"

#include <new>

namespace pubsub {

std::unique_ptr<Multiplexer> Multiplexer::create(MultiplexSink* sink, size_t n) {
    if (n == 0 || n > kMaxChannels) {
        return nullptr;
    }
    try {
        std::unique_ptr<Multiplexer> mux(new Multiplexer(sink));
        mux->channels_.reserve(n);
        for (size_t i = 0; i < n; i++) {
            mux->channels_.push_back(std::make_unique<Channel>(mux.get(), i));
        }
        mux->seen_.assign(n, MsgId{});
        return mux;
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}

Subscriber* Multiplexer::subscriber(size_t i) {
    return i < channels_.size() ? channels_[i].get() : nullptr;
}

bool Multiplexer::resumeSpecs(const ParsedMsgId& id, size_t n, std::vector<StartSpec>* out,
                              std::string* reason) {
    if (id.tags.size() != 1 && id.tags.size() != n) {
        *reason = "message id has " + std::to_string(id.tags.size()) + " tags for " +
                  std::to_string(n) + " channels";
        return false;
    }
    try {
        out->assign(n, StartSpec{});
    } catch (const std::bad_alloc&) {
        *reason = "out of memory";
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        int32_t tag = id.tags.size() == 1 ? id.tags[0] : id.tags[i];
        (*out)[i].kind = StartSpec::kAfter;
        (*out)[i].after = MsgId{id.time, tag < 0 ? -1 : tag};
    }
    return true;
}

void Multiplexer::Channel::deliver(const MessagePtr& msg) {
    std::string id = mux_->advance(index_, msg->id());
    mux_->sink_->deliver(index_, msg, id);
}

std::pair<size_t, size_t> Multiplexer::earliest(
    const std::vector<std::vector<MessagePtr>>& backlogs) const {
    size_t best = channels_.size();
    for (size_t i = 0; i < backlogs.size() && i < channels_.size(); i++) {
        if (backlogs[i].empty()) {
            continue;
        }
        if (best == channels_.size() ||
            backlogs[i].front()->id().time < backlogs[best].front()->id().time) {
            best = i;
        }
    }
    return {best, 0};
}

void Multiplexer::deliverBacklog(const std::vector<std::vector<MessagePtr>>& backlogs) {
    std::vector<size_t> pos(backlogs.size(), 0);
    for (;;) {
        size_t best = channels_.size();
        for (size_t i = 0; i < backlogs.size() && i < channels_.size(); i++) {
            if (pos[i] >= backlogs[i].size()) {
                continue;
            }
            if (best == channels_.size() ||
                backlogs[i][pos[i]]->id().time < backlogs[best][pos[best]]->id().time) {
                best = i;
            }
        }
        if (best == channels_.size()) {
            return;
        }
        const MessagePtr& m = backlogs[best][pos[best]++];
        std::string id = advance(best, m->id());
        sink_->deliver(best, m, id);
    }
}

std::string Multiplexer::advance(size_t i, const MsgId& id) {
    if (i < seen_.size() && id > seen_[i]) {
        seen_[i] = id;
    }
    return compoundId(i);
}

int64_t Multiplexer::compoundTime() const {
    int64_t t = 0;
    for (const MsgId& s : seen_) {
        if (s.time > t) {
            t = s.time;
        }
    }
    return t;
}

std::string Multiplexer::compoundTags(size_t active) const {
    int64_t t = compoundTime();
    std::string out;
    for (size_t i = 0; i < seen_.size(); i++) {
        if (i > 0) {
            out.push_back(',');
        }
        bool bracket = i == active;
        if (bracket) {
            out.push_back('[');
        }
        if (seen_[i].time == t && t != 0 && seen_[i].tag >= 0) {
            out.append(std::to_string(seen_[i].tag));
        } else {
            out.push_back('-');
        }
        if (bracket) {
            out.push_back(']');
        }
    }
    return out;
}

std::string Multiplexer::compoundId(size_t active) const {
    return std::to_string(compoundTime()) + ":" + compoundTags(active);
}

}  // namespace pubsub
