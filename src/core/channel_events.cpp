// Channel events: names, meta channel id checks and the pending queue.
#include "pubsub/channel_events.h"

#include <utility>

namespace pubsub {

std::string_view channelEventName(ChannelEvent ev) {
    switch (ev) {
        case ChannelEvent::kSubscriberEnqueue:
            return "subscriber_enqueue";
        case ChannelEvent::kSubscriberDequeue:
            return "subscriber_dequeue";
        case ChannelEvent::kChannelPublish:
            return "channel_publish";
        case ChannelEvent::kChannelDelete:
            return "channel_delete";
    }
    return "";
}

std::string_view metaIdErrorText(MetaIdError err) {
    switch (err) {
        case MetaIdError::kNone:
            return "";
        case MetaIdError::kEmpty:
            return "the meta channel id is empty";
        case MetaIdError::kTooLong:
            return "the meta channel id is too long";
        case MetaIdError::kControlChar:
            return "the meta channel id contains a control character";
    }
    return "";
}

MetaIdError checkMetaChannelId(std::string_view id, size_t maxIdLength) {
    if (id.empty()) {
        return MetaIdError::kEmpty;
    }
    if (id.size() > maxIdLength) {
        return MetaIdError::kTooLong;
    }
    for (char c : id) {
        auto b = static_cast<unsigned char>(c);
        if (b < 0x20 || b == 0x7f) {
            return MetaIdError::kControlChar;
        }
    }
    return MetaIdError::kNone;
}

bool isMetaChannelKey(std::string_view key) {
    return key.size() > kMetaGroup.size() && key.substr(0, kMetaGroup.size()) == kMetaGroup &&
           key[kMetaGroup.size()] == '/';
}

bool ChannelEventQueue::push(std::string_view key, std::string_view body,
                             const void* context) noexcept {
    if (events_.size() >= capacity_) {
        dropped_++;
        return false;
    }
    try {
        PendingChannelEvent ev;
        ev.key.assign(key);
        ev.body.assign(body);
        ev.context = context;
        events_.push_back(std::move(ev));
    } catch (...) {
        dropped_++;
        return false;
    }
    return true;
}

void ChannelEventQueue::takeAll(std::vector<PendingChannelEvent>* out) noexcept {
    out->clear();
    try {
        out->reserve(events_.size());
        for (PendingChannelEvent& ev : events_) {
            out->push_back(std::move(ev));
        }
    } catch (...) {
        // out of memory: what could not be moved is dropped, not kept for ever
        dropped_ += events_.size() - out->size();
    }
    events_.clear();
}

}  // namespace pubsub
