// Channel events (SPEC section 3, `pubsub_channel_events_channel_id`): a
// location may report what happens to its channels (a subscriber comes or
// goes, a message is published, the channel is deleted) as messages on a
// meta channel, `meta/<id>`.  This is the pure part: event names, the
// meta channel's settings, the check of an evaluated meta channel id and a
// bounded queue of events waiting to be published.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

namespace pubsub {

enum class ChannelEvent {
    kSubscriberEnqueue,
    kSubscriberDequeue,
    kChannelPublish,
    kChannelDelete,
};

// "subscriber_enqueue", "subscriber_dequeue", "channel_publish",
// "channel_delete" (the names nchan uses).
std::string_view channelEventName(ChannelEvent ev);

// The meta channels' group and settings (fixed, as in nchan).
constexpr std::string_view kMetaGroup = "meta";
constexpr uint64_t kMetaBufferLength = 100;
constexpr int64_t kMetaMessageTtl = 10;  // seconds
constexpr std::string_view kMetaContentType = "text/plain";
// Events waiting to be published by one worker; more are dropped.
constexpr size_t kMaxPendingChannelEvents = 4096;

enum class MetaIdError {
    kNone,
    kEmpty,        // the id evaluated to ""
    kTooLong,      // longer than the location's pubsub_max_channel_id_length
    kControlChar,  // a byte below 0x20, or 0x7f
};

// Why an evaluated meta channel id cannot be used, for the log ("" for kNone).
std::string_view metaIdErrorText(MetaIdError err);

// Checks an evaluated meta channel id against the rules of channel ids.
MetaIdError checkMetaChannelId(std::string_view id, size_t maxIdLength);

// Whether a channel key ("group/id") is in the meta group: such channels
// never produce events themselves (no loops, no events about events).
bool isMetaChannelKey(std::string_view key);

// One event ready to be published: the meta channel key, the body and
// whatever the caller needs to find the store (opaque here).
struct PendingChannelEvent {
    std::string key;
    std::string body;
    const void* context = nullptr;
};

// A bounded FIFO of events.  Never throws: push() reports whether the event
// was taken (false: full, or out of memory; counted in dropped()).
class ChannelEventQueue {
public:
    explicit ChannelEventQueue(size_t capacity = kMaxPendingChannelEvents) : capacity_(capacity) {}

    bool push(std::string_view key, std::string_view body, const void* context) noexcept;
    // Moves every waiting event into *out (cleared first), oldest first.
    void takeAll(std::vector<PendingChannelEvent>* out) noexcept;
    size_t size() const { return events_.size(); }
    bool empty() const { return events_.empty(); }
    uint64_t dropped() const { return dropped_; }
    void clear() noexcept { events_.clear(); }

private:
    size_t capacity_;
    uint64_t dropped_ = 0;
    std::deque<PendingChannelEvent> events_;
};

}  // namespace pubsub
