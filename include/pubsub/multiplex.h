#pragma once
// A multiplexed subscription: one transport fed by up to 255 channels.
//
// Each channel has its own Subscriber (an adapter owned here), so the store
// and hub treat it like any other subscription (exactly once, in order, per
// channel); the multiplexer keeps what the client has seen of each channel
// and writes the nchan-compatible compound id "time:t1,[t2],-".
//
// Compound ids.  nchan's form has one time for all channels.  We write
//     T   = the newest time seen on any channel,
//     t_i = the tag of channel i's last message when that message has time
//           T, else "-" (-1): "nothing at time T".
// A resume from (T, t_1..t_n) restarts channel i after (T, t_i), where
// (T, -1) means "every message with time >= T".  Messages of one channel
// are seen in order, so a channel whose last message is older than T has
// been delivered everything up to T, except messages of that channel with a
// time below T that had not reached this worker yet when a message with
// time T of another channel was delivered (the workers deliver every batch
// in time order, which keeps this to messages published on another worker
// within the few milliseconds before; docs/multiplexing.md).

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pubsub/hub.h"
#include "pubsub/message.h"
#include "pubsub/msgid.h"
#include "pubsub/store_model.h"

namespace pubsub {

class MultiplexSink {
public:
    virtual ~MultiplexSink() = default;
    // `id` is the compound id the client gets with this message.
    virtual void deliver(size_t channel, const MessagePtr& msg, std::string_view id) = 0;
    virtual void gap(size_t channel) = 0;
    virtual void channelDeleted(size_t channel) = 0;
    // A presence event of channel i (pubsub_presence_events); no id.
    virtual void channelPresence(size_t channel, const PresenceEvent& ev) {
        (void)channel;
        (void)ev;
    }
    // pubsub_subscriber_info asks channel i's subscriber (Subscriber::infoRequest).
    virtual void channelInfoRequest(size_t channel, std::string_view replyKey) {
        (void)channel;
        (void)replyKey;
    }
};

class Multiplexer {
public:
    static constexpr size_t kMaxChannels = 255;

    // Returns nullptr when out of memory or n is 0 or over kMaxChannels.
    static std::unique_ptr<Multiplexer> create(MultiplexSink* sink, size_t n);

    size_t size() const { return channels_.size(); }
    // The subscriber of channel i (subscribe it to the channel's key).
    Subscriber* subscriber(size_t i);

    // Start positions of the n channels from a resume id: a compound id
    // needs exactly n tags; a single "time:tag" applies to every channel.
    // false, with a reason, otherwise.
    static bool resumeSpecs(const ParsedMsgId& id, size_t n, std::vector<StartSpec>* out,
                            std::string* reason);
    // Records where the client stands (the resume position of channel i),
    // so that the first compound ids carry the other channels forward.
    void setPosition(size_t i, const MsgId& seen) { seen_[i] = seen; }

    // Merges the channels' backlogs (each in order) by time and delivers
    // them through the sink.  backlogs.size() must be size().
    void deliverBacklog(const std::vector<std::vector<MessagePtr>>& backlogs);
    // The earliest message among the backlogs (by time, then channel
    // order): {channel, index into its backlog}; {size(), 0} when empty.
    std::pair<size_t, size_t> earliest(const std::vector<std::vector<MessagePtr>>& backlogs) const;

    // Marks msg of channel i as seen; returns the compound id after it.
    std::string advance(size_t i, const MsgId& id);
    // The compound id of the current position, the active tag bracketed
    // (active >= size(): none).
    std::string compoundId(size_t active) const;
    // Only the tag part ("0,[1],-"), and the time, for Etag/Last-Modified.
    std::string compoundTags(size_t active) const;
    int64_t compoundTime() const;

private:
    class Channel final : public Subscriber {
    public:
        Channel(Multiplexer* mux, size_t index) : mux_(mux), index_(index) {}
        void deliver(const MessagePtr& msg) override;
        void gap() override { mux_->sink_->gap(index_); }
        void channelDeleted() override { mux_->sink_->channelDeleted(index_); }
        void presenceEvent(const PresenceEvent& ev) override {
            mux_->sink_->channelPresence(index_, ev);
        }
        void infoRequest(std::string_view replyKey) override {
            mux_->sink_->channelInfoRequest(index_, replyKey);
        }

    private:
        Multiplexer* mux_;
        size_t index_;
    };

    explicit Multiplexer(MultiplexSink* sink) : sink_(sink) {}

    MultiplexSink* sink_;
    std::vector<std::unique_ptr<Channel>> channels_;
    std::vector<MsgId> seen_;
};

}  // namespace pubsub
