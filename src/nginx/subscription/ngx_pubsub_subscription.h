/*
 * ngx_pubsub: the subscription object every transport holds.
 *
 * pubsub::Subscription (the core, include/pubsub/subscription.h) decides
 * what subscribing to a set of channels implies and undoes each step
 * exactly once; this is its nginx side: the location's engine, the
 * subscribe/unsubscribe hook sessions, presence joins, channel events and
 * the pubsub_status count of the transport.  A transport keeps only
 * framing and I/O: it creates one of these with its sink, subscribes the
 * request's channels, calls open() once it can deliver, and lets the
 * destructor (or close()) end everything.
 *
 * Hooks, presence and channel events need the client's request when a
 * channel is opened (identity, headers); `r` is cleared when a transport
 * frees its request (WebSocket): channels added after that open no hook
 * session and no presence join.  Closing never needs the request.
 */

#ifndef _NGX_PUBSUB_SUBSCRIPTION_H_INCLUDED_
#define _NGX_PUBSUB_SUBSCRIPTION_H_INCLUDED_

#include "ngx_pubsub.h"

#include <vector>

#include "pubsub/subscription.h"


class ngx_pubsub_subscription_t final : public pubsub::SubscriptionHost {
public:
    ngx_pubsub_subscription_t(ngx_http_request_t *r,
        ngx_pubsub_loc_conf_t *plcf, ngx_uint_t transport,
        pubsub::SubscriptionSink *sink);
    ~ngx_pubsub_subscription_t() override;

    /*
     * Subscribes the request's channels (several: multiplexed), each from
     * its spec, with the location's group limits; the engine must have
     * been prepared for them (the router does it).  poll: the hook
     * sessions are polling sessions; one_shot/max_backlog: long-poll.
     */
    pubsub::SubscriptionStart subscribe(ngx_pubsub_channels_t *ch,
        const std::vector<pubsub::StartSpec> &specs, bool poll = false,
        bool one_shot = false, size_t max_backlog = 0);

    /* answers a refused subscribe() (403 for existing-channels-only) */
    ngx_int_t refuse(const pubsub::SubscriptionStart &start);

    /* the whole subscription (the core object) */
    pubsub::Subscription     core;

    ngx_http_request_t      *r;      /* NULL once the request is gone */
    ngx_pubsub_loc_conf_t   *plcf;
    uint32_t                 transport;

    /* pubsub::SubscriptionHost */
    pubsub::Store *store() override;
    void prepare(const std::vector<std::string> &keys,
        std::function<void()> ready) override;
    Handle hookOpen(const pubsub::SubChannel &ch,
        const std::string *poll_at) override;
    void hookClose(Handle h, const std::string *poll_next,
        bool deleted) override;
    Handle presenceJoin(const pubsub::SubChannel &ch) override;
    void presenceLeave(Handle h) override;
    Handle eventsOpen(const pubsub::SubChannel &ch) override;
    void eventsClose(Handle h) override;
    void countStart() override;
    void countEnd() override;

private:
    ngx_pubsub_sub_count_t   count_;
};


/*
 * What a subscription delivers, to a transport T: a one-channel
 * subscription to T's one-channel methods (deliver(msg), gap(),
 * channelDeleted(), presenceEvent(ev)), a multiplexed one (T::mux set) to
 * the per-channel ones.
 */
template <typename T>
class ngx_pubsub_sub_sink_t final : public pubsub::SubscriptionSink {
public:
    explicit ngx_pubsub_sub_sink_t(T *t) : t_(t) {}

    void deliver(size_t i, const pubsub::MessagePtr &msg,
        std::string_view id) override
    {
        if (t_->mux) {
            t_->deliver(i, msg, id);
        } else {
            t_->deliver(msg);
        }
    }

    void gap(size_t i) override
    {
        if (t_->mux) {
            t_->gap(i);
        } else {
            t_->gap();
        }
    }

    void channelDeleted(size_t i) override
    {
        if (t_->mux) {
            t_->channelDeleted(i);
        } else {
            t_->channelDeleted();
        }
    }

    void presenceEvent(size_t i, const pubsub::PresenceEvent &ev) override
    {
        if (t_->mux) {
            t_->channelPresence(i, ev);
        } else {
            t_->presenceEvent(ev);
        }
    }

private:
    T  *t_;
};


/* "refused": the status a store refusal answers a subscriber with */
ngx_uint_t ngx_pubsub_subscribe_status(pubsub::StoreResult rc);


#endif /* _NGX_PUBSUB_SUBSCRIPTION_H_INCLUDED_ */
