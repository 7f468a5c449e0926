#pragma once
// A client's subscription: the set of channels one connection (or one poll)
// receives, and everything that subscribing to each of them implies, done
// exactly once per channel and undone exactly once, however the client goes.
//
// Per channel, in this order:
//   1. the store's subscribe (with the location's group limits),
//   2. once the transport can deliver (open()): the subscribe/unsubscribe
//      hook session, the presence join, the channel events,
// and for the whole subscription: the status count while a channel is
// attached.  close() undoes each of them exactly once, in reverse order
// (store, count, events, presence, hook); add() and remove() do the same
// for one channel of a live subscription.
//
// One channel is a set of one.  A subscription made by subscribe() with
// several channels is multiplexed: its messages carry nchan's compound ids
// (pubsub::Multiplexer).  add() and remove() change the set of a live,
// non-multiplexed subscription at run time (a protocol whose one socket
// joins and leaves channels).
//
// What the glue supplies (hooks, presence, channel events, status counts,
// the engine) comes through SubscriptionHost, so every rule here is tested
// without nginx (t/unit/subscription_test.cpp).

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/hub.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"
#include "pubsub/multiplex.h"
#include "pubsub/store.h"

namespace pubsub {

struct PresenceEvent;

// Who a connection is in a channel's presence when the protocol says so
// per channel (Pusher's channel_data), not the location.
struct PresenceIdentity {
    std::string id;
    std::string info;  // raw JSON, may be empty
};

// A channel of a subscription.
struct SubChannel {
    std::string id;   // as the client named it
    std::string key;  // the store's key, "group/id"
    // set: the channel always joins presence, as this member (the host's
    // presenceJoin() reads it); null: as the location says
    std::shared_ptr<const PresenceIdentity> presence = nullptr;
};

class SubscriptionHost {
public:
    using Handle = void*;

    virtual ~SubscriptionHost() = default;

    virtual Store* store() = 0;
    // Calls ready() once a subscribe() of `keys` completes before it returns
    // (the engine's prepare step: at once in memory, after a snapshot read
    // in Redis).  ready() is called exactly once, also when the engine
    // cannot prepare (subscribe() then answers the refusal).
    virtual void prepare(const std::vector<std::string>& keys, std::function<void()> ready) = 0;

    // The subscribe/unsubscribe hook session of a channel (nullptr: none).
    // `pollAt`: a polling session continued from that position (nullptr:
    // not a poll).
    virtual Handle hookOpen(const SubChannel& ch, const std::string* pollAt) = 0;
    // Ends it; a polling session is parked at `pollNext` for the next poll
    // unless the channel was deleted.
    virtual void hookClose(Handle h, const std::string* pollNext, bool deleted) = 0;
    virtual Handle presenceJoin(const SubChannel& ch) = 0;
    virtual void presenceLeave(Handle h) = 0;
    // Channel events: subscriber_enqueue now, the dequeue kept for close.
    virtual Handle eventsOpen(const SubChannel& ch) = 0;
    virtual void eventsClose(Handle h) = 0;
    // The status count of the subscription's transport.
    virtual void countStart() = 0;
    virtual void countEnd() = 0;
    // pubsub_subscriber_info asks the subscriber of channel `key` to report
    // on channel `replyKey` (nothing by default).
    virtual void infoRequest(std::string_view key, std::string_view replyKey) {
        (void)key;
        (void)replyKey;
    }
};

// What the transport gets.  `compoundId` is set for multiplexed
// subscriptions (the id the client resumes from), empty otherwise.  Each
// call may close the subscription.
class SubscriptionSink {
public:
    virtual ~SubscriptionSink() = default;
    virtual void deliver(size_t channel, const MessagePtr& msg, std::string_view compoundId) = 0;
    virtual void gap(size_t channel) = 0;
    virtual void channelDeleted(size_t channel) = 0;
    virtual void presenceEvent(size_t channel, const PresenceEvent& ev) = 0;
};

struct SubscriptionOptions {
    GroupLimits limits;
    size_t maxBacklog = 0;      // with oneShot: how many owed messages (0: all)
    bool existingOnly = false;  // 403 for channels that do not exist
    bool poll = false;          // hook sessions are polling sessions
    bool oneShot = false;       // long-poll: take what is owed, attach only when nothing is
};

// The outcome of subscribing a set of channels (all or nothing).
struct SubscriptionStart {
    StoreResult status = StoreResult::kOk;
    std::string reason;
    bool gap = false;
    std::vector<std::vector<MessagePtr>> backlogs;  // per channel
};

// What it costs: a one-channel subscription is this object and the
// channel's key (the id is the key's tail, "group/id", and kept once); the
// first channel's entry is inline and nothing else is allocated.  Several
// channels, add() and polls allocate one more block (Extra).
class Subscription final {
public:
    Subscription(SubscriptionHost* host, SubscriptionSink* sink, SubscriptionOptions opts = {});
    // Options for what comes next (before subscribe() or add()).
    void setOptions(const SubscriptionOptions& opts) { opts_ = opts; }
    ~Subscription();
    Subscription(const Subscription&) = delete;
    Subscription& operator=(const Subscription&) = delete;

    // Subscribes every channel of `chans`, each from its spec (specs.size()
    // == chans.size()), with the engine prepared by the caller.  Several
    // channels make a multiplexed subscription.  On a refusal every channel
    // subscribed so far is unsubscribed again and nothing else happened.
    // Call once, on an empty subscription.
    SubscriptionStart subscribe(std::vector<SubChannel> chans, const std::vector<StartSpec>& specs);

    // The transport can deliver now: opens hooks, presence and channel
    // events of every channel the store accepted, and the status count
    // while any is attached.  Later add()s open their channel at once.
    void open();

    // Delivers the backlogs of subscribe() through the sink, merged in
    // time order when multiplexed.
    void deliverBacklog(const std::vector<std::vector<MessagePtr>>& backlogs);

    // A live, non-multiplexed subscription: adds channel `ch` (prepare, then
    // subscribe, then what open() does when open).  done() gets the channel's
    // index (or SIZE_MAX), the store's reply (a refusal: status and reason)
    // - exactly once, possibly before add() returns.  A channel already in
    // the set is accepted again with nothing done twice.
    using AddCallback = std::function<void(size_t index, SubscribeReply&& reply)>;
    void add(SubChannel ch, const StartSpec& spec, AddCallback done);
    // Removes a channel: undoes what subscribing it did.  false: not there.
    bool remove(std::string_view key);

    // Detaches every channel from the store (no more deliveries) and ends
    // the status count; hooks, presence and events stay until close().
    void detach();
    // Ends everything exactly once (idempotent; the destructor calls it).
    void close();

    // The channel was deleted: polling sessions end instead of parking.
    void markDeleted() { deleted_ = true; }
    // Where polling sessions park when closed: after `id` (null: where the
    // poll started), or, multiplexed, the current compound position.
    void pollNext(const MsgId& id);
    void pollNextCompound();

    size_t size() const { return live_; }
    bool multiplexed() const { return mux() != nullptr; }
    Multiplexer* mux() const;
    // Whether any channel is attached (receives live messages).
    bool attached() const;
    // The store subscriber of channel i (its cursor()).
    const Subscriber* subscriber(size_t i) const;
    // Channel i's key and id (empty: no such channel).
    std::string_view key(size_t i) const;
    std::string_view id(size_t i) const;
    // Index of a channel by key, or SIZE_MAX.
    size_t find(std::string_view key) const;

    // The store subscriber of channel i was asked for pubsub_subscriber_info
    // (Subscriber::infoRequest): the host answers.
    void channelInfoRequest(size_t channel, std::string_view replyKey);

private:
    // One channel, and its store subscriber when not multiplexed.  `name`
    // holds the key, followed by the id unless the key ends with it.
    class Entry final : public Subscriber {
    public:
        Entry(Subscription* o, uint32_t i) : owner(o), index(i) {}
        void deliver(const MessagePtr& msg) override;
        void gap() override;
        void channelDeleted() override;
        void presenceEvent(const PresenceEvent& ev) override;
        void infoRequest(std::string_view replyKey) override;

        std::string_view key() const { return std::string_view(name).substr(0, keyLen); }
        std::string_view id() const { return std::string_view(name).substr(idPos); }
        void setName(SubChannel&& ch);

        Subscription* owner;
        uint32_t index;
        bool used = false;        // in the set
        bool closing = false;     // taken out, being closed
        bool subscribed = false;  // the store accepted it
        bool opened = false;      // hooks, presence, events
        uint32_t keyLen = 0;
        uint32_t idPos = 0;
        std::string name;
        SubscriptionHost::Handle hook = nullptr;
        SubscriptionHost::Handle presence = nullptr;
        SubscriptionHost::Handle events = nullptr;
    };

    struct Extra;

    Entry* at(size_t i) const;
    size_t slots() const;
    Extra& extra();
    void reset();
    std::unique_ptr<Entry> take(size_t i);
    void freeSlot(size_t i);

    SubscribeRequest request(const Entry& e, const StartSpec& spec) const;
    SubscribeReply storeSubscribe(Entry& e, const StartSpec& spec);
    void unsubscribe(Entry& e);
    Subscriber* storeSub(Entry& e);
    void openEntry(Entry& e);
    void closeEntry(Entry& e);
    void updateCount();
    size_t slot();
    void added(size_t i, uint32_t gen, const StartSpec& spec, const AddCallback& done);
    std::string* pollAt();

    SubscriptionHost* host_;
    SubscriptionSink* sink_;
    SubscriptionOptions opts_;
    // channels after the first, the multiplexer, the poll position, add()'s
    // guard
    std::unique_ptr<Extra> extra_;
    Entry first_;  // channel 0
    uint32_t live_ = 0;
    bool open_ = false;
    bool counted_ = false;
    bool closed_ = false;
    bool deleted_ = false;
};

}  // namespace pubsub
