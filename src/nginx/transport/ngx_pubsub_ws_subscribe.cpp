/*
 * ngx_pubsub: the WebSocket's subscription (ngx_pubsub_ws.h).  Everything a
 * subscription implies - the store subscribe with the group limits, the
 * subscribe/unsubscribe hook sessions, presence, channel events, the
 * pubsub_status count - is the subscription object's
 * (ngx_pubsub_subscription.h); the WebSocket only says when: subscribe()
 * before the 101 (so that a refusal is an HTTP status), open from start()
 * once the connection is taken over, and stop() whatever ends it.
 */

#include "ngx_pubsub_ws.h"


/*
 * Before the 101: NGX_OK with what the client is owed kept for start(), or
 * NGX_ERROR with the store's refusal in *refused.
 */
ngx_int_t
ngx_pubsub_ws_t::subscribe(ngx_pubsub_channels_t *ch,
    const std::vector<pubsub::StartSpec> &specs,
    pubsub::SubscriptionStart *refused)
{
    pubsub::SubscriptionStart  start;

    start = subscription.subscribe(ch, specs);

    if (start.status != pubsub::StoreResult::kOk) {
        *refused = std::move(start);
        return NGX_ERROR;
    }

    mux = subscription.core.mux();
    owed_ = std::make_unique<pubsub::SubscriptionStart>(std::move(start));

    return NGX_OK;
}


/* where a one-channel subscription stands (gap and presence frames) */
pubsub::MsgId
ngx_pubsub_ws_t::position() const
{
    const pubsub::Subscriber  *s = subscription.core.subscriber(0);

    return s ? s->cursor() : pubsub::MsgId{};
}


/*
 * From start(), the connection taken over: hooks, presence, channel
 * events and the status count, then what the client missed.
 */
void
ngx_pubsub_ws_t::subscription_start(const pubsub::MsgId &resume)
{
    std::unique_ptr<pubsub::SubscriptionStart>  owed;

    if (!subscriber) {
        return;
    }

    subscription.core.open();

    owed.swap(owed_);

    if (!owed) {
        return;
    }

    if (owed->gap) {
        if (mux) {
            gap(0);
        } else {
            send_gap(resume, {});
        }
    }

    subscription.core.deliverBacklog(owed->backlogs);
}


/*
 * Whatever ends a WebSocket subscriber comes through here (close sent or
 * received, channel deleted, timeout, dead peer, reset, shutdown, the pool
 * going away): the subscription ends everything exactly once.
 */
void
ngx_pubsub_ws_t::stop()
{
    subscription.core.close();
}


/* the start positions of the channels: NGX_OK, or NGX_DECLINED with what
 * the handler returns in *rc */
ngx_int_t
ngx_pubsub_ws_specs(ngx_http_request_t *r, ngx_pubsub_channels_t *ch,
    const pubsub::StartSpec &spec, const pubsub::ParsedMsgId &full,
    std::vector<pubsub::StartSpec> *specs, ngx_int_t *rc)
{
    std::string  reason;

    *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;

    try {
        specs->assign(ch->n, spec);

    } catch (...) {
        return NGX_DECLINED;
    }

    /* one channel resumes from one tag, as on the HTTP transports */
    if (spec.kind == pubsub::StartSpec::kAfter
        && ((ch->n == 1 && full.tags.size() > 1)
            || (ch->n > 1
                && !pubsub::Multiplexer::resumeSpecs(full, ch->n, specs,
                                                     &reason))))
    {
        if (reason.empty()) {
            reason = "several tags for one channel";
        }

        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "pubsub: invalid message id: %s", reason.c_str());
        *rc = ngx_pubsub_ws_refuse(r, NGX_HTTP_BAD_REQUEST,
                                   "Message ID invalid.\n");
        return NGX_DECLINED;
    }

    return NGX_OK;
}
