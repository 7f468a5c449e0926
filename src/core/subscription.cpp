#include "pubsub/subscription.h"

#include <cstdint>
#include <utility>

namespace pubsub {

// The store subscriber of one channel of a non-multiplexed subscription.
class Subscription::Adapter final : public Subscriber {
public:
    Adapter(Subscription* owner, size_t index) : owner_(owner), index_(index) {}
    void deliver(const MessagePtr& msg) override { owner_->sink_->deliver(index_, msg, {}); }
    void gap() override { owner_->sink_->gap(index_); }
    void channelDeleted() override { owner_->sink_->channelDeleted(index_); }
    void presenceEvent(const PresenceEvent& ev) override {
        owner_->sink_->presenceEvent(index_, ev);
    }
    void infoRequest(std::string_view replyKey) override {
        owner_->channelInfoRequest(index_, replyKey);
    }

private:
    Subscription* owner_;
    size_t index_;
};

struct Subscription::Entry {
    Entry(Subscription* owner, size_t i) : index(i), adapter(owner, i) {}
    SubChannel ch;
    size_t index;
    Adapter adapter;          // the store subscriber when not multiplexed
    bool subscribed = false;  // the store accepted it
    bool opened = false;      // hooks, presence, events
    SubscriptionHost::Handle hook = nullptr;
    SubscriptionHost::Handle presence = nullptr;
    SubscriptionHost::Handle events = nullptr;
};

Subscription::Subscription(SubscriptionHost* host, SubscriptionSink* sink, SubscriptionOptions opts)
    : host_(host), sink_(sink), opts_(opts), self_(std::make_shared<Subscription*>(this)) {}

Subscription::~Subscription() {
    close();
    *self_ = nullptr;
}

// The store's subscribe of one channel; the engine must answer before
// returning (its prepare step is done): otherwise it is an error.
SubscribeReply Subscription::storeSubscribe(Entry& e, const StartSpec& spec) {
    SubscribeReply reply;
    bool answered = false;

    host_->store()->subscribe(storeSub(e), request(e, spec),
                              [&reply, &answered](SubscribeReply&& rep) {
                                  reply = std::move(rep);
                                  answered = true;
                              });
    if (!answered) {
        reply.status = StoreResult::kError;
        reply.reason = "the store did not answer";
    }
    if (reply.status != StoreResult::kOk) {
        unsubscribe(e);
    }
    return reply;
}

void Subscription::unsubscribe(Entry& e) {
    Subscriber* s = storeSub(e);
    if (s != nullptr && s->attached()) {
        host_->store()->unsubscribe(s);
    }
}

SubscribeRequest Subscription::request(const Entry& e, const StartSpec& spec) const {
    SubscribeRequest req;
    req.key = e.ch.key;
    req.start = spec;
    req.existingOnly = opts_.existingOnly;
    req.oneShot = opts_.oneShot;
    req.maxBacklog = opts_.maxBacklog;
    req.limits = opts_.limits;
    return req;
}

Subscriber* Subscription::storeSub(Entry& e) {
    if (mux_) {
        return mux_->subscriber(e.index);
    }
    return &e.adapter;
}

const Subscriber* Subscription::subscriber(size_t i) const {
    if (i >= entries_.size() || !entries_[i]) {
        return nullptr;
    }
    if (mux_) {
        return const_cast<Multiplexer*>(mux_.get())->subscriber(i);
    }
    return &entries_[i]->adapter;
}

const SubChannel* Subscription::channel(size_t i) const {
    if (i >= entries_.size() || !entries_[i]) {
        return nullptr;
    }
    return &entries_[i]->ch;
}

size_t Subscription::find(std::string_view key) const {
    for (size_t i = 0; i < entries_.size(); i++) {
        if (entries_[i] && entries_[i]->ch.key == key) {
            return i;
        }
    }
    return SIZE_MAX;
}

bool Subscription::attached() const {
    for (size_t i = 0; i < entries_.size(); i++) {
        const Subscriber* s = subscriber(i);
        if (s != nullptr && s->attached()) {
            return true;
        }
    }
    return false;
}

SubscriptionStart Subscription::subscribe(std::vector<SubChannel> chans,
                                          const std::vector<StartSpec>& specs) {
    SubscriptionStart out;
    size_t n = chans.size();

    if (n == 0 || specs.size() != n || !entries_.empty() || closed_) {
        out.status = StoreResult::kError;
        out.reason = "invalid subscription";
        return out;
    }

    if (n > 1) {
        mux_ = Multiplexer::create(this, n);
        if (!mux_) {
            out.status = StoreResult::kNoMemory;
            out.reason = "out of memory";
            return out;
        }
    }

    entries_.reserve(n);
    out.backlogs.resize(n);

    for (size_t i = 0; i < n; i++) {
        auto e = std::make_unique<Entry>(this, i);
        e->ch = std::move(chans[i]);
        entries_.push_back(std::move(e));
        live_++;
    }

    if (opts_.poll && !mux_ && specs[0].kind == StartSpec::kAfter) {
        pollNext_ = specs[0].after.isNull() ? std::string() : formatMsgId(specs[0].after);
    }

    for (size_t i = 0; i < n; i++) {
        Entry& e = *entries_[i];

        if (mux_ && specs[i].kind == StartSpec::kAfter) {
            mux_->setPosition(i, specs[i].after);
        }

        SubscribeReply reply = storeSubscribe(e, specs[i]);

        if (reply.status != StoreResult::kOk) {
            for (size_t j = 0; j < i; j++) {
                unsubscribe(*entries_[j]);
            }
            entries_.clear();
            mux_.reset();
            live_ = 0;
            pollNext_.clear();
            out.status = reply.status;
            out.reason = std::move(reply.reason);
            out.backlogs.clear();
            return out;
        }

        e.subscribed = true;
        out.gap = out.gap || reply.gap;
        out.backlogs[i] = std::move(reply.backlog);
    }

    if (opts_.poll && mux_) {
        pollNext_ = mux_->compoundId(mux_->size());
    }

    return out;
}

void Subscription::openEntry(Entry& e) {
    if (e.opened || !e.subscribed) {
        return;
    }
    e.opened = true;
    e.hook = host_->hookOpen(e.ch, opts_.poll ? &pollNext_ : nullptr);
    e.presence = host_->presenceJoin(e.ch);
    e.events = host_->eventsOpen(e.ch);
}

void Subscription::closeEntry(Entry& e) {
    unsubscribe(e);
    e.subscribed = false;

    if (!e.opened) {
        return;
    }
    e.opened = false;

    SubscriptionHost::Handle events = e.events;
    SubscriptionHost::Handle presence = e.presence;
    SubscriptionHost::Handle hook = e.hook;
    e.events = e.presence = e.hook = nullptr;

    host_->eventsClose(events);
    host_->presenceLeave(presence);
    host_->hookClose(hook, opts_.poll ? &pollNext_ : nullptr, deleted_);
}

void Subscription::updateCount() {
    bool want = !closed_ && open_ && attached();
    if (want && !counted_) {
        counted_ = true;
        host_->countStart();
    } else if (!want && counted_) {
        counted_ = false;
        host_->countEnd();
    }
}

void Subscription::open() {
    if (closed_) {
        return;
    }
    open_ = true;
    for (size_t i = 0; i < entries_.size(); i++) {
        if (entries_[i]) {
            openEntry(*entries_[i]);
        }
    }
    updateCount();
}

void Subscription::deliverBacklog(const std::vector<std::vector<MessagePtr>>& backlogs) {
    if (mux_) {
        if (backlogs.size() == mux_->size()) {
            mux_->deliverBacklog(backlogs);
        }
        return;
    }
    for (size_t i = 0; i < backlogs.size() && i < entries_.size(); i++) {
        for (const MessagePtr& m : backlogs[i]) {
            if (closed_ || !entries_[i]) {
                return;
            }
            sink_->deliver(i, m, {});
        }
    }
}

size_t Subscription::slot() {
    for (size_t i = 0; i < entries_.size(); i++) {
        if (!entries_[i]) {
            return i;
        }
    }
    entries_.emplace_back();
    return entries_.size() - 1;
}

void Subscription::add(SubChannel ch, const StartSpec& spec, AddCallback done) {
    SubscribeReply refused;

    if (closed_ || mux_) {
        refused.status = StoreResult::kError;
        refused.reason = closed_ ? "subscription closed" : "multiplexed subscription";
        done(SIZE_MAX, std::move(refused));
        return;
    }

    size_t have = find(ch.key);
    if (have != SIZE_MAX) {
        SubscribeReply again;
        again.attached = subscriber(have)->attached();
        done(have, std::move(again));
        return;
    }

    size_t i = slot();
    auto fresh = std::make_unique<Entry>(this, i);
    fresh->ch = std::move(ch);
    std::vector<std::string> keys{fresh->ch.key};
    entries_[i] = std::move(fresh);
    live_++;

    // the entry is reserved (a second add() of the key answers at once);
    // the store's subscribe runs once the engine is ready for the key
    std::shared_ptr<Subscription*> self = self_;
    host_->prepare(keys, [self, i, spec, done]() {
        Subscription* s = *self;
        if (s == nullptr) {
            return;  // destroyed meanwhile: nobody to tell
        }

        Entry* e = i < s->entries_.size() ? s->entries_[i].get() : nullptr;

        if (e == nullptr || s->closed_) {
            SubscribeReply closed;
            closed.status = StoreResult::kError;
            closed.reason = "subscription closed";
            done(SIZE_MAX, std::move(closed));
            return;
        }

        SubscribeReply reply = s->storeSubscribe(*e, spec);

        if (reply.status != StoreResult::kOk) {
            s->entries_[i].reset();
            s->live_--;
            done(SIZE_MAX, std::move(reply));
            return;
        }

        e->subscribed = true;
        if (s->open_) {
            s->openEntry(*e);
        }
        s->updateCount();
        done(i, std::move(reply));
    });
}

bool Subscription::remove(std::string_view key) {
    size_t i = find(key);
    if (i == SIZE_MAX || mux_) {
        return false;
    }

    // taken out of the set first: callbacks from closeEntry() see it gone
    std::unique_ptr<Entry> e = std::move(entries_[i]);
    live_--;
    closeEntry(*e);
    updateCount();
    return true;
}

void Subscription::detach() {
    for (size_t i = 0; i < entries_.size(); i++) {
        if (entries_[i]) {
            unsubscribe(*entries_[i]);
        }
    }
    updateCount();
}

void Subscription::close() {
    if (closed_) {
        return;
    }
    closed_ = true;
    detach();
    for (size_t i = 0; i < entries_.size(); i++) {
        if (entries_[i]) {
            closeEntry(*entries_[i]);
        }
    }
}

void Subscription::pollNext(const MsgId& id) {
    if (!id.isNull()) {
        pollNext_ = formatMsgId(id);
    }
}

void Subscription::pollNextCompound() {
    if (mux_) {
        pollNext_ = mux_->compoundId(mux_->size());
    }
}

void Subscription::deliver(size_t channel, const MessagePtr& msg, std::string_view id) {
    sink_->deliver(channel, msg, id);
}

void Subscription::gap(size_t channel) {
    sink_->gap(channel);
}

void Subscription::channelDeleted(size_t channel) {
    sink_->channelDeleted(channel);
}

void Subscription::channelPresence(size_t channel, const PresenceEvent& ev) {
    sink_->presenceEvent(channel, ev);
}

void Subscription::channelInfoRequest(size_t channel, std::string_view replyKey) {
    const SubChannel* ch = this->channel(channel);
    if (ch != nullptr) {
        host_->infoRequest(*ch, replyKey);
    }
}

}  // namespace pubsub
