#include "pubsub/subscription.h"

#include <cstdint>
#include <utility>

namespace pubsub {

void Subscription::Entry::deliver(const MessagePtr& msg) {
    owner->sink_->deliver(index, msg, {});
}

void Subscription::Entry::gap() {
    owner->sink_->gap(index);
}

void Subscription::Entry::channelDeleted() {
    owner->sink_->channelDeleted(index);
}

void Subscription::Entry::presenceEvent(const PresenceEvent& ev) {
    owner->sink_->presenceEvent(index, ev);
}

void Subscription::Entry::infoRequest(std::string_view replyKey) {
    owner->channelInfoRequest(index, replyKey);
}

void Subscription::channelInfoRequest(size_t channel, std::string_view replyKey) {
    const Entry* e = at(channel);
    if (e != nullptr && e->used) {
        host_->infoRequest(e->key(), replyKey);
    }
}

// What the multiplexer delivers, to the transport.
class MuxToSink final : public MultiplexSink {
public:
    MuxToSink(Subscription* owner, SubscriptionSink* sink) : owner_(owner), sink_(sink) {}
    void deliver(size_t channel, const MessagePtr& msg, std::string_view id) override {
        sink_->deliver(channel, msg, id);
    }
    void gap(size_t channel) override { sink_->gap(channel); }
    void channelDeleted(size_t channel) override { sink_->channelDeleted(channel); }
    void channelPresence(size_t channel, const PresenceEvent& ev) override {
        sink_->presenceEvent(channel, ev);
    }
    void channelInfoRequest(size_t channel, std::string_view replyKey) override {
        owner_->channelInfoRequest(channel, replyKey);
    }

private:
    Subscription* owner_;
    SubscriptionSink* sink_;
};

// What only some subscriptions need: several channels, add(), polling.
struct Subscription::Extra {
    Extra(Subscription* owner, SubscriptionSink* sink) : muxSink(owner, sink) {}
    std::vector<std::unique_ptr<Entry>> more;  // channels 1..; nullptr: free
    std::string pollNext;                      // where polling sessions park
    // add()'s per-channel presence identities, by index (SubChannel::presence)
    std::vector<std::shared_ptr<const PresenceIdentity>> presence;
    // cleared by the destructor: add() completions arriving later check it
    std::shared_ptr<Subscription*> self;
    // per slot, the number of add()s that reserved it: a completion whose
    // channel was removed (and the slot taken again) meanwhile sees another
    std::vector<uint32_t> adds;
    MuxToSink muxSink;
    std::unique_ptr<Multiplexer> mux;  // several channels (after muxSink: goes first)
};

void Subscription::Entry::setName(SubChannel&& ch) {
    size_t k = ch.key.size();
    size_t n = ch.id.size();
    bool tail = n <= k && ch.key.compare(k - n, n, ch.id) == 0;

    name = std::move(ch.key);
    if (!tail) {
        name += ch.id;
    }
    keyLen = static_cast<uint32_t>(k);
    idPos = static_cast<uint32_t>(tail ? k - n : k);
}

Subscription::Subscription(SubscriptionHost* host, SubscriptionSink* sink, SubscriptionOptions opts)
    : host_(host), sink_(sink), opts_(opts), first_(this, 0) {}

Multiplexer* Subscription::mux() const {
    return extra_ ? extra_->mux.get() : nullptr;
}

Subscription::~Subscription() {
    close();
    if (extra_ && extra_->self) {
        *extra_->self = nullptr;
    }
}

Subscription::Extra& Subscription::extra() {
    if (!extra_) {
        extra_ = std::make_unique<Extra>(this, sink_);
    }
    return *extra_;
}

size_t Subscription::slots() const {
    return 1 + (extra_ ? extra_->more.size() : 0);
}

Subscription::Entry* Subscription::at(size_t i) const {
    if (i == 0) {
        return first_.used ? const_cast<Entry*>(&first_) : nullptr;
    }
    if (!extra_ || i - 1 >= extra_->more.size()) {
        return nullptr;
    }
    return extra_->more[i - 1].get();
}

std::string* Subscription::pollAt() {
    return opts_.poll ? &extra().pollNext : nullptr;
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
    req.key = e.key();
    req.start = spec;
    req.existingOnly = opts_.existingOnly;
    req.oneShot = opts_.oneShot;
    req.maxBacklog = opts_.maxBacklog;
    req.limits = opts_.limits;
    return req;
}

Subscriber* Subscription::storeSub(Entry& e) {
    if (Multiplexer* m = mux()) {
        return m->subscriber(e.index);
    }
    return &e;
}

const Subscriber* Subscription::subscriber(size_t i) const {
    Entry* e = at(i);
    if (e == nullptr) {
        return nullptr;
    }
    if (Multiplexer* m = mux()) {
        return m->subscriber(i);
    }
    return e;
}

std::string_view Subscription::key(size_t i) const {
    const Entry* e = at(i);
    return e != nullptr ? e->key() : std::string_view();
}

std::string_view Subscription::id(size_t i) const {
    const Entry* e = at(i);
    return e != nullptr ? e->id() : std::string_view();
}

size_t Subscription::find(std::string_view key) const {
    for (size_t i = 0; i < slots(); i++) {
        const Entry* e = at(i);
        if (e != nullptr && e->key() == key) {
            return i;
        }
    }
    return SIZE_MAX;
}

bool Subscription::attached() const {
    for (size_t i = 0; i < slots(); i++) {
        const Subscriber* s = subscriber(i);
        if (s != nullptr && s->attached()) {
            return true;
        }
    }
    return false;
}

// Back to an empty set (a refused subscribe()).
void Subscription::reset() {
    first_.used = false;
    first_.subscribed = false;
    std::string().swap(first_.name);
    if (extra_) {
        extra_->mux.reset();
        extra_->more.clear();
        extra_->pollNext.clear();
    }
    live_ = 0;
}

SubscriptionStart Subscription::subscribe(std::vector<SubChannel> chans,
                                          const std::vector<StartSpec>& specs) {
    SubscriptionStart out;
    size_t n = chans.size();

    if (n == 0 || specs.size() != n || live_ != 0 || first_.used || closed_) {
        out.status = StoreResult::kError;
        out.reason = "invalid subscription";
        return out;
    }

    if (n > 1) {
        Extra& x = extra();
        x.mux = Multiplexer::create(&x.muxSink, n);
        if (!x.mux) {
            out.status = StoreResult::kNoMemory;
            out.reason = "out of memory";
            return out;
        }
        extra_->more.reserve(n - 1);
    }

    out.backlogs.resize(n);

    for (size_t i = 0; i < n; i++) {
        Entry* e = &first_;
        if (i > 0) {
            extra_->more.push_back(std::make_unique<Entry>(this, static_cast<uint32_t>(i)));
            e = extra_->more.back().get();
        }
        e->setName(std::move(chans[i]));
        e->used = true;
        live_++;
    }

    if (opts_.poll && !mux() && specs[0].kind == StartSpec::kAfter) {
        *pollAt() = specs[0].after.isNull() ? std::string() : formatMsgId(specs[0].after);
    }

    for (size_t i = 0; i < n; i++) {
        Entry& e = *at(i);

        if (mux() && specs[i].kind == StartSpec::kAfter) {
            mux()->setPosition(i, specs[i].after);
        }

        SubscribeReply reply = storeSubscribe(e, specs[i]);

        if (reply.status != StoreResult::kOk) {
            for (size_t j = 0; j < i; j++) {
                unsubscribe(*at(j));
            }
            reset();
            out.status = reply.status;
            out.reason = std::move(reply.reason);
            out.backlogs.clear();
            return out;
        }

        e.subscribed = true;
        out.gap = out.gap || reply.gap;
        out.backlogs[i] = std::move(reply.backlog);
    }

    if (opts_.poll && mux()) {
        *pollAt() = mux()->compoundId(mux()->size());
    }

    return out;
}

void Subscription::openEntry(Entry& e) {
    if (e.opened || !e.subscribed) {
        return;
    }
    e.opened = true;

    // the host copies what it keeps
    SubChannel ch{std::string(e.id()), std::string(e.key())};
    if (extra_ && e.index < extra_->presence.size()) {
        ch.presence = extra_->presence[e.index];
    }
    e.hook = host_->hookOpen(ch, pollAt());
    e.presence = host_->presenceJoin(ch);
    e.events = host_->eventsOpen(ch);
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
    host_->hookClose(hook, pollAt(), deleted_);
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
    for (size_t i = 0; i < slots(); i++) {
        if (Entry* e = at(i)) {
            openEntry(*e);
        }
    }
    updateCount();
}

void Subscription::deliverBacklog(const std::vector<std::vector<MessagePtr>>& backlogs) {
    if (mux()) {
        if (backlogs.size() == mux()->size()) {
            mux()->deliverBacklog(backlogs);
        }
        return;
    }
    for (size_t i = 0; i < backlogs.size() && i < slots(); i++) {
        for (const MessagePtr& m : backlogs[i]) {
            if (closed_ || at(i) == nullptr) {
                return;
            }
            sink_->deliver(i, m, {});
        }
    }
}

// A free index for add(): the first channel's inline entry when it is
// free, else a slot of Extra's (made if none is free).
size_t Subscription::slot() {
    if (!first_.used && !first_.closing) {
        return 0;
    }
    std::vector<std::unique_ptr<Entry>>& more = extra().more;
    for (size_t i = 0; i < more.size(); i++) {
        if (!more[i]) {
            return i + 1;
        }
    }
    more.emplace_back();
    return more.size();
}

void Subscription::add(SubChannel ch, const StartSpec& spec, AddCallback done) {
    SubscribeReply refused;

    if (closed_ || mux()) {
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
    Entry* fresh = &first_;
    if (i > 0) {
        extra_->more[i - 1] = std::make_unique<Entry>(this, static_cast<uint32_t>(i));
        fresh = extra_->more[i - 1].get();
    }
    std::vector<std::string> keys{ch.key};
    std::vector<std::shared_ptr<const PresenceIdentity>>& idents = extra().presence;
    if (ch.presence || i < idents.size()) {
        if (idents.size() <= i) {
            idents.resize(i + 1);
        }
        idents[i] = std::move(ch.presence);
    }
    fresh->setName(std::move(ch));
    fresh->used = true;
    live_++;

    // the entry is reserved (a second add() of the key answers at once);
    // the store's subscribe runs once the engine is ready for the key
    std::shared_ptr<Subscription*>& guard = extra().self;
    if (!guard) {
        guard = std::make_shared<Subscription*>(this);
    }
    std::shared_ptr<Subscription*> self = guard;
    std::vector<uint32_t>& adds = extra().adds;
    if (adds.size() <= i) {
        adds.resize(i + 1);
    }
    uint32_t gen = ++adds[i];
    host_->prepare(keys, [self, i, gen, spec, done]() {
        if (Subscription* s = *self) {
            s->added(i, gen, spec, done);
        }
        // else destroyed meanwhile: nobody to tell
    });
}

// The store's part of add() for channel i, once the engine is ready.
void Subscription::added(size_t i, uint32_t gen, const StartSpec& spec, const AddCallback& done) {
    Entry* e = at(i);

    if (e == nullptr || closed_ || extra_->adds[i] != gen || e->subscribed) {
        // closed, or this channel was removed before the store's answer
        // (its slot maybe taken by another add(), which subscribes it)
        SubscribeReply closed;
        closed.status = StoreResult::kError;
        closed.reason = closed_ ? "subscription closed" : "channel left before it was subscribed";
        done(SIZE_MAX, std::move(closed));
        return;
    }

    SubscribeReply reply = storeSubscribe(*e, spec);

    if (reply.status != StoreResult::kOk) {
        take(i);
        freeSlot(i);
        done(SIZE_MAX, std::move(reply));
        return;
    }

    e->subscribed = true;
    if (open_) {
        openEntry(*e);
    }
    updateCount();
    done(i, std::move(reply));
}

// Takes channel i out of the set; it is closed by the caller (closeEntry)
// before its slot can be used again.
std::unique_ptr<Subscription::Entry> Subscription::take(size_t i) {
    live_--;
    if (i > 0) {
        return std::move(extra_->more[i - 1]);
    }
    first_.used = false;
    first_.closing = true;
    return nullptr;
}

// Frees the slot of a channel take() took out.
void Subscription::freeSlot(size_t i) {
    if (i == 0) {
        first_.closing = false;
        std::string().swap(first_.name);
    }
}

bool Subscription::remove(std::string_view key) {
    size_t i = find(key);
    if (i == SIZE_MAX || mux()) {
        return false;
    }

    // taken out of the set first: callbacks from closeEntry() see it gone
    std::unique_ptr<Entry> owned = take(i);
    closeEntry(owned ? *owned : first_);
    freeSlot(i);
    updateCount();
    return true;
}

void Subscription::detach() {
    for (size_t i = 0; i < slots(); i++) {
        if (Entry* e = at(i)) {
            unsubscribe(*e);
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
    for (size_t i = 0; i < slots(); i++) {
        if (Entry* e = at(i)) {
            closeEntry(*e);
        }
    }
}

void Subscription::pollNext(const MsgId& id) {
    if (!id.isNull() && opts_.poll) {
        *pollAt() = formatMsgId(id);
    }
}

void Subscription::pollNextCompound() {
    if (mux() && opts_.poll) {
        *pollAt() = mux()->compoundId(mux()->size());
    }
}

}  // namespace pubsub
