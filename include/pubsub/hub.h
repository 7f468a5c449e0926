#pragma once
// One worker's subscribers, by channel, and the local fan-out of messages.
//
// The hub lives in a worker's own memory.  Stores (shared memory, Redis)
// find out which messages a channel has that this worker has not delivered
// yet and hand them to the hub, which gives each subscriber every message
// newer than the last one it got - exactly once, in order.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "pubsub/keyed_hash.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"

namespace pubsub {

class LocalChannel;
struct PresenceEvent;

// A transport's subscription to one channel.  deliver(), gap() and
// channelDeleted() may detach this subscriber (and only this one).
class Subscriber {
public:
    virtual ~Subscriber() = default;
    virtual void deliver(const MessagePtr& msg) = 0;
    // Messages after the subscriber's position were dropped before it could
    // get them (buffer too short, or expired).
    virtual void gap() = 0;
    // The channel was deleted; the subscriber is already detached.
    virtual void channelDeleted() = 0;
    // A member joined or left the channel (pubsub_presence_events).  Not a
    // message: no id, no buffer slot.  May detach this subscriber.
    virtual void presenceEvent(const PresenceEvent& ev) { (void)ev; }
    // pubsub_subscriber_info: the subscriber is asked to publish what it
    // reports on channel `replyKey`.  Not a message: no id, no cursor.
    virtual void infoRequest(std::string_view replyKey) { (void)replyKey; }

    const MsgId& cursor() const { return cursor_; }
    bool attached() const { return channel_ != nullptr; }
    // The channel this subscriber is attached to (nullptr when detached).
    const LocalChannel* channel() const { return channel_; }

private:
    friend class Hub;
    MsgId cursor_;
    LocalChannel* channel_ = nullptr;
    size_t index_ = 0;
};

class LocalChannel {
public:
    explicit LocalChannel(std::string key) : key_(std::move(key)) {}
    const std::string& key() const { return key_; }
    size_t size() const { return live_; }
    // The newest message id this worker has pulled from the store.
    MsgId pulled;
    // The store's identity of the channel this worker's subscribers are
    // attached to (a deleted and re-created channel has a new one).
    uint64_t serial = 0;
    uint64_t hash = 0;  // keyedHash() of the key with the hub's key

private:
    friend class Hub;
    std::string key_;
    std::vector<Subscriber*> subs_;
    // Messages handed to deliver() while a delivery on this channel was
    // already running (a subscriber's callback published to it); sent
    // once the running one is done, so that every subscriber keeps order.
    std::vector<MessagePtr> pending_;
    size_t live_ = 0;
    int iterating_ = 0;
    bool holes_ = false;
};

class Hub {
public:
    // `key` hashes channel keys, for the local table and for `hash`; the
    // memory store gives its zone's key so that every worker computes the
    // hashes other workers put in its mailbox (keysWithHash()).
    explicit Hub(const HashKey& key = processHashKey())
        : key_(key), channels_(0, KeyedStringHash(key)) {}
    Hub(const Hub&) = delete;
    Hub& operator=(const Hub&) = delete;

    LocalChannel* find(std::string_view key);
    // Attaches `sub`, which has seen everything up to `cursor`.  When the
    // channel is new to this worker its `pulled` position starts at
    // `storeLast`.  Returns false when memory is exhausted.
    bool attach(Subscriber* sub, std::string_view key, const MsgId& cursor, const MsgId& storeLast);
    // Detaches; returns false if `sub` was not attached.
    bool detach(Subscriber* sub);

    // Delivers `msgs` (ascending ids) to the channel's subscribers, each
    // message only to those that have not seen it.  A subscriber that has not
    // seen the message before one it is given (its predecessor was dropped
    // before this worker pulled it) is told of the gap first.  Called again
    // for the same channel from inside a subscriber's callback, it queues
    // `msgs` behind the messages being delivered.
    void deliver(std::string_view key, const std::vector<MessagePtr>& msgs);

    // Hands a presence event to every subscriber of the channel.
    void presenceEvent(std::string_view key, const PresenceEvent& ev);

    // Asks every subscriber of the channel to report (infoRequest()).
    void infoRequest(std::string_view key, std::string_view replyKey);

    // Detaches every subscriber of the channel and tells each of them.
    void channelDeleted(std::string_view key);

    // Keys of the local channels whose hash is `hash` (usually one).
    void keysWithHash(uint64_t hash, std::vector<std::string>* out) const;
    // Keys of every local channel.
    void keys(std::vector<std::string>* out) const;

    size_t channels() const { return channels_.size(); }
    size_t subscribers() const { return subscribers_; }

private:
    void fanOut(LocalChannel* lc, const std::vector<MessagePtr>& msgs);
    void compact(LocalChannel* lc);
    void release(LocalChannel* lc);

    HashKey key_;
    std::unordered_map<std::string_view, std::unique_ptr<LocalChannel>, KeyedStringHash> channels_;
    std::unordered_multimap<uint64_t, LocalChannel*> byHash_;
    size_t subscribers_ = 0;
};

}  // namespace pubsub
